import CoreMetrics
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import Testing

@testable import TrackQueue

/// A stand-in for the HTTP client: answers from a script and records what it was sent.
private final class ScriptedSender: DeliverySender {
    private let state = NIOLockedValueBox<(answers: [DeliveryOutcome], bodies: [[UInt8]])>(([], []))
    /// Runs with each request's number (from 1) before it is answered.
    private let whileSending: @Sendable (Int) async -> Void

    init(_ answers: [DeliveryOutcome], whileSending: @escaping @Sendable (Int) async -> Void = { _ in }) {
        state.withLockedValue { $0.answers = answers }
        self.whileSending = whileSending
    }

    var requests: Int { state.withLockedValue { $0.bodies.count } }
    var sentBodies: [[UInt8]] { state.withLockedValue { $0.bodies } }

    func send(_ body: [UInt8], token: String?) async -> DeliveryOutcome {
        let number = state.withLockedValue { state in
            state.bodies.append(body)
            return state.bodies.count
        }
        await whileSending(number)
        return state.withLockedValue { state in
            return state.answers.isEmpty ? .response(status: 200, retryAfter: nil, body: "") : state.answers.removeFirst()
        }
    }

    func shutdown() async {}
}

/// The delivery loop with its real store, reader, scheduler and record keeper, on a
/// ``TestClock``: waits happen only when the test moves time, so backoff is checked exactly
/// and instantly.
@Suite struct DeliveryLoopTests {
    @Test func backsOffOnTheManualClockThenDeliversAndRecords() async throws {
        let dir = try TestDirectory()
        do {
            let store = try QueueStore(path: dir.database, durability: .full, bootID: SystemClock.bootID)
            try store.transaction { delta in
                for i in 0..<5 {
                    let text = #"{"event_name":"e","user_id":"u","seq":\#(i)}"#
                    _ = try Array(text.utf8).withUnsafeBytes {
                        try store.insertEvent($0, acceptedAtMillis: SystemClock.wallMillis(), boottimeMillis: SystemClock.boottimeMillis())
                    }
                    delta.pendingEvents += 1
                    delta.pendingBytes += Int64(text.utf8.count)
                }
            }
        }
        var settings = try DaemonSettings.resolve(flags: ["database": dir.database, "socket": dir.socket], environment: [:])
        settings.retryInitial = .seconds(1)
        settings.retryMax = .seconds(60)
        var logger = Logger(label: "trackq-test")
        logger.logLevel = .warning
        let (writer, opened) = try await StoreWriter.start(
            .init(path: dir.database, durability: .full, bootID: SystemClock.bootID, maxQueueBytes: 1 << 30), logger: logger)
        let pool = BlockingPool()
        let failures = 6
        let sender = ScriptedSender(
            Array(repeating: .response(status: 503, retryAfter: nil, body: "down"), count: failures - 1)
                + [.transportError("connection refused"), .response(status: 200, retryAfter: nil, body: "{}")])
        let clock = TestClock()
        let loop = DeliveryLoop(
            .init(
                settings: settings, writer: writer, reader: StoreReader(path: dir.database, pool: pool), sender: sender,
                tokens: TokenSource(environment: ["TRACKQ_TOKEN": "t"], file: nil), wake: WakeSignal(),
                bootRow: opened.bootRow ?? -1, alertCommand: nil, notifier: SystemdNotifier(environment: [:]),
                metrics: DaemonMetrics(factory: NOOPMetricsHandler.instance), pool: pool, logger: logger),
            clock: clock, randomSource: { SplitMix64(seed: 42) })
        let group = ServiceGroup(configuration: .init(services: [loop], logger: logger))
        let running = Task { try await group.run() }

        var twin = SplitMix64(seed: 42)
        let backoff = Backoff(initial: settings.retryInitial, maximum: settings.retryMax)
        for failure in 1...failures {
            try await waitUntil("request \(failure)") { sender.requests == failure && clock.nextDeadline != nil }
            // The loop sleeps exactly the scheduler's jittered backoff, measured from the answer.
            let expected = backoff.delay(failures: failure, retryAfter: nil, using: &twin)
            #expect(clock.nextDeadline == clock.now.advanced(by: expected))
            let record = try await writer.loadDeliveryRecord()
            #expect(record.state == "backoff")
            #expect(record.consecutiveFailures == failure)
            #expect(record.lastError == (failure < failures ? "HTTP 503: down" : "connection refused"))
            #expect(sender.requests == failure)  // nothing sent before the wait is over
            clock.advance(to: clock.nextDeadline!)
        }
        try await waitUntil("the batch delivered") { sender.requests == failures + 1 }
        try await waitUntil("the queue empty") { try DatabaseProbe(path: dir.database).queued == 0 }
        let record = try await writer.loadDeliveryRecord()
        #expect(record.consecutiveFailures == 0)
        #expect(record.lastStatus == 200)
        #expect(try DatabaseProbe(path: dir.database).scalar("SELECT delivered FROM counters") == 5)

        await group.triggerGracefulShutdown()
        try await running.value
        await writer.stop()
        await pool.shutdown()
    }

    /// While a full batch is out, the next one is read; it is sent next only if the first
    /// went through. A failure throws the read-ahead away: no event is skipped or reordered.
    @Test func readsTheNextBatchWhileARequestIsOutAndDropsItAfterAFailure() async throws {
        let dir = try TestDirectory()
        do {
            let store = try QueueStore(path: dir.database, durability: .full, bootID: SystemClock.bootID)
            try store.transaction { delta in
                for i in 0..<25 {
                    let text = #"{"event_name":"e","user_id":"u","seq":\#(i)}"#
                    _ = try Array(text.utf8).withUnsafeBytes {
                        try store.insertEvent($0, acceptedAtMillis: SystemClock.wallMillis(), boottimeMillis: SystemClock.boottimeMillis())
                    }
                    delta.pendingEvents += 1
                    delta.pendingBytes += Int64(text.utf8.count)
                }
            }
        }
        var settings = try DaemonSettings.resolve(flags: ["database": dir.database, "socket": dir.socket], environment: [:])
        settings.batchMaxEvents = 10
        settings.retryInitial = .seconds(1)
        var logger = Logger(label: "trackq-test")
        logger.logLevel = .warning
        let (writer, opened) = try await StoreWriter.start(
            .init(path: dir.database, durability: .full, bootID: SystemClock.bootID, maxQueueBytes: 1 << 30), logger: logger)
        let pool = BlockingPool()
        let reader = StoreReader(path: dir.database, pool: pool)
        let readAheadSeen = NIOLockedValueBox(false)
        let sender = ScriptedSender(
            [.response(status: 200, retryAfter: nil, body: ""), .response(status: 503, retryAfter: nil, body: "")],
            whileSending: { request in
                // The first request is held until the second batch has been read, or 10 s.
                guard request == 1 else { return }
                let deadline = ContinuousClock.now + .seconds(10)
                while reader.batchesRead < 2 && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(5)) }
                readAheadSeen.withLockedValue { $0 = reader.batchesRead >= 2 }
            })
        let clock = TestClock()
        let loop = DeliveryLoop(
            .init(
                settings: settings, writer: writer, reader: reader, sender: sender,
                tokens: TokenSource(environment: ["TRACKQ_TOKEN": "t"], file: nil), wake: WakeSignal(),
                bootRow: opened.bootRow ?? -1, alertCommand: nil, notifier: SystemdNotifier(environment: [:]),
                metrics: DaemonMetrics(factory: NOOPMetricsHandler.instance), pool: pool, logger: logger),
            clock: clock, randomSource: { SplitMix64(seed: 7) })
        let group = ServiceGroup(configuration: .init(services: [loop], logger: logger))
        let running = Task { try await group.run() }

        try await waitUntil("the 503 and its backoff") { sender.requests == 2 && clock.nextDeadline != nil }
        #expect(readAheadSeen.withLockedValue { $0 })
        clock.advance(to: clock.nextDeadline!)
        try await waitUntil("the queue empty") { try DatabaseProbe(path: dir.database).queued == 0 }
        // Batches of 10: the second is sent again after its 503, then the third (5 events).
        let sent = sender.sentBodies.map { body -> [Int] in
            let text = String(decoding: body, as: UTF8.self)
            return text.split(separator: "\"seq\":").dropFirst().map { Int($0.prefix { $0.isNumber })! }
        }
        #expect(sent == [Array(0..<10), Array(10..<20), Array(10..<20), Array(20..<25)])
        #expect(try DatabaseProbe(path: dir.database).scalar("SELECT delivered FROM counters") == 25)

        await group.triggerGracefulShutdown()
        try await running.value
        await writer.stop()
        await pool.shutdown()
    }
}
