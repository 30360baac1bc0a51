import Foundation
import Testing

@testable import TrackQueue

/// The built `trackq` binary as systemd or an operator runs it: real processes, real
/// signals, `kill -9`.
@Suite(.serialized) struct DaemonProcessTests {
    static let event = #"{"event_name":"crash_test","user_id":"u"}"#
    /// Tests never reach the real API: a loopback port nobody listens on.
    static let nowhere = "http://127.0.0.1:9/api/track"

    private func startDaemon(
        _ dir: borrowing TestDirectory, _ extra: [String] = [], name: String = "daemon",
        environment: [String: String] = ["TRACKQ_TOKEN": "secret-token-value"]
    ) async throws -> TrackqProcess {
        // A later --endpoint in `extra` wins over this one.
        try await TrackqProcess.startDaemon(dir, ["--endpoint", Self.nowhere] + extra, environment: environment, logName: name)
    }

    @Test func acknowledgedEventsSurviveKillDashNine() async throws {
        let dir = try TestDirectory()
        let first = try await startDaemon(dir)
        let client = try UnixClient(path: dir.socket)
        for i in 0..<1000 {
            try client.write(#"{"event_name":"crash_test","user_id":"u","seq":\#(i)}"# + "\n")
        }
        let answers = try client.readLines(1000).map(Answer.init)
        #expect(answers.allSatisfy { $0.accepted == 1 } as Bool)

        first.signal(SIGKILL)
        #expect(try await first.waitForExit() == SIGKILL)  // terminated by the signal

        // Restarted on the same files: the lock died with the process, the stale socket is
        // replaced, and all 1000 acked events are there, in order.
        let second = try await startDaemon(dir, name: "second")
        let probe = DatabaseProbe(path: dir.database)
        #expect(try probe.queued == 1000)
        #expect(try probe.strings("PRAGMA integrity_check") == ["ok"])
        #expect(try probe.strings("SELECT json_extract(body, '$.seq') FROM queue ORDER BY id") == (0..<1000).map(String.init))
        #expect(try probe.scalar("SELECT pending_events FROM counters") == 1000)

        let again = try UnixClient(path: dir.socket)
        try again.write(Self.event + "\n")
        #expect(try again.readLine() == #"{"ok":true,"accepted":1,"first_id":1001,"last_id":1001}"#)
        second.signal(SIGTERM)
        #expect(try await second.waitForExit() == 0)
    }

    @Test func sigtermAnswersLinesAlreadyReadAndExitsZero() async throws {
        let dir = try TestDirectory()
        let daemon = try await startDaemon(dir)
        let client = try UnixClient(path: dir.socket)
        try client.write(String(repeating: Self.event + "\n", count: 300))
        #expect(try Answer(client.readLine()).ok)
        daemon.signal(SIGTERM)
        let rest = try client.readToEnd().split(separator: "\n").map { try Answer(String($0)) }
        #expect(rest.allSatisfy { $0.ok })
        #expect(try await daemon.waitForExit() == 0)
        #expect(try DatabaseProbe(path: dir.database).queued >= Int64(rest.count + 1))
        // A clean stop checkpoints; the WAL file stays, at most its reserve, for the next start.
        let walSize = (try? FileManager.default.attributesOfItem(atPath: dir.database + "-wal")[.size] as? Int) ?? 0
        #expect(walSize <= QueueStore.walReserveBytes)
        #expect(try DatabaseProbe(path: dir.database).scalar("SELECT stopped_at_ms IS NOT NULL FROM daemon_state") == 1)
        #expect(!daemon.stderr.contains("secret-token-value"))
    }

    @Test func secondDaemonOnTheSameDatabaseExitsOneWithAClearMessage() async throws {
        let dir = try TestDirectory()
        let first = try await startDaemon(dir)
        let second = try TrackqProcess(
            ["daemon", "--socket", dir.file("other.sock"), "--database", dir.database, "--endpoint", Self.nowhere],
            stderrFile: dir.file("second.log"))
        #expect(try await second.waitForExit() == 1)
        #expect(second.stderr.contains("another trackq daemon is already using \(dir.database) (pid \(first.pid))"))
        // The first one is untouched.
        let client = try UnixClient(path: dir.socket)
        try client.write(Self.event + "\n")
        #expect(try Answer(client.readLine()).ok)
        first.signal(SIGINT)
        #expect(try await first.waitForExit() == 0)
    }

    @Test(arguments: [
        (["--batch-linger", "soon"], "--batch-linger"),
        (["--batch-max-events", "5000"], "--batch-max-events"),
        (["--max-event-bytes", "lots"], "--max-event-bytes"),
        (["--durability", "sometimes"], "--durability"),
        (["--durability=sometimes"], "--durability"),
        (["--batch-size", "3"], "unknown setting --batch-size"),
        (["--retry-max"], "--retry-max needs a value"),
        (["stray"], "unexpected argument"),
    ])
    func badSettingExitsTwoNamingIt(arguments: [String], setting: String) async throws {
        let dir = try TestDirectory()
        let process = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", dir.database, "--endpoint", Self.nowhere] + arguments,
            stderrFile: dir.file("bad.log"))
        #expect(try await process.waitForExit() == 2)
        #expect(process.stderr.contains(setting))
        #expect(!FileManager.default.fileExists(atPath: dir.socket))
    }

    @Test func badEnvironmentValueExitsTwoNamingIt() async throws {
        let dir = try TestDirectory()
        let process = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", dir.database, "--endpoint", Self.nowhere],
            environment: ["TRACKQ_RETRY_MAX": "-3s"], stderrFile: dir.file("bad.log"))
        #expect(try await process.waitForExit() == 2)
        #expect(process.stderr.contains("TRACKQ_RETRY_MAX"))
    }

    @Test func authAlertHoldsEverythingUntilTheTokenFileChangesAndSIGHUP() async throws {
        let dir = try TestDirectory()
        let tokenFile = dir.file("token")
        try "old-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let server = try await TestHTTPServer.start { request, _ in
            request.header("authorization") == "Bearer new-token" ? .ok() : .status(401, body: "bad key")
        }
        let alertLog = dir.file("alerts.log")
        // retry-max of an hour: only SIGHUP with a changed token can make it try again soon.
        let daemon = try await startDaemon(
            dir,
            [
                "--endpoint", server.url, "--token-file", tokenFile, "--retry-max", "1h",
                "--alert-command",
                #"echo "$TRACKQ_ALERT_STATE $TRACKQ_ALERT_KIND $TRACKQ_ALERT_STATUS $(env | grep -c -e old-token -e new-token)" >> "#
                    + alertLog,
            ], environment: [:])
        try DeliveryTests.enqueue(50, socket: dir.socket)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the auth alert") { try probe.strings("SELECT alert_kind FROM daemon_state") == ["auth"] }
        #expect(try probe.queued == 50)
        #expect(try probe.scalar("SELECT count(*) FROM dead_letters") == 0)
        #expect(try probe.strings("SELECT delivery_state FROM daemon_state") == ["alert"])
        #expect(try probe.strings("SELECT alert_message FROM daemon_state").first?.contains("token") == true)

        try "new-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        try await waitUntil("the alert to clear") { try probe.scalar("SELECT alert_kind IS NULL FROM daemon_state") == 1 }
        try await waitUntil("the alert command twice") {
            ((try? String(contentsOfFile: alertLog, encoding: .utf8)) ?? "").split(separator: "\n").count == 2
        }
        #expect(try String(contentsOfFile: alertLog, encoding: .utf8) == "raised auth 401 0\ncleared auth 401 0\n")
        let seqs = server.requests.filter { $0.header("authorization") == "Bearer new-token" }
            .flatMap { ($0.jsonArray ?? []).map { $0["seq"] as! Int } }
        #expect(seqs == Array(0..<50))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        #expect(!daemon.stderr.contains("new-token") && !daemon.stderr.contains("old-token"))
        try await server.stop()
    }

    @Test func sigtermGivesTheRequestInFlightAGraceThenExitsZeroKeepingItsEvents() async throws {
        let dir = try TestDirectory()
        // A server that accepts connections and never answers.
        let listener = try SilentListener()
        let daemon = try await startDaemon(dir, ["--endpoint", "http://127.0.0.1:\(listener.port)/api/track", "--request-timeout", "5m"])
        try DeliveryTests.enqueue(20, socket: dir.socket)
        try await waitUntil("the request to be in flight") { listener.hasPendingConnection }
        let start = ContinuousClock.now
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        #expect(ContinuousClock.now - start >= .milliseconds(4500))
        #expect(try DatabaseProbe(path: dir.database).queued == 20)
    }
}

/// A TCP listener on 127.0.0.1 that never accepts: connections wait in its backlog, so a
/// client's request hangs until it gives up.
final class SilentListener {
    let fd: Int32
    let port: Int

    init() throws {
        (fd, port) = try listenOnLoopback(backlog: 16)
    }

    var hasPendingConnection: Bool {
        var waiter = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&waiter, 1, 0) == 1
    }

    deinit { close(fd) }
}

/// A TCP socket listening on 127.0.0.1 at a free port: its descriptor and port.
func listenOnLoopback(backlog: Int32) throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && listen(fd, backlog) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else {
        close(fd)
        throw POSIXError(.EADDRINUSE)
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}
