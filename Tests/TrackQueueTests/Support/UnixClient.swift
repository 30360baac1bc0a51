import Foundation
import TrackQueue

#if canImport(Glibc)
import Glibc
#endif

/// A blocking Unix-socket client, as a plain app would write one: the tests talk to the
/// daemon through the real socket only.
/// `@unchecked Sendable`: a test may write from one thread while it reads on another; writes
/// touch only `fd`, reads own `pending`.
final class UnixClient: @unchecked Sendable {
    let fd: Int32
    private var pending: [UInt8] = []

    init(path: String) throws {
        // A local descriptor until connected: a throwing init of a fully initialized class
        // still runs deinit, which would close it a second time (and maybe someone else's).
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        let rc = UnixSocketAddress.with(path) { connect(fd, $0, $1) } ?? -1
        if rc != 0 {
            let code = errno
            close(fd)
            throw POSIXError(.init(rawValue: code) ?? .EIO)
        }
        self.fd = fd
    }

    deinit { close(fd) }

    static func canConnect(_ path: String) -> Bool { (try? UnixClient(path: path)) != nil }

    func write(_ text: String) throws { try write(Array(text.utf8)) }

    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIXError(.init(rawValue: errno) ?? .EIO)
            }
            offset += n
        }
    }

    /// Closes our sending side: the daemon sees EOF, answers, and closes.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// The next answer line, waiting at most `timeout`.
    func readLine(timeout: Duration = .seconds(20)) throws -> String {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            guard try fill(until: deadline) else { throw EndOfStream(partial: String(decoding: pending, as: UTF8.self)) }
        }
    }

    /// `count` answer lines.
    func readLines(_ count: Int, timeout: Duration = .seconds(60)) throws -> [String] {
        try (0..<count).map { _ in try readLine(timeout: timeout) }
    }

    /// Everything until the daemon closes the connection.
    func readToEnd(timeout: Duration = .seconds(20)) throws -> String {
        let deadline = ContinuousClock.now + timeout
        while try fill(until: deadline) {}
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Reads more bytes; false at end of stream.
    private func fill(until deadline: ContinuousClock.Instant) throws -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let left = deadline - ContinuousClock.now
        let ms = max(0, Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
        let ready = poll(&poller, 1, ms)
        if ready == 0 { throw TimedOut(what: "an answer from the daemon") }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            if errno == EINTR { return true }
            if errno == ECONNRESET { return false }
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
        if n == 0 { return false }
        pending.append(contentsOf: chunk[..<n])
        return true
    }
}

struct EndOfStream: Error { var partial: String }

/// A decoded answer line.
struct Answer: Equatable {
    var ok: Bool
    var accepted: Int?
    var error: String?
    var message: String?

    init(_ line: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw POSIXError(.EBADMSG)
        }
        ok = object["ok"] as? Bool ?? false
        accepted = object["accepted"] as? Int
        error = object["error"] as? String
        message = object["message"] as? String
    }
}
