import Logging
import Metrics
import ServiceLifecycle

/// Sends one request body to the API and reports how it answered: the HTTP client behind
/// a small protocol, so the loop can be driven by a stand-in and a manual clock.
protocol DeliverySender: Sendable {
    /// Sends `body` (a JSON array of events) with `token`.
    func send(_ body: [UInt8], token: String?) async -> DeliveryOutcome
    /// Closes connections; called once the loop has stopped.
    func shutdown() async
}

/// Drains the queue to the API: reads a batch, asks the ``DeliveryScheduler`` what to send,
/// sends it, and performs what the scheduler and the ``DeliveryRecordKeeper`` decide. All
/// judgement lives in those two values; this type only does the I/O.
///
/// Every answer is written to the database in one transaction with the events it concerns:
/// delivered events leave the queue in the transaction that records their 2xx, and the state
/// record `trackq status` reads is updated alongside.
///
/// On graceful shutdown it stops after the request in flight, which gets ``shutdownGrace``
/// to finish; past that it is cancelled and its events stay queued.
final class DeliveryLoop<C: Clock>: Service where C.Duration == Duration {
    /// How often an idle sender looks at the queue without being woken.
    static var idleRecheck: Duration { .seconds(2) }
    /// How long the request in flight may take to finish on shutdown.
    static var shutdownGrace: Duration { .seconds(5) }

    /// What the loop works with.
    struct Parts: Sendable {
        var settings: DaemonSettings
        var writer: StoreWriter
        var reader: StoreReader
        var sender: any DeliverySender
        var tokens: TokenSource
        var wake: WakeSignal
        var bootRow: Int64
        var alertCommand: AlertCommand?
        var notifier: SystemdNotifier
        var metrics: DaemonMetrics
        var pool: BlockingPool
        var logger: Logger
    }

    private let parts: Parts
    private let clock: C
    private let randomSource: @Sendable () -> any RandomNumberGenerator

    init(_ parts: Parts, clock: C, randomSource: @escaping @Sendable () -> any RandomNumberGenerator) {
        self.parts = parts
        self.clock = clock
        self.randomSource = randomSource
    }

    func run() async throws {
        let wake = parts.wake
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                var random = self.randomSource()
                await self.deliver(random: &random)
            }
            tasks.addTask {
                // Returns on graceful shutdown, or throws once the loop ended and this is cancelled.
                guard (try? await gracefulShutdown()) != nil else { return }
                wake.signal(.shutdown)
                try? await Task.sleep(for: Self.shutdownGrace)
            }
            // The loop stopped, or the grace ran out: either way, end the other task.
            await tasks.next()
            tasks.cancelAll()
        }
        await parts.sender.shutdown()
    }

    /// Runs until a `.shutdown` wake or cancellation.
    private func deliver(random: inout some RandomNumberGenerator) async {
        let settings = parts.settings
        let wake = parts.wake
        var scheduler = DeliveryScheduler<C.Instant>(
            backoff: Backoff(initial: settings.retryInitial, maximum: settings.retryMax))
        var keeper = DeliveryRecordKeeper(loaded: (try? await parts.writer.loadDeliveryRecord()) ?? DeliveryRecord())
        await save(keeper.record)
        _ = await readToken()

        var batch: OutgoingBatch?
        while !Task.isCancelled {
            if wake.take([.shutdown]) != nil { break }
            if wake.take([.reload]) != nil { await reloadToken(&scheduler) }

            // 1. A batch to work on.
            if batch == nil {
                let read: OutgoingBatch
                do {
                    read = try await parts.reader.readBatch(maxEvents: settings.batchMaxEvents, maxBytes: settings.batchMaxBytes)
                } catch {
                    parts.logger.error("cannot read the queue; retrying", metadata: ["error": "\(error)"])
                    if await wait(for: [.shutdown], until: clock.now.advanced(by: settings.retryInitial)) == .shutdown { break }
                    continue
                }
                if read.isEmpty {
                    if let (record, effects) = keeper.queueEmpty() {
                        await save(record)
                        await perform(effects)
                    }
                    // Our own commits wake us at once; the timeout catches events another
                    // process put in the queue (`trackq dead requeue`).
                    let reason = await wait(for: [.newEvents, .reload, .shutdown], until: clock.now.advanced(by: Self.idleRecheck))
                    if reason == .shutdown { break }
                    if reason == nil { continue }
                    if reason == .reload {
                        await reloadToken(&scheduler)
                        continue
                    }
                    // New events: give the batch a moment to fill.
                    if await wait(for: [.shutdown], until: clock.now.advanced(by: settings.batchLinger)) == .shutdown { break }
                    continue
                }
                batch = read
                scheduler.begin(batchCount: read.count)
            }
            guard let current = batch else { continue }

            // 2. Not before the scheduler says so (backoff, alert pause).
            if let notBefore = scheduler.notBefore, notBefore > clock.now {
                let reason = await wait(for: [.shutdown, .reload], until: notBefore)
                if reason == .shutdown { break }
                if reason == .reload { await reloadToken(&scheduler) }
                continue
            }
            guard let range = scheduler.nextRange() else {
                batch = nil
                continue
            }
            // Expired events are dead-lettered instead of sent: checked before every send, since
            // they can also expire while a batch waits out an outage. Then re-read without them.
            if await deadLetterExpired(current.events[range]) {
                batch = nil
                continue
            }

            // 3. Send, judge, record.
            let token = await readToken().token
            let body = range == 0..<current.count ? current.body : Self.body(of: current, range)
            let attemptAt = SystemClock.wallMillis()
            let started = clock.now
            let outcome = await parts.sender.send(body, token: token)
            if Task.isCancelled { break }  // shut down mid-request: record nothing, the events stay queued
            parts.metrics.requestDuration.record(duration: started.duration(to: clock.now))
            if case .response(let status, _, let body) = outcome {
                parts.metrics.response(status: status)
                if (200..<300).contains(status) { countWarnings(in: body) }
            } else {
                parts.metrics.response(status: nil)
            }
            let actions = scheduler.handle(outcome, now: clock.now, using: &random)
            let (commit, effects) = keeper.answered(
                outcome, actions: actions, scheduler: scheduler, batch: current, attemptAtMillis: attemptAt,
                nowMillis: SystemClock.wallMillis(), now: clock.now)
            await perform(effects)
            do {
                try await parts.writer.recordAnswer(
                    delivered: commit.delivered, refused: commit.refused, record: commit.record,
                    atMillis: SystemClock.wallMillis())
            } catch {
                // The API has them; they stay queued and will be sent again (at least once).
                parts.logger.error("cannot record a delivery; its events will be sent again", metadata: ["error": "\(error)"])
            }
            if scheduler.nextRange() == nil { batch = nil }
        }
    }

    /// Carries out what the record keeper decided.
    private func perform(_ effects: [DeliveryEffect]) async {
        for effect in effects {
            switch effect {
            case .log(let level, let message, let metadata):
                parts.logger.log(level: level, "\(message)", metadata: metadata.mapValues { .string($0) })
            case .notify(let message):
                parts.notifier.notify(message)
            case .alertCommand(let raised, let alert):
                guard let command = parts.alertCommand else { continue }
                _ = try? await parts.pool.run { command.run(raised: raised, alert: alert) }
            case .backoffSeconds(let seconds):
                parts.metrics.backoff.record(seconds)
            }
        }
    }

    private func wait(for accepted: Set<WakeReason>, until deadline: C.Instant) async -> WakeReason? {
        await parts.wake.wait(for: accepted, until: deadline, clock: clock)
    }

    /// Moves the expired ones of `events` to the dead letters; true if there were any.
    private func deadLetterExpired(_ events: ArraySlice<OutgoingBatch.Event>) async -> Bool {
        let age = EventAge(
            maxAge: parts.settings.maxEventAge, nowWallMillis: SystemClock.wallMillis(),
            nowBoottimeMillis: SystemClock.boottimeMillis(), currentBoot: parts.bootRow)
        let expired = events.filter(age.isExpired)
        guard !expired.isEmpty else { return false }
        do {
            try await parts.writer.deadLetterExpired(expired, atMillis: SystemClock.wallMillis())
            parts.logger.warning("events older than max-event-age moved to the dead letters", metadata: ["count": "\(expired.count)"])
        } catch {
            parts.logger.error("cannot move expired events", metadata: ["error": "\(error)"])
        }
        return true
    }

    /// The token, read again (a file read, so on the blocking pool).
    private func readToken() async -> (token: String?, changed: Bool) {
        let tokens = parts.tokens
        return (try? await parts.pool.run { tokens.read() }) ?? (nil, false)
    }

    private func reloadToken(_ scheduler: inout DeliveryScheduler<C.Instant>) async {
        let changed = await readToken().changed
        parts.logger.notice("token read again", metadata: ["token.changed": "\(changed)"])
        if changed && scheduler.tokenChanged() {
            parts.logger.notice("token changed: retrying now")
        }
    }

    /// Counts the `warnings` a 2xx answer carries, and logs them at debug.
    private func countWarnings(in body: String) {
        guard body.contains("\"warnings\"") else { return }
        let count = APIAnswer.warningCount(body)
        guard count > 0 else { return }
        parts.metrics.apiWarnings.increment(by: count)
        parts.logger.debug("the API answered with warnings", metadata: ["warnings": "\(count)", "http.body": "\(body.prefix(500))"])
    }

    private func save(_ record: DeliveryRecord) async {
        try? await parts.writer.saveDeliveryRecord(record)
    }

    /// `[...]` of the events in `range` of `batch`.
    static func body(of batch: OutgoingBatch, _ range: Range<Int>) -> [UInt8] {
        var body: [UInt8] = [UInt8(ascii: "[")]
        for event in batch.events[range] {
            if body.count > 1 { body.append(UInt8(ascii: ",")) }
            body += batch.body[event.range]
        }
        body.append(UInt8(ascii: "]"))
        return body
    }
}
