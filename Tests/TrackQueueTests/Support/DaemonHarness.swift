import Foundation
import Logging
import ServiceLifecycle

@testable import TrackQueue

/// A daemon run in-process on a test directory's socket and database, in its own
/// ServiceGroup, stopped by a graceful shutdown as SIGTERM would.
final class InProcessDaemon: Sendable {
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let socket: String
    let database: String

    /// Starts the daemon and waits until its socket accepts connections.
    init(
        directory: borrowing TestDirectory,
        environment: [String: String] = ["TRACKQ_TOKEN": "test-token"],
        random: any RandomNumberGenerator & Sendable = SystemRandomNumberGenerator(),
        clock: HostClock = .system,
        configure: (inout DaemonSettings) -> Void = { _ in }
    ) async throws {
        var settings = try DaemonSettings.resolve(
            flags: ["database": directory.database, "socket": directory.socket], environment: [:])
        // Nothing leaves the machine: an endpoint nobody listens on unless the test sets one.
        settings.endpoint = "http://127.0.0.1:9/api/track"
        configure(&settings)
        var logger = Logger(label: "trackq-test")
        logger.logLevel = .warning
        let (ready, readyContinuation) = AsyncStream<Void>.makeStream()
        let daemon = Daemon(
            settings: settings, environment: environment, logger: logger,
            onReady: { readyContinuation.yield() }, randomSource: { random }, clock: clock)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: daemon, successTerminationBehavior: .gracefullyShutdownGroup)], logger: logger))
        self.group = group
        self.socket = settings.paths.socket
        self.database = settings.paths.database
        self.task = Task {
            defer { readyContinuation.finish() }
            try await group.run()
        }
        var iterator = ready.makeAsyncIterator()
        if await iterator.next() == nil {
            // The daemon stopped before it was ready: surface its error.
            try await task.value
            throw CancellationError()
        }
    }

    /// Graceful shutdown, as on SIGTERM; returns when the daemon has stopped.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// Read-only look into a database, as `trackq status` or an operator with `sqlite3` would.
struct DatabaseProbe {
    let path: String

    /// A read-only connection that waits for the daemon's short locks (switching a new file
    /// to WAL mode takes one).
    private func open() throws -> SQLiteConnection {
        let db = try SQLiteConnection(path: path, readOnly: true)
        try db.execute("PRAGMA busy_timeout = 5000")
        return db
    }

    func scalar(_ sql: String) throws -> Int64 {
        let db = try open()
        return try db.queryRow(sql) { $0.int64(0) } ?? -1
    }

    func strings(_ sql: String) throws -> [String] {
        let db = try open()
        let stmt = try db.statement(sql)
        var out: [String] = []
        while try stmt.step() { out.append(stmt.text(0) ?? "NULL") }
        return out
    }

    var queued: Int64 { get throws { try scalar("SELECT count(*) FROM queue") } }
}
