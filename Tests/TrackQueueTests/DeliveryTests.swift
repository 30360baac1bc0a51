import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import TrackQueue

/// Delivery against a real HTTP server on 127.0.0.1, scripted per request.
@Suite struct DeliveryTests {
    /// Queues `count` events through the socket (acked), with `"seq"` 0..<count.
    static func enqueue(_ count: Int, socket: String, extra: (Int) -> String = { _ in "" }) throws {
        let client = try UnixClient(path: socket)
        var text = ""
        for i in 0..<count { text += #"{"event_name":"e","user_id":"u","seq":\#(i)\#(extra(i))}"# + "\n" }
        try client.write(text)
        let answers = try client.readLines(count)
        guard answers.allSatisfy({ $0.hasPrefix(#"{"ok":true"#) }) else { throw EndOfStream(partial: answers.joined()) }
    }

    /// Every `seq` the server accepted with a 2xx, in the order it received them.
    static func deliveredSeqs(_ server: TestHTTPServer, statuses: [Int]) -> [Int] {
        zip(server.requests, statuses).flatMap { request, status -> [Int] in
            guard (200..<300).contains(status) else { return [] }
            return (request.jsonArray ?? []).map { $0["seq"] as! Int }
        }
    }

    /// A responder that answers from a list and records each status it gave.
    final class Script: Sendable {
        let statuses = NIOLockedValueBox<[Int]>([])
        let decide: @Sendable (ReceivedRequest, Int) -> ScriptedResponse
        init(_ decide: @escaping @Sendable (ReceivedRequest, Int) -> ScriptedResponse) { self.decide = decide }
        var responder: @Sendable (ReceivedRequest, Int) -> ScriptedResponse {
            { request, index in
                let response = self.decide(request, index)
                self.statuses.withLockedValue { $0.append(response.status) }
                return response
            }
        }
        var given: [Int] { statuses.withLockedValue { $0 } }
    }

    @Test func backlogThroughAnOutageIsDeliveredOnceInOrderWithinLimits() async throws {
        let down = NIOLockedValueBox(true)
        let script = Script { _, _ in down.withLockedValue { $0 } ? .status(503) : .ok() }
        let server = try await TestHTTPServer.start(respond: script.responder)
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) {
            $0.endpoint = server.url
            $0.retryInitial = .milliseconds(20)
            $0.retryMax = .milliseconds(200)
        }
        try Self.enqueue(2500, socket: daemon.socket)
        try await waitUntil("three refused tries") { server.requestCount >= 3 }
        let probe = DatabaseProbe(path: daemon.database)
        #expect(try probe.queued == 2500)
        #expect(try probe.strings("SELECT delivery_state FROM daemon_state") == ["backoff"])
        #expect(try probe.scalar("SELECT consecutive_failures FROM daemon_state") >= 1)

        down.withLockedValue { $0 = false }
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        #expect(Self.deliveredSeqs(server, statuses: script.given) == Array(0..<2500))
        for request in server.requests {
            #expect(request.method == "POST")
            #expect(request.uri == "/api/track")
            #expect((request.jsonArray?.count ?? 0) <= 1000)
            #expect(request.body.count <= 2_000_000)
            #expect(request.header("content-type") == "application/json")
            #expect(request.header("user-agent") == "trackq/\(TrackQueue.version)")
            #expect(request.header("authorization") == "Bearer test-token")
        }
        #expect(try probe.scalar("SELECT delivered FROM counters") == 2500)
        #expect(try probe.scalar("SELECT pending_bytes FROM counters") == 0)
        try await waitUntil("idle") { try probe.strings("SELECT delivery_state FROM daemon_state") == ["idle"] }
        #expect(try probe.scalar("SELECT consecutive_failures FROM daemon_state") == 0)
        #expect(try probe.scalar("SELECT last_status FROM daemon_state") == 200)
        try await daemon.stop()
        try await server.stop()
    }

    @Test func poisonEventsAreIsolatedAndDeadLetteredTheRestDelivered() async throws {
        let script = Script { request, _ in
            let poisoned = request.jsonArray?.contains { $0["poison"] as? Bool == true } ?? false
            return poisoned ? .status(400, body: #"{"error":"bad event"}"#) : .ok()
        }
        let server = try await TestHTTPServer.start(respond: script.responder)
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) {
            $0.endpoint = server.url
            $0.batchLinger = .milliseconds(300)  // all 200 in one first batch
        }
        try Self.enqueue(200, socket: daemon.socket) { [37, 150].contains($0) ? #","poison":true"# : "" }
        let probe = DatabaseProbe(path: daemon.database)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        #expect(Self.deliveredSeqs(server, statuses: script.given) == (0..<200).filter { ![37, 150].contains($0) })
        #expect(
            try probe.strings(
                "SELECT json_extract(body, '$.seq') || ' ' || reason || ' ' || status || ' ' || response FROM dead_letters ORDER BY id")
                == [
                    #"37 rejected 400 {"error":"bad event"}"#, #"150 rejected 400 {"error":"bad event"}"#,
                ])
        #expect(try probe.scalar("SELECT dead_lettered FROM counters") == 2)
        #expect(try probe.scalar("SELECT delivered FROM counters") == 198)
        // Bisection: at most 2·k·⌈log2 n⌉ requests after the first refusal.
        #expect(server.requestCount - 1 <= 2 * 2 * 8)
        try await daemon.stop()
        try await server.stop()
    }

    @Test func notFoundRaisesAnEndpointAlertAndDropsNothing() async throws {
        let broken = NIOLockedValueBox(true)
        let script = Script { _, _ in broken.withLockedValue { $0 } ? .status(404, body: "no such route") : .ok() }
        let server = try await TestHTTPServer.start(respond: script.responder)
        let dir = try TestDirectory()
        let alertLog = dir.file("alerts.log")
        let daemon = try await InProcessDaemon(directory: dir) {
            $0.endpoint = server.url
            $0.retryMax = .milliseconds(100)
            $0.alertCommand =
                #"echo "$TRACKQ_ALERT_STATE $TRACKQ_ALERT_KIND $TRACKQ_ALERT_STATUS token=${TRACKQ_TOKEN:-none}" >> "# + alertLog
        }
        try Self.enqueue(20, socket: daemon.socket)
        let probe = DatabaseProbe(path: daemon.database)
        try await waitUntil("several tries") { server.requestCount >= 4 }
        #expect(try probe.queued == 20)
        #expect(try probe.scalar("SELECT count(*) FROM dead_letters") == 0)
        #expect(try probe.strings("SELECT alert_kind || ' ' || alert_status FROM daemon_state") == ["endpoint 404"])
        #expect(try probe.strings("SELECT delivery_state FROM daemon_state") == ["alert"])

        broken.withLockedValue { $0 = false }
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        try await waitUntil("the alert to clear") { try probe.scalar("SELECT alert_kind IS NULL FROM daemon_state") == 1 }
        try await waitUntil("the alert command twice") {
            ((try? String(contentsOfFile: alertLog, encoding: .utf8)) ?? "").split(separator: "\n").count == 2
        }
        #expect(
            try String(contentsOfFile: alertLog, encoding: .utf8) == "raised endpoint 404 token=none\ncleared endpoint 404 token=none\n")
        try await daemon.stop()
        try await server.stop()
    }

    /// Always the largest value: full jitter then waits exactly the cap.
    struct MaxRandom: RandomNumberGenerator { mutating func next() -> UInt64 { .max } }

    @Test func serverErrorsBackOffWithGrowingWaitsThenDeliver() async throws {
        let script = Script { _, index in index < 6 ? .status(500) : .ok() }
        let server = try await TestHTTPServer.start(respond: script.responder)
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir, random: MaxRandom()) {
            $0.endpoint = server.url
            $0.retryInitial = .milliseconds(40)
            $0.retryMax = .seconds(60)
        }
        try Self.enqueue(10, socket: daemon.socket)
        let probe = DatabaseProbe(path: daemon.database)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        #expect(server.requestCount == 7)
        let times = server.requests.map(\.receivedAt)
        let gaps = zip(times, times.dropFirst()).map { $0.duration(to: $1) }
        var generator = MaxRandom()
        let backoff = Backoff(initial: .milliseconds(40), maximum: .seconds(60))
        let expected = (1...6).map { backoff.delay(failures: $0, retryAfter: nil, using: &generator) }
        #expect(expected == [40, 80, 160, 320, 640, 1280].map { Duration.milliseconds($0) })
        for (gap, wait) in zip(gaps, expected) {
            #expect(gap >= wait, "waited \(gap), owed \(wait)")
        }
        #expect(Self.deliveredSeqs(server, statuses: script.given) == Array(0..<10))
        #expect(try probe.scalar("SELECT consecutive_failures FROM daemon_state") == 0)
        try await daemon.stop()
        try await server.stop()
    }

    @Test func retryAfterIsAFloorForTheNextTry() async throws {
        let script = Script { _, index in index == 0 ? .status(429, headers: [("Retry-After", "2")]) : .ok() }
        let server = try await TestHTTPServer.start(respond: script.responder)
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) {
            $0.endpoint = server.url
            $0.retryInitial = .milliseconds(10)
        }
        try Self.enqueue(5, socket: daemon.socket)
        let probe = DatabaseProbe(path: daemon.database)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        let times = server.requests.map(\.receivedAt)
        #expect(times.count == 2)
        #expect(times[0].duration(to: times[1]) >= .seconds(2))
        try await daemon.stop()
        try await server.stop()
    }

    @Test func serverDownThenUpDeliversEverything() async throws {
        let port = try unusedLocalPort()
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) {
            $0.endpoint = "http://127.0.0.1:\(port)/api/track"
            $0.retryInitial = .milliseconds(20)
            $0.retryMax = .milliseconds(300)
        }
        try Self.enqueue(300, socket: daemon.socket)
        let probe = DatabaseProbe(path: daemon.database)
        try await waitUntil("refused connections to count") { try probe.scalar("SELECT consecutive_failures FROM daemon_state") >= 3 }
        #expect(try probe.strings("SELECT last_error FROM daemon_state") == ["connection refused"])
        #expect(try probe.queued == 300)

        let script = Script { _, _ in .ok() }
        let server = try await TestHTTPServer.start(port: port, respond: script.responder)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        #expect(Self.deliveredSeqs(server, statuses: script.given) == Array(0..<300))
        try await daemon.stop()
        try await server.stop()
    }

    @Test func eventsOlderThanMaxAgeAreDeadLetteredAsExpired() async throws {
        let script = Script { _, _ in .status(503) }
        let server = try await TestHTTPServer.start(respond: script.responder)
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) {
            $0.endpoint = server.url
            $0.retryInitial = .milliseconds(50)
            $0.retryMax = .milliseconds(100)
            $0.maxEventAge = .milliseconds(500)
        }
        try Self.enqueue(10, socket: daemon.socket)
        let probe = DatabaseProbe(path: daemon.database)
        try await waitUntil("the events to expire") { try probe.scalar("SELECT count(*) FROM dead_letters WHERE reason = 'expired'") == 10 }
        #expect(try probe.queued == 0)
        #expect(try probe.scalar("SELECT dead_lettered FROM counters") == 10)
        #expect(try probe.scalar("SELECT delivered FROM counters") == 0)
        try await daemon.stop()
        try await server.stop()
    }
}

@Suite struct APIAnswerTests {
    @Test func warningsAreCountedFromTheTopLevelArray() {
        #expect(APIAnswer.warningCount(#"{"ok":true,"warnings":[{"index":3,"message":"unknown field"},{"index":9}]}"#) == 2)
        #expect(APIAnswer.warningCount(#"{"ok":true,"warnings":[]}"#) == 0)
        #expect(APIAnswer.warningCount(#"{"ok":true,"data":{"warnings":[1]}}"#) == 0)
        #expect(APIAnswer.warningCount("not json but says \"warnings\"") == 0)
    }
}
