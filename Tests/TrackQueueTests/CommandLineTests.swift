import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import TrackQueue

/// The operator's and app developer's commands, as whole processes against a real daemon.
@Suite(.serialized) struct CommandLineTests {
    static let event = #"{"event_name":"cli","user_id":"u"}"#

    /// Runs `trackq ARGS` to completion.
    func trackq(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> (
        status: Int32, stdout: String, stderr: String
    ) {
        try runCommand(TrackqBinary.path, arguments, environment: environment, stdin: stdin)
    }

    func statusJSON(_ dir: borrowing TestDirectory) throws -> (Int32, [String: Any]) {
        let result = try trackq(["status", "--json", "--database", dir.database])
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return (result.status, try #require(object, "status printed: \(result.stdout) \(result.stderr)"))
    }

    func startDaemon(_ dir: borrowing TestDirectory, endpoint: String, _ extra: [String] = []) async throws -> TrackqProcess {
        try await TrackqProcess.startDaemon(
            dir, ["--endpoint", endpoint, "--retry-initial", "50ms", "--retry-max", "200ms"] + extra,
            environment: ["TRACKQ_TOKEN": "cli-token"])
    }

    @Test func statusThroughHealthyBackoffAlertStoppedAndKilled() async throws {
        let answer = NIOLockedValueBox(200)
        let server = try await TestHTTPServer.start { _, _ in .status(answer.withLockedValue { $0 }) }
        let dir = try TestDirectory()
        let daemon = try await startDaemon(dir, endpoint: server.url)
        let probe = DatabaseProbe(path: dir.database)

        // Healthy: delivered, idle.
        let sent = try trackq(["send", "--socket", dir.socket, "--json", Self.event])
        #expect(sent.status == 0)
        try await waitUntil("delivery") { try probe.scalar("SELECT delivered FROM counters") == 1 }
        try await waitUntil("idle") { try probe.strings("SELECT delivery_state FROM daemon_state") == ["idle"] }
        var (code, status) = try statusJSON(dir)
        #expect(code == 0)
        #expect(Set(status.keys).isSuperset(of: ["version", "daemon", "queue", "delivery", "totals", "dead_letters", "alert", "database"]))
        let daemonInfo = try #require(status["daemon"] as? [String: Any])
        #expect(daemonInfo["running"] as? Bool == true)
        #expect(daemonInfo["pid"] as? Int == Int(daemon.pid))
        #expect((daemonInfo["started_at"] as? String)?.hasSuffix("Z") == true)
        let queue = try #require(status["queue"] as? [String: Any])
        #expect(queue["pending"] as? Int == 0)
        #expect(queue["pending_bytes"] as? Int == 0)
        #expect(queue["oldest_pending_at"] is NSNull)
        let delivery = try #require(status["delivery"] as? [String: Any])
        #expect(delivery["state"] as? String == "idle")
        #expect(delivery["last_status"] as? Int == 200)
        #expect(delivery["consecutive_failures"] as? Int == 0)
        for key in ["last_attempt_at", "last_success_at", "last_error", "next_attempt_at"] { #expect(delivery.keys.contains(key)) }
        let totals = try #require(status["totals"] as? [String: Any])
        #expect(totals["accepted"] as? Int == 1)
        #expect(totals["delivered"] as? Int == 1)
        #expect(totals["dead_lettered"] as? Int == 0)
        #expect(totals["rejected"] as? Int == 0)
        #expect(status["alert"] is NSNull)
        #expect((status["database"] as? [String: Any])?["path"] as? String == dir.database)
        let human = try trackq(["status", "--database", dir.database])
        #expect(human.status == 0)
        #expect(human.stdout.contains("OK"))

        // Backing off: 503s.
        answer.withLockedValue { $0 = 503 }
        #expect(try trackq(["send", "--socket", dir.socket, "cli", "--user", "u"]).status == 0)
        try await waitUntil("backoff") { try probe.strings("SELECT delivery_state FROM daemon_state") == ["backoff"] }
        (code, status) = try statusJSON(dir)
        #expect(code == 1)
        #expect((status["delivery"] as? [String: Any])?["state"] as? String == "backoff")
        #expect((status["queue"] as? [String: Any])?["pending"] as? Int == 1)
        #expect(((status["queue"] as? [String: Any])?["oldest_pending_at"] as? String) != nil)

        // Alert: 401.
        answer.withLockedValue { $0 = 401 }
        try await waitUntil("the alert") { try probe.strings("SELECT alert_kind FROM daemon_state") == ["auth"] }
        (code, status) = try statusJSON(dir)
        #expect(code == 2)
        let alert = try #require(status["alert"] as? [String: Any])
        #expect(alert["kind"] as? String == "auth")
        #expect(alert["status"] as? Int == 401)
        #expect((alert["since"] as? String)?.hasSuffix("Z") == true)
        #expect((alert["message"] as? String)?.isEmpty == false)
        #expect(try trackq(["status", "--database", dir.database]).stdout.contains("CRITICAL"))

        // Stopped cleanly: not running is critical.
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        (code, status) = try statusJSON(dir)
        #expect(code == 2)
        #expect((status["daemon"] as? [String: Any])?["running"] as? Bool == false)
        #expect((status["queue"] as? [String: Any])?["pending"] as? Int == 1)

        // Killed with -9: the state record still names a pid, but nobody holds the lock.
        answer.withLockedValue { $0 = 200 }
        let again = try await startDaemon(dir, endpoint: server.url)
        #expect(try statusJSON(dir).1["daemon"].flatMap { $0 as? [String: Any] }?["running"] as? Bool == true)
        again.signal(SIGKILL)
        _ = try await again.waitForExit()
        (code, status) = try statusJSON(dir)
        #expect(code == 2)
        #expect((status["daemon"] as? [String: Any])?["running"] as? Bool == false)
        #expect(!human.stdout.contains("cli-token") && !human.stderr.contains("cli-token"))
        try await server.stop()
    }

    @Test func statusOfAMissingDatabaseIsUnknown() throws {
        let dir = try TestDirectory()
        let result = try trackq(["status", "--database", dir.file("nothing.db")])
        #expect(result.status == 3)
        #expect(result.stderr.contains("nothing.db"))
    }

    @Test func sendInAllThreeForms() async throws {
        let dir = try TestDirectory()
        let daemon = try await startDaemon(dir, endpoint: DaemonProcessTests.nowhere)
        let probe = DatabaseProbe(path: dir.database)

        let first = try trackq([
            "send", "--socket", dir.socket, "signed_in", "--user", "u1", "--prop", "plan=pro",
            "--prop", "seats=3", "--prop", "formula=a=b", "--context", "device=edge 7", "--timestamp", "2026-11-27T05:00:00Z",
        ])
        #expect(first.status == 0)
        #expect(first.stdout.hasPrefix(#"{"ok":true,"accepted":1"#))
        #expect(
            try probe.strings("SELECT body FROM queue WHERE id = 1") == [
                #"{"event_name":"signed_in","user_id":"u1","timestamp":"2026-11-27T05:00:00Z","properties":{"plan":"pro","seats":"3","formula":"a=b"},"context":{"device":"edge 7"}}"#
            ])

        let second = try trackq(["send", "--socket", dir.socket, "--json", #"[{"event":"a","user_id":"u"},{"event":"b","user_id":"u"}]"#])
        #expect(second.status == 0)
        #expect(second.stdout.contains(#""accepted":2"#))

        let stdin = Self.event + "\n\n{broken\n" + Self.event + "\n"
        let third = try trackq(["send", "--socket", dir.socket, "-"], stdin: stdin)
        #expect(third.status == 1)
        let lines = third.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[1].contains("invalid_json"))
        #expect(try probe.queued == 5)

        let viaEnvironment = try trackq(["send", "--json", Self.event], environment: ["TRACKQ_SOCKET": dir.socket])
        #expect(viaEnvironment.status == 0)

        let unreachable = try trackq(["send", "--socket", dir.file("nobody.sock"), "--json", Self.event])
        #expect(unreachable.status == 2)
        #expect(unreachable.stderr.contains(dir.file("nobody.sock")))
        #expect(unreachable.stderr.contains("no daemon listens there"), "\(unreachable.stderr)")

        let usage = try trackq(["send", "--socket", dir.socket, "signed_in"])
        #expect(usage.status != 0)
        #expect(usage.stderr.contains("--user"))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test func deadLettersListRequeuePurgeRoundTrip() async throws {
        let refuse = NIOLockedValueBox(true)
        let server = try await TestHTTPServer.start { request, _ in
            let poisoned = request.jsonArray?.contains { $0["poison"] as? Bool == true } ?? false
            return poisoned && refuse.withLockedValue({ $0 }) ? .status(400, body: #"{"error":"poison"}"#) : .ok()
        }
        let dir = try TestDirectory()
        let daemon = try await startDaemon(dir, endpoint: server.url)
        let probe = DatabaseProbe(path: dir.database)
        let stdin =
            (0..<10).map { #"{"event_name":"d","user_id":"u","n":\#($0)\#([3, 7].contains($0) ? #","poison":true"# : "")}"# }
            .joined(separator: "\n") + "\n"
        #expect(try trackq(["send", "--socket", dir.socket, "-"], stdin: stdin).status == 0)
        try await waitUntil("two dead letters") { try probe.scalar("SELECT count(*) FROM dead_letters") == 2 }

        let list = try trackq(["dead", "list", "--json", "--database", dir.database])
        #expect(list.status == 0)
        let letters = try #require(JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(letters.count == 2)
        #expect(letters.map { ($0["event"] as? [String: Any])?["n"] as? Int } == [3, 7])
        #expect(letters.allSatisfy { $0["reason"] as? String == "rejected" && $0["status"] as? Int == 400 })
        #expect(letters.first?["response"] as? String == #"{"error":"poison"}"#)
        #expect((letters.first?["failed_at"] as? String)?.hasSuffix("Z") == true)
        #expect(try trackq(["status", "--database", dir.database]).status == 1)  // dead letters: warning
        let human = try trackq(["dead", "list", "--database", dir.database, "--limit", "1"])
        #expect(human.stdout.contains(#""n":3"#) && !human.stdout.contains(#""n":7"#))

        // Requeue the first; the API now takes it.
        refuse.withLockedValue { $0 = false }
        let firstID = try #require(letters.first?["id"] as? Int)
        let requeued = try trackq(["dead", "requeue", "--database", dir.database, String(firstID)])
        #expect(requeued.status == 0)
        #expect(requeued.stdout.contains("requeued 1"))
        try await waitUntil("the requeued event delivered") { try probe.scalar("SELECT delivered FROM counters") == 9 }
        #expect(try probe.scalar("SELECT count(*) FROM dead_letters") == 1)
        #expect(try probe.scalar("SELECT pending_events FROM counters") == 0)

        #expect(try trackq(["dead", "requeue", "--database", dir.database]).status != 0)  // neither --all nor ids
        let purged = try trackq(["dead", "purge", "--all", "--database", dir.database])
        #expect(purged.stdout.contains("purged 1"))
        #expect(try probe.scalar("SELECT count(*) FROM dead_letters") == 0)
        #expect(try trackq(["status", "--database", dir.database]).status == 0)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        try await server.stop()
    }

    /// A daemon killed mid-stream answers some lines and closes: `trackq send` must not call
    /// that success, since the lines after the last answer were never taken.
    @Test func sendFailsWhenTheDaemonClosesBeforeAnsweringEveryLine() async throws {
        let dir = try TestDirectory()
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        let bound = UnixSocketAddress.with(dir.socket) { bind(listener, $0, $1) }
        #expect(bound == 0 && listen(listener, 4) == 0)
        // A stand-in daemon: reads all five lines, answers two, closes.
        let server = Task {
            try await onOwnThread {
                let connection = accept(listener, nil, nil)
                defer { close(connection) }
                var received = [UInt8]()
                var buffer = [UInt8](repeating: 0, count: 4096)
                while received.filter({ $0 == 0x0A }).count < 5 {
                    let n = buffer.withUnsafeMutableBytes { read(connection, $0.baseAddress, $0.count) }
                    guard n > 0 else { break }
                    received += buffer[..<n]
                }
                let answers = Array(#"{"ok":true,"accepted":1}"#.utf8 + [0x0A] + #"{"ok":true,"accepted":1}"#.utf8 + [0x0A])
                _ = answers.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
            }
        }
        let stdin = String(repeating: Self.event + "\n", count: 5) + "  \n"
        let result = try trackq(["send", "--socket", dir.socket, "-"], stdin: stdin)
        try await server.value
        #expect(result.status == 1)
        #expect(result.stderr.contains("after answering 2 of 5 lines"), "\(result.stderr)")
    }

    @Test func metricsAreServedAndParse() async throws {
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let dir = try TestDirectory()
        let port = try unusedLocalPort()
        let daemon = try await startDaemon(dir, endpoint: server.url, ["--metrics-address", "127.0.0.1:\(port)"])
        #expect(try trackq(["send", "--socket", dir.socket, "-"], stdin: Self.event + "\n{bad\n" + Self.event + "\n").status == 1)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("delivery") { try probe.scalar("SELECT delivered FROM counters") == 2 }

        let text = try httpGet(port: port, path: "/metrics")
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                Issue.record("unparseable sample line: \(line)")
                continue
            }
            samples[String(line[..<space])] = value
        }
        #expect(samples["trackq_events_accepted_total"] == 2)
        #expect(samples["trackq_events_delivered_total"] == 2)
        #expect(samples[#"trackq_lines_rejected_total{code="invalid_json"}"#] == 1)
        #expect(samples[#"trackq_http_responses_total{class="2xx"}"#] ?? 0 >= 1)
        #expect(samples["trackq_queue_pending_events"] == 0)
        #expect(samples.keys.contains { $0.hasPrefix("trackq_http_request_duration_seconds_bucket") })
        #expect(samples.keys.contains("trackq_delivery_backoff_seconds"))
        #expect(samples.keys.contains { $0.hasPrefix("trackq_alert_active") })

        let fromStatus = try trackq(["status", "--prometheus", "--database", dir.database])
        #expect(fromStatus.stdout.contains("trackq_events_accepted_total 2"))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        try await server.stop()
    }

    @Test func everyCommandHasHelp() throws {
        for command in [
            [], ["daemon"], ["status"], ["send"], ["dead"], ["dead", "list"], ["dead", "requeue"], ["dead", "purge"], ["version"],
        ] {
            let result = try trackq(command + ["--help"])
            #expect(result.status == 0, "\(command)")
            #expect(result.stdout.contains("USAGE"), "\(command)")
        }
        #expect(try trackq(["version"]).stdout == "trackq \(TrackQueue.version)\n")
    }

    /// The settings table drives `trackq daemon`: every row is in its help, and every flag
    /// it lists is accepted (a bad value is refused naming it, not as an unknown option).
    @Test func daemonHelpListsEverySettingOfTheTable() throws {
        // ArgumentParser wraps long lines: compare with runs of white space as one space.
        func words(_ text: String) -> String { text.split(whereSeparator: \.isWhitespace).joined(separator: " ") }
        let help = words(try trackq(["daemon", "--help"]).stdout)
        for info in DaemonSettings.locationCatalog + DaemonSettings.catalog {
            #expect(help.contains("--\(info.flag) \(info.valueName)"), "\(info.flag)")
            #expect(help.contains(words("env \(info.environment); default: \(info.defaultText)")), "\(info.flag)")
            #expect(help.contains(words(info.help)), "\(info.flag)")
        }
    }
}

/// A plain HTTP/1.1 GET to 127.0.0.1, returning the body.
func httpGet(port: Int, path: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        response += chunk[..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard text.hasPrefix("HTTP/1.1 200"), let split = text.range(of: "\r\n\r\n") else { throw EndOfStream(partial: text) }
    return String(text[split.upperBound...])
}
