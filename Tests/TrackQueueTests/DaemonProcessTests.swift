import Foundation
import Testing
@testable import TrackQueue

/// The built `trackq` binary as systemd or an operator runs it: real processes, real
/// signals, `kill -9`.
@Suite(.serialized) struct DaemonProcessTests {
    static let event = #"{"event_name":"crash_test","user_id":"u"}"#

    private func startDaemon(_ dir: borrowing TestDirectory, _ extra: [String] = [], name: String = "daemon") async throws -> TrackqProcess {
        let process = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", dir.database] + extra,
            environment: ["TRACKQ_TOKEN": "secret-token-value"], stderrFile: dir.file("\(name).log"))
        let socket = dir.socket
        try await waitUntil("the daemon's socket") {
            if !process.process.isRunning { throw EndOfStream(partial: process.stderr) }
            return UnixClient.canConnect(socket)
        }
        return process
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
        // A clean stop checkpoints: the WAL is gone or empty.
        let walSize = (try? FileManager.default.attributesOfItem(atPath: dir.database + "-wal")[.size] as? Int) ?? 0
        #expect(walSize == 0)
        #expect(!daemon.stderr.contains("secret-token-value"))
    }

    @Test func secondDaemonOnTheSameDatabaseExitsOneWithAClearMessage() async throws {
        let dir = try TestDirectory()
        let first = try await startDaemon(dir)
        let second = try TrackqProcess(
            ["daemon", "--socket", dir.file("other.sock"), "--database", dir.database],
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
    ])
    func badSettingExitsTwoNamingIt(arguments: [String], setting: String) async throws {
        let dir = try TestDirectory()
        let process = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", dir.database] + arguments,
            stderrFile: dir.file("bad.log"))
        #expect(try await process.waitForExit() == 2)
        #expect(process.stderr.contains(setting))
        #expect(!FileManager.default.fileExists(atPath: dir.socket))
    }

    @Test func badEnvironmentValueExitsTwoNamingIt() async throws {
        let dir = try TestDirectory()
        let process = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", dir.database],
            environment: ["TRACKQ_RETRY_MAX": "-3s"], stderrFile: dir.file("bad.log"))
        #expect(try await process.waitForExit() == 2)
        #expect(process.stderr.contains("TRACKQ_RETRY_MAX"))
    }
}
