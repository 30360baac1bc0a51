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
        /// The host's clocks, and what earlier boots left of them: for `--max-event-age`, and
        /// the times events are sent with.
        var clock: HostClock
        var clockHistory: ClockHistory
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
        _ = await readToken(&scheduler, &keeper)

        var batch: OutgoingBatch?
        var holding = false
        // What context.trackq adds to each event: batches stay within --batch-max-bytes as sent.
        let noteBytes = settings.clockAnnotation ? EventRewriter.maxNoteBytes : 0
        while !Task.isCancelled {
            if wake.take([.shutdown]) != nil { break }
            if wake.take([.reload]) != nil { await reload(&scheduler, &keeper) }

            // 1. A batch to work on.
            if batch == nil {
                let read: OutgoingBatch
                do {
                    read = try await parts.reader.readBatch(
                        maxEvents: settings.batchMaxEvents, maxBytes: settings.batchMaxBytes, extraPerEvent: noteBytes)
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
                        await reload(&scheduler, &keeper)
                        continue
                    }
                    // New events: give the batch a moment to fill.
                    if await wait(for: [.shutdown], until: clock.now.advanced(by: settings.batchLinger)) == .shutdown { break }
                    continue
                }
                // Events stamped while the clock is wrong wait for it to be set (--clock-sync-wait).
                let times = eventTimes()
                let (ready, holdUntil) = read.releasable(times)
                if ready == 0, let holdUntil {
                    if !holding {
                        holding = true
                        parts.logger.notice(
                            "holding events stamped while the clock is wrong until it is set, at most --clock-sync-wait",
                            metadata: ["clock.sync_wait": "\(DurationParser.format(settings.clockSyncWait))"])
                    }
                    let millis = min(max(1, holdUntil.saturatingSubtract(times.now.boottimeMillis)), 60_000)
                    let reason = await wait(for: [.clock, .reload, .shutdown], until: clock.now.advanced(by: .milliseconds(millis)))
                    if reason == .shutdown { break }
                    if reason == .reload { await reload(&scheduler, &keeper) }
                    continue
                }
                holding = false
                batch = ready < read.count ? read.prefix(ready) : read
                scheduler.begin(batchCount: ready)
            }
            guard let current = batch else { continue }

            // 2. Not before the scheduler says so (backoff, alert pause).
            if let notBefore = scheduler.sendNotBefore, notBefore > clock.now {
                let reason = await wait(for: [.shutdown, .reload], until: notBefore)
                if reason == .shutdown { break }
                if reason == .reload { await reload(&scheduler, &keeper) }
                continue
            }
            guard let range = scheduler.nextRange() else {
                batch = nil
                continue
            }
            // A recovery replaced the queue file since this batch was read: its events may not
            // all be in the new one, so nothing is recorded of it; it is read again from there.
            guard current.generation == parts.writer.generation else {
                batch = nil
                continue
            }
            // Expired events are dead-lettered instead of sent: checked before every send, since
            // they can also expire while a batch waits out an outage. Then re-read without them.
            switch await deadLetterExpired(current.events[range]) {
            case .none:
                break
            case .moved:
                batch = nil
                continue
            case .failed(let error):
                await recordFailed(error, &scheduler, &keeper, batch: current, random: &random)
                batch = nil
                continue
            }

            // 3. Send, judge, record. While a whole batch is out and all is well, the batch
            //    after it is read meanwhile: if this one goes through, it is sent next at once.
            let token = await readToken(&scheduler, &keeper).token
            scheduler.tokenMissing = token == nil
            let whole = range == 0..<current.count
            let body = current.sendBody(range, times: eventTimes(), annotate: settings.clockAnnotation)
            let prefetchAfter = whole && scheduler.consecutiveFailures == 0 ? current.lastID : nil
            async let prefetched = prefetchAfter.asyncMap { [reader = parts.reader] after in
                try? await reader.readBatch(
                    afterID: after, maxEvents: settings.batchMaxEvents, maxBytes: settings.batchMaxBytes, extraPerEvent: noteBytes)
            }
            let attemptAt = parts.clock.wallMillis()
            let started = clock.now
            let outcome = await parts.sender.send(body, token: token)
            if Task.isCancelled { break }  // shut down mid-request: record nothing, the events stay queued
            if current.generation != parts.writer.generation {
                // Replaced while the request was out: the new file's copies are sent again (at
                // least once) rather than an answer recorded for events it may not hold.
                batch = nil
                continue
            }
            parts.metrics.requestDuration.record(duration: started.duration(to: clock.now))
            if case .response(let status, _, let body) = outcome {
                parts.metrics.response(status: status)
                if (200..<300).contains(status) { countWarnings(in: body) }
            } else {
                parts.metrics.response(status: nil)
            }
            // Decided on copies: if the answer cannot be recorded, it never happened.
            let (schedulerBefore, keeperBefore) = (scheduler, keeper)
            let actions = scheduler.handle(outcome, now: clock.now, using: &random)
            let (commit, effects) = keeper.answered(
                outcome, actions: actions, scheduler: scheduler, batch: current, attemptAtMillis: attemptAt,
                nowMillis: parts.clock.wallMillis(), now: clock.now)
            do {
                try await parts.writer.recordAnswer(
                    delivered: commit.deliveredRuns, refused: commit.refused, record: commit.record,
                    atMillis: parts.clock.wallMillis())
                await perform(effects)
            } catch {
                // The API may have them; they stay queued and will be sent again (at least
                // once), after a backoff that grows with every failure: never at once, in a loop.
                (scheduler, keeper) = (schedulerBefore, keeperBefore)
                await recordFailed(error, &scheduler, &keeper, batch: current, random: &random)
            }
            if scheduler.nextRange() == nil {
                batch = nil
                // All of it delivered and recorded: the events after it are already read.
                if let next = await prefetched ?? nil, !next.isEmpty, scheduler.consecutiveFailures == 0,
                    case .response(let status, _, _) = outcome,
                    ResponseClassifier.classify(status: status) == .success,
                    next.releasable(eventTimes()).count == next.count
                {
                    if next.isFull {
                        batch = next
                        scheduler.begin(batchCount: next.count)
                    } else if await wait(for: [.shutdown], until: clock.now.advanced(by: settings.batchLinger)) == .shutdown {
                        // A trickle: what came in during the request waits for a fuller batch,
                        // as new events after an idle spell do, instead of a request each.
                        break
                    }
                }
            }
        }
    }

    /// Carries out what the record keeper decided.
    private func perform(_ effects: [DeliveryEffect]) async {
        for effect in effects {
            switch effect {
            case .log(let level, let message, let metadata):
                parts.logger.log(level: level, "\(message)", metadata: metadata.mapValues { .string($0) })
            case .status(let text):
                parts.notifier.status(text)
            case .alertCommand(let raised, let alert):
                guard let command = parts.alertCommand else { continue }
                _ = try? await parts.pool.run { command.run(raised: raised, alert: alert) }
            case .backoffSeconds(let seconds):
                parts.metrics.backoff.record(seconds)
            }
        }
    }

    private func wait(for accepted: WakeReasons, until deadline: C.Instant) async -> WakeReason? {
        await parts.wake.wait(for: accepted, until: deadline, clock: clock)
    }

    private enum Expiry {
        case none
        case moved
        case failed(any Error)
    }

    /// Moves the expired ones of `events` to the dead letters.
    private func deadLetterExpired(_ events: ArraySlice<OutgoingBatch.Event>) async -> Expiry {
        let age = EventAge(
            maxAge: parts.settings.maxEventAge, now: parts.clock.read(), earlierBoots: parts.clockHistory.earlierBoots,
            bootIDKnown: parts.clock.bootID != nil)
        let expired = events.filter(age.isExpired)
        guard !expired.isEmpty else { return .none }
        do {
            try await parts.writer.deadLetterExpired(expired, atMillis: parts.clock.wallMillis())
            parts.logger.warning("events older than max-event-age moved to the dead letters", metadata: ["count": "\(expired.count)"])
            return .moved
        } catch {
            return .failed(error)
        }
    }

    /// A write of delivery's failed (a full disk, an I/O error, a read-only remount): that is
    /// a failure like a 5xx. Back off, say so in the log, systemd and (if it can be written)
    /// the state record, and read the batch again after the wait; every event stays queued.
    private func recordFailed(
        _ error: any Error, _ scheduler: inout DeliveryScheduler<C.Instant>, _ keeper: inout DeliveryRecordKeeper,
        batch: OutgoingBatch, random: inout some RandomNumberGenerator
    ) async {
        parts.logger.error(
            "cannot write delivery's result to the database; backing off, every event stays queued",
            metadata: ["error": "\(Printable.oneLine("\(error)", limit: 300))"])
        let actions = scheduler.recordFailed(now: clock.now, using: &random)
        let (commit, effects) = keeper.answered(
            .transportError("cannot write to the database: \(error)"), actions: actions, scheduler: scheduler, batch: batch,
            attemptAtMillis: parts.clock.wallMillis(), nowMillis: parts.clock.wallMillis(), now: clock.now)
        await perform(effects)
        await save(commit.record)
    }

    /// The token, read again (a file read, so on the blocking pool). A token refused when
    /// read raises an `auth` alert, and the last good one is used.
    private func readToken(
        _ scheduler: inout DeliveryScheduler<C.Instant>, _ keeper: inout DeliveryRecordKeeper
    ) async -> TokenSource.Reading {
        let tokens = parts.tokens
        guard let reading = try? await parts.pool.run({ tokens.read() }) else {
            return TokenSource.Reading(token: nil, changed: false, problem: nil)
        }
        let actions: [DeliveryAction<C.Instant>]
        if let problem = reading.problem {
            actions = scheduler.raise(DeliveryAlert(kind: .auth, status: 0, message: problem + "; fix it, then send SIGHUP"))
        } else {
            actions = scheduler.clearRaised()
        }
        if !actions.isEmpty {
            let (record, effects) = keeper.alertsChanged(actions, nowMillis: parts.clock.wallMillis())
            await perform(effects)
            await save(record)
        }
        return reading
    }

    /// SIGHUP: read the token again and retry at once.
    private func reload(_ scheduler: inout DeliveryScheduler<C.Instant>, _ keeper: inout DeliveryRecordKeeper) async {
        let changed = await readToken(&scheduler, &keeper).changed
        let retrying = scheduler.retryNow()
        parts.logger.notice("reloaded: token read again", metadata: ["token.changed": "\(changed)", "retrying.now": "\(retrying)"])
    }

    /// Counts the `warnings` a 2xx answer carries, and logs them at debug.
    private func countWarnings(in body: String) {
        guard body.contains("\"warnings\"") else { return }
        let count = APIAnswer.warningCount(body)
        guard count > 0 else { return }
        parts.metrics.apiWarnings.increment(by: count)
        parts.logger.debug(
            "the API answered with warnings", metadata: ["warnings": "\(count)", "http.body": "\(Printable.oneLine(body, limit: 500))"])
    }

    private func save(_ record: DeliveryRecord) async {
        try? await parts.writer.saveDeliveryRecord(record)
    }

    /// What the clock says of queued events' times, now.
    private func eventTimes() -> EventTimes {
        let now = parts.clock.read()
        return EventTimes(
            now: now, nowState: parts.clockHistory.judge.state(of: now),
            syncWaitMillis: max(0, parts.settings.clockSyncWait.milliseconds), bootIDKnown: parts.clock.bootID != nil,
            history: parts.clockHistory)
    }
}

extension Optional where Wrapped: Sendable {
    /// `map` with an async transform.
    fileprivate func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
