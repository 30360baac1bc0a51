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

    func send(_ body: RequestBody, token: String?) async -> DeliveryOutcome {
        let number = state.withLockedValue { state in
            state.bodies.append(body.plain)
            return state.bodies.count
        }
        await whileSending(number)
        return state.withLockedValue { state in
            return state.answers.isEmpty ? .response(status: 200, retryAfter: nil, body: "") : state.answers.removeFirst()
        }
    }

    func shutdown() async {}
}

/// A delivery loop over a real store, writer and reader, with `events` events queued
/// (`{"seq":i}`), run in a ServiceGroup on a ``TestClock``.
private struct LoopRun {
    let writer: StoreWriter
    let pool: BlockingPool
    let sender: ScriptedSender
    let settings: DaemonSettings
    let clock = TestClock()
    private let group: ServiceGroup
    private let running: Task<Void, any Error>

    init(
        database: String, socket: String, events: Int, seed: UInt64, configure: (inout DaemonSettings) -> Void,
        localSecondOfDay: @escaping @Sendable (Int64) -> Int = { localSecondOfDay(wallMillis: $0) },
        sender makeSender: (StoreReader) -> ScriptedSender
    ) async throws {
        do {
            let store = try QueueStore(path: database, durability: .full, bootID: SystemClock.bootID)
            try store.transaction { delta in
                for i in 0..<events {
                    let text = #"{"event_name":"e","user_id":"u","seq":\#(i)}"#
                    _ = try Array(text.utf8).withUnsafeBytes {
                        try store.insertEvent(
                            $0, acceptedAtMillis: SystemClock.wallMillis(), boottimeMillis: SystemClock.boottimeMillis(), delta: &delta)
                    }
                }
            }
        }
        var settings = try DaemonSettings.resolve(flags: ["database": database, "socket": socket], environment: [:])
        configure(&settings)
        self.settings = settings
        var logger = Logger(label: "trackq-test")
        logger.logLevel = .warning
        let (writer, opened) = try await StoreWriter.start(
            .init(path: database, durability: .full, maxQueueBytes: 1 << 30), logger: logger)
        self.writer = writer
        pool = BlockingPool()
        let reader = StoreReader(path: database, pool: pool)
        sender = makeSender(reader)
        let loop = DeliveryLoop(
            .init(
                settings: settings, writer: writer, reader: reader, sender: sender,
                tokens: TokenSource(environment: ["TRACKQ_TOKEN": "t"], file: nil), wake: WakeSignal(),
                clock: .system, clockHistory: opened.clockHistory, alertCommand: nil,
                notifier: SystemdNotifier(environment: [:]),
                metrics: DaemonMetrics(factory: NOOPMetricsHandler.instance), pool: pool, logger: logger,
                localSecondOfDay: localSecondOfDay),
            clock: clock, randomSource: { SplitMix64(seed: seed) })
        let group = ServiceGroup(configuration: .init(services: [loop], logger: logger))
        self.group = group
        running = Task { try await group.run() }
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await running.value
        await writer.stop()
        await pool.shutdown()
    }
}

/// The delivery loop with its real store, reader, scheduler and record keeper, on a
/// ``TestClock``: waits happen only when the test moves time, so backoff is checked exactly
/// and instantly.
@Suite struct DeliveryLoopTests {
    @Test func backsOffOnTheManualClockThenDeliversAndRecords() async throws {
        let dir = try TestDirectory()
        let failures = 6
        let run = try await LoopRun(
            database: dir.database, socket: dir.socket, events: 5, seed: 42,
            configure: { settings in
                settings.retryInitial = .seconds(1)
                settings.retryMax = .seconds(60)
            },
            sender: { _ in
                ScriptedSender(
                    Array(repeating: .response(status: 503, retryAfter: nil, body: "down"), count: failures - 1)
                        + [.transportError("connection refused"), .response(status: 200, retryAfter: nil, body: "{}")])
            })
        let (sender, clock, writer) = (run.sender, run.clock, run.writer)

        var twin = SplitMix64(seed: 42)
        let backoff = Backoff(initial: run.settings.retryInitial, maximum: run.settings.retryMax)
        for failure in 1...failures {
            try await waitUntil("request \(failure)") { sender.requests == failure && clock.nextDeadline != nil }
            // The loop sleeps exactly the scheduler's jittered backoff, measured from the answer.
            let expected = backoff.delay(failures: failure, retryAfter: nil, using: &twin)
            #expect(clock.nextDeadline == clock.now.advanced(by: expected))
            let record = try await writer.loadDeliveryRecord()
            #expect(record.state == .backoff)
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

        try await run.stop()
    }

    /// After a request, a full batch goes at once; one that is not full waits `--batch-linger`
    /// for more, as new events after an idle spell do, instead of a request each.
    @Test func aBatchThatIsNotFullWaitsTheLingerAfterARequest() async throws {
        let dir = try TestDirectory()
        let run = try await LoopRun(
            database: dir.database, socket: dir.socket, events: 25, seed: 3,
            configure: { settings in
                settings.batchMaxEvents = 10
                settings.batchLinger = .seconds(10)
            },
            sender: { _ in ScriptedSender([]) })
        let (sender, clock) = (run.sender, run.clock)

        try await waitUntil("two requests and a wait") { sender.requests >= 2 && clock.nextDeadline != nil }
        #expect(sender.requests == 2)
        #expect(clock.nextDeadline == clock.now.advanced(by: .seconds(10)))
        clock.advance(to: clock.nextDeadline!)
        try await waitUntil("the queue empty") { try DatabaseProbe(path: dir.database).queued == 0 }
        let sent = sender.sentBodies.map { body -> [Int] in
            let text = String(decoding: body, as: UTF8.self)
            return text.split(separator: "\"seq\":").dropFirst().map { Int($0.prefix { $0.isNumber })! }
        }
        #expect(sent == [Array(0..<10), Array(10..<20), Array(20..<25)])

        try await run.stop()
    }

    /// While a full batch is out, the next one is read; it is sent next only if the first
    /// went through. A failure throws the read-ahead away: no event is skipped or reordered.
    @Test func readsTheNextBatchWhileARequestIsOutAndDropsItAfterAFailure() async throws {
        let dir = try TestDirectory()
        let readAheadSeen = NIOLockedValueBox(false)
        let run = try await LoopRun(
            database: dir.database, socket: dir.socket, events: 25, seed: 7,
            configure: { settings in
                settings.batchMaxEvents = 10
                settings.retryInitial = .seconds(1)
            },
            sender: { reader in
                ScriptedSender(
                    [.response(status: 200, retryAfter: nil, body: ""), .response(status: 503, retryAfter: nil, body: "")],
                    whileSending: { request in
                        // The first request is held until the second batch has been read, or 10 s.
                        guard request == 1 else { return }
                        let deadline = ContinuousClock.now + .seconds(10)
                        while reader.batchesRead < 2 && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(5)) }
                        readAheadSeen.withLockedValue { $0 = reader.batchesRead >= 2 }
                    })
            })
        let (sender, clock) = (run.sender, run.clock)

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

        try await run.stop()
    }

    @Test func outsideTheSendWindowEventsWaitAndStatusSaysSoUntilItOpens() async throws {
        let dir = try TestDirectory()
        // The host's local time as the test sets it: 01:00, an hour before the window.
        let local = NIOLockedValueBox(3600)
        let run = try await LoopRun(
            database: dir.database, socket: dir.socket, events: 5, seed: 7,
            configure: { $0.sendWindow = try! SendWindow.parse("02:00-03:00").get() },
            localSecondOfDay: { _ in local.withLockedValue { $0 } },
            sender: { _ in ScriptedSender([]) })
        let (sender, clock, writer) = (run.sender, run.clock, run.writer)
        try await waitUntil("the wait for the window") { clock.nextDeadline != nil }
        let record = try await writer.loadDeliveryRecord()
        #expect(record.state == .window)
        let opensIn = (record.nextAttemptAtMillis ?? 0) - SystemClock.wallMillis()
        #expect((3_590_000...3_600_000).contains(opensIn))
        // It looks again in a minute at most: the local clock may change meanwhile.
        #expect(clock.nextDeadline == clock.now.advanced(by: .seconds(60)))
        #expect(sender.requests == 0)

        // A minute on, still closed: nothing sent, and it waits again.
        local.withLockedValue { $0 = 3660 }
        clock.advance(to: clock.nextDeadline!)
        try await waitUntil("the next look") { clock.nextDeadline == clock.now.advanced(by: .seconds(60)) }
        #expect(sender.requests == 0)
        #expect(try DatabaseProbe(path: dir.database).queued == 5)

        // 02:00:30: open; the batch goes.
        local.withLockedValue { $0 = 7230 }
        clock.advance(to: clock.nextDeadline!)
        try await waitUntil("the batch sent") { sender.requests == 1 }
        try await waitUntil("the queue empty") { try DatabaseProbe(path: dir.database).queued == 0 }
        try await waitUntil("the record to leave the window") {
            try DatabaseProbe(path: dir.database).strings("SELECT delivery_state FROM daemon_state") != ["window"]
        }
        try await run.stop()
    }
}
