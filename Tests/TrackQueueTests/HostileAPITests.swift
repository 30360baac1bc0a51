import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import TrackQueue

/// The API as an adversary: answers that are absurd, stalled, cut, or crafted. Whatever it
/// sends, the daemon keeps running, keeps every event, and says what happened in one line.
@Suite struct HostileAPITests {
    static let fast = ["--retry-initial", "50ms", "--retry-max", "200ms"]

    /// A daemon delivering to `server` with a token, retrying fast; `extra` flags and
    /// `environment` added.
    func startDaemon(
        _ dir: borrowing TestDirectory, against server: HostileHTTPServer, _ extra: [String] = [],
        environment: [String: String] = [:]
    ) async throws -> TrackqProcess {
        try await TrackqProcess.startDaemon(
            dir, ["--endpoint", server.url] + extra + Self.fast, environment: ["TRACKQ_TOKEN": "t"].merging(environment) { $1 })
    }

    @Test func aTwentyDigitRetryAfterIsAnHourNotACrashAndSIGHUPRetriesAtOnce() async throws {
        let server = try HostileHTTPServer { _, index in
            index == 0 ? .status(503, headers: [("Retry-After", "99999999999999999999")]) : .status(200, body: "{}")
        }
        defer { server.stop() }
        let dir = try TestDirectory()
        let daemon = try await startDaemon(dir, against: server)
        try DeliveryTests.enqueue(3, socket: dir.socket)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the 503 recorded") { try probe.scalar("SELECT consecutive_failures FROM daemon_state") == 1 }
        #expect(daemon.process.isRunning)
        // Honoured for an hour, not for 3 * 10^12 years, and not at retry-max either.
        let wait = try probe.scalar("SELECT next_attempt_at_ms - last_attempt_at_ms FROM daemon_state")
        #expect((3_500_000...3_700_000).contains(wait), "\(wait)")
        #expect(try probe.queued == 3)

        daemon.signal(SIGHUP)
        try await waitUntil("delivery after SIGHUP, long before the hour") { try probe.queued == 0 }
        #expect(server.requestCount == 2)
        #expect(daemon.stderr.contains("longer than an hour"))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// `--request-timeout` covers the whole exchange: a head then silence, a body at a byte a
    /// second, a reset mid-body and a close without an answer are each one failure, and the
    /// 200 with a body that is not JSON after them delivers the batch.
    @Test func stalledTrickledCutAndSilentAnswersEachEndWithinTheRequestTimeout() async throws {
        let server = try HostileHTTPServer { _, index in
            switch index {
            case 0: .headThenStall(bodyBytes: 100)
            case 1: .trickle(bodyBytes: 100)
            case 2: .resetMidBody
            case 3: .closeWithoutAnswer
            case 4: .status(200, body: "<html>not json</html>")
            default: .status(500)
            }
        }
        defer { server.stop() }
        let dir = try TestDirectory()
        let daemon = try await startDaemon(dir, against: server, ["--request-timeout", "1s"])
        try DeliveryTests.enqueue(5, socket: dir.socket)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil(timeout: .seconds(30), "the batch delivered after four bad answers") { try probe.queued == 0 }
        #expect(server.requestCount == 5)
        #expect(try probe.scalar("SELECT delivered FROM counters") == 5)
        #expect(try probe.scalar("SELECT consecutive_failures FROM daemon_state") == 0)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// Every retryable answer, with and without `Retry-After` in each of its forms: each is
    /// one failure with its wait; a garbage value counts as the hour (SIGHUP skips it).
    @Test func everyRetryableAnswerAndRetryAfterFormIsOneFailure() async throws {
        let server = try HostileHTTPServer { _, index in
            switch index {
            case 0: .status(500)
            case 1: .status(502, headers: [("Retry-After", "0")])
            case 2: .status(503, headers: [("Retry-After", "Thu, 01 Jan 1970 00:00:00 GMT")])
            case 3: .status(504)
            case 4: .status(429, headers: [("Retry-After", "1")])
            case 5: .status(429, headers: [("Retry-After", "soon, maybe")])
            default: .status(200, body: "{}")
            }
        }
        defer { server.stop() }
        let dir = try TestDirectory()
        let daemon = try await startDaemon(dir, against: server)
        try DeliveryTests.enqueue(4, socket: dir.socket)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("six failures") { try probe.scalar("SELECT consecutive_failures FROM daemon_state") == 6 }
        #expect(try probe.strings("SELECT last_error FROM daemon_state") == ["HTTP 429"])
        let wait = try probe.scalar("SELECT next_attempt_at_ms - last_attempt_at_ms FROM daemon_state")
        #expect((3_500_000...3_700_000).contains(wait), "garbage counts as the hour: \(wait)")
        #expect(try probe.queued == 4)
        daemon.signal(SIGHUP)
        try await waitUntil("delivered after SIGHUP") { try probe.queued == 0 }
        #expect(server.requestCount == 7)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// A body crafted to command systemd (`\nSTOPPING=1`) reaches `STATUS=`, the log and
    /// status as one line of text, and commands nothing.
    @Test func anAnswerBodyCannotCommandSystemdOrTheTerminal() async throws {
        let evil = "oops\nSTOPPING=1\nWATCHDOG=trigger\nNOTIFYACCESS=none\n\u{1B}[2J\u{1B}]0;owned\u{07}"
        let server = try HostileHTTPServer { _, _ in .status(500, body: evil) }
        defer { server.stop() }
        let dir = try TestDirectory()
        let receiver = try SystemdTests.NotifyReceiver(path: dir.file("notify"))
        let daemon = try await startDaemon(dir, against: server, environment: ["NOTIFY_SOCKET": receiver.path])
        try DeliveryTests.enqueue(1, socket: dir.socket)
        var messages: [String] = []
        try await waitUntil("a backoff status") {
            messages += receiver.drain()
            return messages.contains { $0.hasPrefix("STATUS=backoff") }
        }
        let assignments = messages.flatMap { $0.split(separator: "\n") }
        #expect(!assignments.contains { $0 == "STOPPING=1" || $0.hasPrefix("WATCHDOG=trigger") || $0.hasPrefix("NOTIFYACCESS") })
        #expect(daemon.process.isRunning)
        let probe = DatabaseProbe(path: dir.database)
        let lastError = try #require(try probe.strings("SELECT last_error FROM daemon_state").first)
        #expect(!lastError.contains("\n") && !lastError.contains("\u{1B}"))
        #expect(lastError.hasPrefix("HTTP 500: oops\\u{a}STOPPING=1"))
        let status = try runCommand(TrackqBinary.path, ["status", "--database", dir.database])
        #expect(!status.stdout.contains("\u{1B}"))
        #expect(!daemon.stderr.contains("\nSTOPPING=1") && !daemon.stderr.contains("\u{1B}"))

        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        messages += receiver.drain()
        #expect(messages.contains { $0.split(separator: "\n").contains("STOPPING=1") })
    }

    @Test func deadListWritesNoTerminalEscapes() async throws {
        let evil = "bad\u{1B}[2J\u{1B}]0;owned\u{07}\nnext line"
        let server = try HostileHTTPServer { _, _ in .status(400, body: evil) }
        defer { server.stop() }
        let dir = try TestDirectory()
        let daemon = try await startDaemon(dir, against: server)
        try DeliveryTests.enqueue(1, socket: dir.socket, extra: { _ in #","note":"\u001b[31mred""# })
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the dead letter") { try probe.scalar("SELECT count(*) FROM dead_letters") == 1 }
        #expect(try probe.strings("SELECT response FROM dead_letters") == [evil])  // stored as answered
        let list = try runCommand(TrackqBinary.path, ["dead", "list", "--database", dir.database])
        #expect(list.status == 0)
        #expect(!list.stdout.contains("\u{1B}") && !list.stdout.contains("\u{07}"))
        #expect(list.stdout.contains("\\u{1b}[2J"))
        #expect(list.stdout.split(separator: "\n").count == 3)  // the letter, its id, then its answer
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// A write that fails after a 2xx (here: every write of the database fails with EIO,
    /// as on a failing SD card) is a failure: back off, keep every event, no flood.
    @Test(.enabled(if: FailingWrites.library != nil, "needs a C compiler (cc) to build the fault library"))
    func aDeliveryThatCannotBeRecordedBacksOffInsteadOfFlooding() async throws {
        let dir = try TestDirectory()
        let fault = dir.file("fail-writes")
        let accept = NIOLockedValueBox(false)
        let server = try HostileHTTPServer { _, _ in
            accept.withLockedValue { $0 } ? .status(200, body: "{}") : .status(503)
        }
        defer { server.stop() }
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", server.url, "--retry-initial", "100ms", "--retry-max", "1s"],
            environment: ["TRACKQ_TOKEN": "t", "LD_PRELOAD": FailingWrites.library!, "TRACKQ_FAULT_FILE": fault])
        try DeliveryTests.enqueue(10, socket: dir.socket)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("a refused try") { server.requestCount >= 1 }

        #expect(FileManager.default.createFile(atPath: fault, contents: nil))
        accept.withLockedValue { $0 = true }
        let before = server.requestCount
        let start = ContinuousClock.now
        try await waitUntil("tries against the failing disk") { server.requestCount >= before + 2 }
        // Watch for three seconds: backing off (≤ 1 s apart), not re-posting at network speed.
        try await waitUntil(timeout: .seconds(10), "three seconds") { ContinuousClock.now - start >= .seconds(3) }
        let during = server.requestCount - before
        let seconds = Double((ContinuousClock.now - start).components.seconds) + 1
        // With retry-max 1 s a try comes every half second on average once the backoff has
        // grown; a flood is hundreds a second. Generous for a loaded machine, far from that.
        #expect(Double(during) <= 5 + 4 * seconds, "\(during) requests in about \(seconds) seconds")
        #expect(daemon.process.isRunning)
        #expect(daemon.stderr.contains("cannot write delivery's result"))
        // Lines are refused while it lasts, never acknowledged without being stored.
        let client = try UnixClient(path: dir.socket)
        try client.write(#"{"event_name":"e","user_id":"u"}"# + "\n")
        #expect(try Answer(client.readLine()).error == "unavailable")

        try FileManager.default.removeItem(atPath: fault)
        try await waitUntil("delivered once the disk works") { try probe.queued == 0 }
        #expect(try probe.scalar("SELECT delivered FROM counters") == 10)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        #expect(try probe.strings("PRAGMA integrity_check") == ["ok"])
    }

    /// An API that refuses every event (a schema change) must not empty the queue into the
    /// dead letters: after a few refused alone, an endpoint alert, and the rest stay queued.
    @Test func anAPIThatRefusesEverythingRaisesAnAlertInsteadOfDeadLetteringTheQueue() async throws {
        let refuse = NIOLockedValueBox(true)
        let server = try HostileHTTPServer { _, _ in
            refuse.withLockedValue { $0 } ? .status(400, body: #"{"error":"schema"}"#) : .status(200, body: "{}")
        }
        defer { server.stop() }
        let dir = try TestDirectory()
        let daemon = try await startDaemon(dir, against: server)
        try DeliveryTests.enqueue(200, socket: dir.socket)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the endpoint alert") { try probe.strings("SELECT alert_kind FROM daemon_state") == ["endpoint"] }
        let dead = try probe.scalar("SELECT count(*) FROM dead_letters")
        #expect(dead <= Int64(DeliveryScheduler<ContinuousClock.Instant>.systemicThreshold))
        #expect(try probe.queued == 200 - dead)
        #expect(try probe.strings("SELECT alert_message FROM daemon_state").first?.contains("refuses every event") == true)

        refuse.withLockedValue { $0 = false }
        daemon.signal(SIGHUP)
        try await waitUntil("the rest delivered") { try probe.queued == 0 }
        try await waitUntil("the alert cleared") { try probe.scalar("SELECT alert_kind IS NULL FROM daemon_state") == 1 }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }
}

/// `Fixtures/fail-writes.c` built once per test run.
enum FailingWrites {
    static let library: String? = {
        guard let cc = which("cc") ?? which("gcc") else { return nil }
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fail-writes.c").path
        let output = "/tmp/trackq-fail-writes-\(getpid()).so"
        let result = try? runCommand(cc, ["-shared", "-fPIC", "-O1", "-o", output, source, "-ldl"])
        return result?.status == 0 ? output : nil
    }()
}
