import Foundation

/// A fresh directory under /tmp for one test, removed when the test is done.
///
/// Short paths on purpose: a Unix socket path must fit in 108 bytes.
struct TestDirectory: ~Copyable {
    let path: String

    init() throws {
        var template = Array("/tmp/tq-test.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(.EIO)
        }
        path = String(cString: made)
    }

    var database: String { path + "/queue.db" }
    var socket: String { path + "/trackq.sock" }

    func file(_ name: String) -> String { path + "/" + name }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Polls `condition` until it holds or `timeout` passes; never a bare sleep.
func waitUntil(
    timeout: Duration = .seconds(20), _ what: String = "condition",
    _ condition: () throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try !condition() {
        if ContinuousClock.now > deadline { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(10))
    }
}

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs blocking work (a slow socket reader, a busy poll) on a thread of its own: Swift's
/// cooperative pool has one thread per core, and a test blocking it starves every other test
/// running beside it, in-process daemons included.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await onOwnThreadResult(body).get()
}

/// ``onOwnThread(_:)``, with the outcome as a value.
func onOwnThreadResult<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async -> Result<T, any Error> {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: Result { try body() }) }.start()
    }
}
