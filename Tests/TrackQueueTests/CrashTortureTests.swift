import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import TrackQueue

/// The API stand-in of the torture: a seeded mix of 200, 500 and 429 answers, and 400 for
/// any batch that holds a poison event; it remembers every event it took with a 2xx.
private final class TortureAPI: Sendable {
    private struct State {
        var rng: SplitMix64
        var failing = true
        var accepted = Set<Int>()
        var acceptedCount = 0
        var answers: [Int: Int] = [:]
    }

    private let state: NIOLockedValueBox<State>

    init(seed: UInt64) {
        state = NIOLockedValueBox(State(rng: SplitMix64(seed: seed)))
    }

    func answer(_ request: ReceivedRequest) -> ScriptedResponse {
        let events = request.jsonArray ?? []
        return state.withLockedValue { state in
            let roll = Int.random(in: 0..<100, using: &state.rng)
            let response: ScriptedResponse
            if state.failing && roll < 15 {
                response = .status(500, body: "try later")
            } else if state.failing && roll < 25 {
                response = .status(429, headers: [("Retry-After", "0")])
            } else if events.contains(where: { $0["poison"] as? Bool == true }) {
                response = .status(400, body: #"{"error":"poison"}"#)
            } else {
                let seqs = events.compactMap { $0["seq"] as? Int }
                state.accepted.formUnion(seqs)
                state.acceptedCount += seqs.count
                response = .ok(#"{"success":true}"#)
            }
            state.answers[response.status, default: 0] += 1
            return response
        }
    }

    func stopFailing() { state.withLockedValue { $0.failing = false } }
    var accepted: Set<Int> { state.withLockedValue { $0.accepted } }
    var acceptedCount: Int { state.withLockedValue { $0.acceptedCount } }
    var answers: [Int: Int] { state.withLockedValue { $0.answers } }
}

/// An app that streams numbered events, reconnecting whenever the daemon goes away, and
/// records every number the daemon acknowledged.
private final class TortureWriter: Sendable {
    static func isPoison(_ seq: Int) -> Bool { seq % 101 == 50 }

    private let socket: String
    private let state = NIOLockedValueBox<(acked: Set<Int>, next: Int, stopped: Bool, finished: Bool)>(([], 0, false, false))

    init(socket: String) { self.socket = socket }

    var acked: Set<Int> { state.withLockedValue { $0.acked } }
    var finished: Bool { state.withLockedValue { $0.finished } }
    func stop() { state.withLockedValue { $0.stopped = true } }

    func start() {
        Thread { [self] in
            while !state.withLockedValue({ $0.stopped }) {
                guard let client = try? UnixClient(path: socket) else {
                    usleep(2000)  // the daemon is restarting: try again shortly
                    continue
                }
                while !state.withLockedValue({ $0.stopped }) {
                    let seqs = state.withLockedValue { state -> Range<Int> in
                        defer { state.next += 20 }
                        return state.next..<(state.next + 20)
                    }
                    let text = seqs.map { seq in
                        #"{"event_name":"torture","user_id":"u","seq":\#(seq)\#(Self.isPoison(seq) ? #","poison":true"# : "")}"# + "\n"
                    }.joined()
                    do {
                        try client.write(text)
                        for seq in seqs {
                            guard let line = try client.nextLine(timeout: .seconds(10)) else { throw POSIXError(.ECONNRESET) }
                            if line.hasPrefix(#"{"ok":true"#) { _ = state.withLockedValue { $0.acked.insert(seq) } }
                        }
                    } catch {
                        break  // killed mid-exchange: reconnect; unacked lines may or may not be stored
                    }
                }
            }
            state.withLockedValue { $0.finished = true }
        }.start()
    }
}

/// `kill -9` at random moments while apps write and the API misbehaves: no acknowledged
/// event is lost, only poison events become dead letters, and the database stays intact.
///
/// The test command runs 10 kills; `TRACKQ_TORTURE_KILLS=200 swift test --filter CrashTorture`
/// is the long form (RELIABILITY.md).
@Suite struct CrashTortureTests {
    static var kills: Int { Int(ProcessInfo.processInfo.environment["TRACKQ_TORTURE_KILLS"] ?? "") ?? 10 }

    @Test func ackedEventsSurviveKill9AtRandomMoments() async throws {
        let kills = Self.kills
        var rng = SplitMix64(seed: 20_261_127)
        let api = TortureAPI(seed: 7)
        let server = try await TestHTTPServer.start { request, _ in api.answer(request) }
        let dir = try TestDirectory()
        let probe = DatabaseProbe(path: dir.database)
        let arguments = [
            "--endpoint", server.url, "--retry-initial", "20ms", "--retry-max", "200ms", "--batch-linger", "5ms",
            "--batch-max-events", "50",
        ]
        var daemon = try await TrackqProcess.startDaemon(dir, arguments, environment: ["TRACKQ_TOKEN": "t"], logName: "run-0")
        let writer = TortureWriter(socket: dir.socket)
        writer.start()
        var integrityChecks = 0
        for kill in 1...kills {
            // Let it work: some new acks, then a random moment (mid-ingest, mid-commit,
            // mid-request or mid-split, as it falls).
            let ackedBefore = writer.acked.count
            try await waitUntil(timeout: .seconds(60), "progress before kill \(kill)") { writer.acked.count > ackedBefore + 20 }
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...150, using: &rng)))
            daemon.signal(SIGKILL)
            _ = try await daemon.waitForExit()
            #expect(try probe.strings("PRAGMA integrity_check") == ["ok"], "after kill \(kill)")
            integrityChecks += 1
            daemon = try await TrackqProcess.startDaemon(dir, arguments, environment: ["TRACKQ_TOKEN": "t"], logName: "run-\(kill)")
        }
        writer.stop()
        try await waitUntil(timeout: .seconds(60), "the writer to stop") { writer.finished }
        api.stopFailing()
        try await waitUntil(timeout: .seconds(180), "the queue to drain") { try probe.queued == 0 }

        let acked = writer.acked
        let accepted = api.accepted
        let lost = acked.filter { !TortureWriter.isPoison($0) && !accepted.contains($0) }
        #expect(lost.isEmpty, "acked but never delivered: \(lost.sorted().prefix(20))")
        let dead = Set(try probe.strings("SELECT json_extract(body, '$.seq') FROM dead_letters").compactMap { Int($0) })
        #expect(dead.allSatisfy(TortureWriter.isPoison), "only poison events are dead letters")
        #expect(acked.filter(TortureWriter.isPoison).isSubset(of: dead), "every acked poison event is a dead letter")
        #expect(accepted.allSatisfy { !TortureWriter.isPoison($0) })
        #expect(try probe.strings("PRAGMA integrity_check") == ["ok"])
        let duplicates = api.acceptedCount - accepted.count
        print(
            "torture: kills=\(kills) integrity_checks_ok=\(integrityChecks + 1) acked=\(acked.count) delivered=\(accepted.count) "
                + "duplicates=\(duplicates) dead_letters=\(dead.count) lost=\(lost.count) answers=\(api.answers.sorted { $0.key < $1.key })"
        )
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        try await server.stop()
    }
}
