import Logging
import Metrics
import ServiceLifecycle
import TrackQueueClock
import TrackQueueConfig
import TrackQueueMetrics
import TrackQueueStatus
import TrackQueueStore
import TrackQueueSupport
import TrackQueueSystem

/// Sends one request body to the API and reports how it answered: the HTTP client behind
/// a small protocol, so the loop can be driven by a stand-in and a manual clock.
package protocol DeliverySender: Sendable {
    /// `body` (a JSON array of events) as it goes on the wire.
    func prepare(_ body: [UInt8]) -> RequestBody
    /// Sends a body ``prepare(_:)`` made, with `token`.
    func send(_ body: RequestBody, token: String?) async -> DeliveryOutcome
    /// Closes connections; called once the loop has stopped.
    func shutdown() async
    /// SIGHUP: reads what the sender reads from files (the TLS trust) again, on `pool`; the
    /// problem, if they cannot be used (the sender then keeps what it had).
    func reload(pool: BlockingPool) async -> String?
}

extension DeliverySender {
    package func reload(pool: BlockingPool) async -> String? { nil }
    package func prepare(_ body: [UInt8]) -> RequestBody { RequestBody(plain: body) }
}

/// A request body: the JSON array, its gzip when it goes compressed, and the request's
/// `Idempotency-Key`.
package struct RequestBody: Sendable, Equatable {
    package var plain: [UInt8]
    package var gzipped: [UInt8]?
    package var idempotencyKey: String?

    package init(plain: [UInt8], gzipped: [UInt8]? = nil, idempotencyKey: String? = nil) {
        self.plain = plain
        self.gzipped = gzipped
        self.idempotencyKey = idempotencyKey
    }

    /// The bytes on the wire.
    package var wire: [UInt8] { gzipped ?? plain }
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
package final class DeliveryLoop<C: Clock>: Service where C.Duration == Duration {
    /// How long the request in flight may take to finish on shutdown.
    package static var shutdownGrace: Duration { .seconds(5) }

    /// What the loop works with.
    package struct Parts: Sendable {
        package var settings: DaemonSettings
        package var writer: StoreWriter
        package var reader: StoreReader
        package var sender: any DeliverySender
        package var tokens: TokenSource
        package var wake: WakeSignal
        /// The host's clocks, and what earlier boots left of them: for `--max-event-age`, and
        /// the times events are sent with.
        package var clock: HostClock
        package var clockHistory: ClockHistory
        package var alertCommand: AlertCommand?
        package var notifier: SystemdNotifier
        package var metrics: DaemonMetrics
        package var pool: BlockingPool
        package var logger: Logger
        /// Seconds since local midnight at a wall-clock time, for `--send-window` (tests
        /// give their own time zone).
        package var localSecondOfDay: @Sendable (_ wallMillis: Int64) -> Int

        /// Creates a value with every property given (or its default).
        package init(
            settings: DaemonSettings, writer: StoreWriter, reader: StoreReader, sender: any DeliverySender, tokens: TokenSource,
            wake: WakeSignal, clock: HostClock, clockHistory: ClockHistory, alertCommand: AlertCommand? = nil, notifier: SystemdNotifier,
            metrics: DaemonMetrics, pool: BlockingPool, logger: Logger,
            localSecondOfDay: @escaping @Sendable (_ wallMillis: Int64) -> Int = { TrackQueueSystem.localSecondOfDay(wallMillis: $0) }
        ) {
            self.localSecondOfDay = localSecondOfDay
            self.settings = settings
            self.writer = writer
            self.reader = reader
            self.sender = sender
            self.tokens = tokens
            self.wake = wake
            self.clock = clock
            self.clockHistory = clockHistory
            self.alertCommand = alertCommand
            self.notifier = notifier
            self.metrics = metrics
            self.pool = pool
            self.logger = logger
        }
    }

    private let parts: Parts
    private let clock: C
    private let randomSource: @Sendable () -> any RandomNumberGenerator

    package init(_ parts: Parts, clock: C, randomSource: @escaping @Sendable () -> any RandomNumberGenerator) {
        self.parts = parts
        self.clock = clock
        self.randomSource = randomSource
    }

    package func run() async throws {
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

    /// What one run of the loop carries from step to step.
    private struct Run {
        package var scheduler: DeliveryScheduler<C.Instant>
        package var keeper: DeliveryRecordKeeper
        package var plan: DeliveryPlan
        /// The batch under way, if any.
        package var batch: OutgoingBatch?
        /// `--max-send-rate`'s bucket, if one is set.
        package var rate: SendRate<C.Instant>?
    }

    private enum Step {
        case goOn
        case stop
    }

    /// Runs until a `.shutdown` wake or cancellation: reads a batch when none is under way,
    /// otherwise sends its next range.
    private func deliver(random: inout some RandomNumberGenerator) async {
        let settings = parts.settings
        var run = Run(
            scheduler: DeliveryScheduler(backoff: Backoff(initial: settings.retryInitial, maximum: settings.retryMax)),
            keeper: DeliveryRecordKeeper(loaded: (try? await parts.writer.loadDeliveryRecord()) ?? DeliveryRecord()),
            plan: DeliveryPlan(timing: .init(linger: settings.batchLinger, readRetry: settings.retryInitial)),
            rate: settings.maxSendRate.map { SendRate(bytesPerSecond: $0, burst: settings.batchMaxBytes) })
        await save(run.keeper.record)
        _ = await readToken(&run.scheduler, &run.keeper)
        while !Task.isCancelled {
            if parts.wake.take([.shutdown]) != nil { break }
            if parts.wake.take([.reload]) != nil { await reload(&run.scheduler, &run.keeper) }
            let step = run.batch == nil ? await readBatch(&run) : await sendNext(&run, random: &random)
            if step == .stop { break }
        }
    }

    /// What `context.trackq` adds to each event: batches stay within --batch-max-bytes as sent.
    private var noteBytes: Int { EventRewriter.noteBytes(annotate: parts.settings.clockAnnotation, eventIDs: parts.settings.eventIDs) }

    /// Reads the next batch and does what the plan says with it: wait for events, hold it for
    /// the clock, or take it.
    private func readBatch(_ run: inout Run) async -> Step {
        let settings = parts.settings
        let read: OutgoingBatch
        do {
            read = try await parts.reader.readBatch(
                maxEvents: settings.batchMaxEvents, maxBytes: settings.batchMaxBytes, extraPerEvent: noteBytes)
        } catch {
            parts.logger.error("cannot read the queue; retrying", metadata: ["error": "\(error)"])
            return await wait(for: [.shutdown], during: run.plan.timing.readRetry) == .shutdown ? .stop : .goOn
        }
        let times = eventTimes()
        let (ready, holdUntil) = read.releasable(times)
        switch run.plan.read(count: read.count, ready: ready, holdUntilBoottime: holdUntil, nowBoottime: times.now.boottimeMillis) {
        case .waitForEvents(let recheck):
            if let (record, effects) = run.keeper.queueEmpty() {
                await save(record)
                await perform(effects)
            }
            // Our own commits wake us at once; the recheck catches events another process put in.
            switch await wait(for: [.newEvents, .reload, .shutdown], during: recheck) {
            case .shutdown: return .stop
            case .reload: await reload(&run.scheduler, &run.keeper)
            case .newEvents:  // give the batch a moment to fill
                return await wait(for: [.shutdown], during: run.plan.timing.linger) == .shutdown ? .stop : .goOn
            case .clock, nil: break
            }
        case .holdForClock(let wait, let announce):
            if announce {
                parts.logger.notice(
                    "holding events stamped while the clock is wrong until it is set, at most --clock-sync-wait",
                    metadata: ["clock.sync_wait": "\(DurationParser.format(settings.clockSyncWait))"])
            }
            switch await self.wait(for: [.clock, .reload, .shutdown], during: wait) {
            case .shutdown: return .stop
            case .reload: await reload(&run.scheduler, &run.keeper)
            case .clock, .newEvents, nil: break
            }
        case .send(let count):
            run.batch = count < read.count ? read.prefix(count) : read
            run.scheduler.begin(batchCount: count)
        }
        return .goOn
    }

    /// Sends the batch's next range when the scheduler allows, and performs what the answer
    /// means; once the batch is finished, the plan says what comes next.
    private func sendNext(_ run: inout Run, random: inout some RandomNumberGenerator) async -> Step {
        guard let current = run.batch else { return .goOn }
        if let notBefore = run.scheduler.sendNotBefore, notBefore > clock.now {
            return await pause(until: notBefore, &run)
        }
        // Finished; or a recovery replaced the queue file since this batch was read: its events
        // may not all be in the new one, so nothing is recorded of it; it is read again.
        guard let range = run.scheduler.nextRange(), current.generation == parts.writer.generation else {
            run.batch = nil
            return .goOn
        }
        // Expired events are dead-lettered instead of sent: checked before every send, since
        // they can also expire while a batch waits out an outage. Then re-read without them.
        switch await deadLetterExpired(current.events[range]) {
        case .none: break
        case .moved:
            run.batch = nil
            return .goOn
        case .failed(let error):
            await recordFailed(error, &run.scheduler, &run.keeper, batch: current, random: &random)
            run.batch = nil
            return .goOn
        }

        let settings = parts.settings
        if let window = settings.sendWindow {
            let wall = parts.clock.wallMillis()
            let closedFor = window.secondsUntilOpen(secondOfDay: parts.localSecondOfDay(wall))
            if closedFor > 0 { return await waitForWindow(opensInSeconds: closedFor, wallMillis: wall, &run) }
        }
        let token = await readToken(&run.scheduler, &run.keeper).token
        run.scheduler.tokenMissing = token == nil
        var body = parts.sender.prepare(
            current.sendBody(range, times: eventTimes(), annotate: settings.clockAnnotation, eventIDs: settings.eventIDs))
        // Over --max-send-rate: wait, then build the body again (its send times would be old).
        if let wait = run.rate?.wait(for: body.wire.count, now: clock.now) {
            return await pause(until: clock.now.advanced(by: wait), &run)
        }
        run.rate?.spend(body.wire.count, now: clock.now)
        if settings.eventIDs { body.idempotencyKey = IdempotencyKey.of(current.events[range]) }
        let prefetches = run.plan.prefetches(
            range: range, batchCount: current.count, consecutiveFailures: run.scheduler.consecutiveFailures)
        async let prefetched = (prefetches ? current.lastID : nil).asyncMap {
            [reader = parts.reader, noteBytes] after in
            try? await reader.readBatch(
                afterID: after, maxEvents: settings.batchMaxEvents, maxBytes: settings.batchMaxBytes, extraPerEvent: noteBytes)
        }
        let attemptAt = parts.clock.wallMillis()
        let started = clock.now
        let outcome = await parts.sender.send(body, token: token)
        if Task.isCancelled { return .stop }  // shut down mid-request: record nothing, the events stay queued
        guard current.generation == parts.writer.generation else {
            // Replaced while the request was out: the new file's copies are sent again (at
            // least once) rather than an answer recorded for events it may not hold.
            run.batch = nil
            return .goOn
        }
        count(outcome, took: started.duration(to: clock.now))
        await record(outcome, of: current, attemptAt: attemptAt, &run, random: &random)

        guard run.scheduler.nextRange() == nil else { return .goOn }
        run.batch = nil
        let next = await prefetched ?? nil
        let times = eventTimes()
        switch run.plan.finished(
            delivered: run.scheduler.lastAnswerDelivered, consecutiveFailures: run.scheduler.consecutiveFailures,
            prefetched: next.map { ($0.count, $0.isFull, $0.releasable(times).count) })
        {
        case .read: return .goOn
        case .sendPrefetched:
            // All of it delivered and recorded, and the events after it are already read.
            run.batch = next
            run.scheduler.begin(batchCount: next?.count ?? 0)
            return .goOn
        case .linger(let linger):
            return await wait(for: [.shutdown], during: linger) == .shutdown ? .stop : .goOn
        }
    }

    /// Outside `--send-window`: says so (status, systemd, log) and looks again when it opens,
    /// or in a minute at most (the local clock may change: NTP, a time zone, summer time).
    private func waitForWindow(opensInSeconds seconds: Int, wallMillis: Int64, _ run: inout Run) async -> Step {
        if let (record, effects) = run.keeper.waitingForWindow(opensAtMillis: wallMillis.saturatingAdd(Int64(seconds) * 1000)) {
            await save(record)
            await perform(effects)
        }
        return await pause(until: clock.now.advanced(by: .seconds(min(seconds, 60))), &run)
    }

    /// Waits until `deadline`, cut short by a shutdown (the loop stops) or a SIGHUP (the
    /// reload is done); then the loop goes on and looks again.
    private func pause(until deadline: C.Instant, _ run: inout Run) async -> Step {
        switch await wait(for: [.shutdown, .reload], until: deadline) {
        case .shutdown: return .stop
        case .reload: await reload(&run.scheduler, &run.keeper)
        case .newEvents, .clock, nil: break
        }
        return .goOn
    }

    /// The answer's metrics: the request's duration, its status, and any warnings of a 2xx.
    private func count(_ outcome: DeliveryOutcome, took duration: Duration) {
        parts.metrics.requestDuration.record(duration: duration)
        if case .response(let status, _, let body) = outcome {
            parts.metrics.response(status: status)
            if ResponseClassifier.classify(status: status) == .success { countWarnings(in: body) }
        } else {
            parts.metrics.response(status: nil)
        }
    }

    /// What the answer means, decided by the scheduler and the record keeper, written in one
    /// transaction with the events it concerns.
    private func record(
        _ outcome: DeliveryOutcome, of batch: OutgoingBatch, attemptAt: Int64, _ run: inout Run,
        random: inout some RandomNumberGenerator
    ) async {
        // Decided on copies: if the answer cannot be recorded, it never happened.
        let (schedulerBefore, keeperBefore) = (run.scheduler, run.keeper)
        let actions = run.scheduler.handle(outcome, now: clock.now, using: &random)
        let (commit, effects) = run.keeper.answered(
            outcome, actions: actions, scheduler: run.scheduler, batch: batch, attemptAtMillis: attemptAt,
            nowMillis: parts.clock.wallMillis(), now: clock.now)
        do {
            try await parts.writer.recordAnswer(
                delivered: commit.deliveredRuns, refused: commit.refused, record: commit.record,
                atMillis: parts.clock.wallMillis())
            await perform(effects)
        } catch {
            // The API may have them; they stay queued and will be sent again (at least
            // once), after a backoff that grows with every failure: never at once, in a loop.
            (run.scheduler, run.keeper) = (schedulerBefore, keeperBefore)
            await recordFailed(error, &run.scheduler, &run.keeper, batch: batch, random: &random)
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

    private func wait(for accepted: WakeReasons, during duration: Duration) async -> WakeReason? {
        await wait(for: accepted, until: clock.now.advanced(by: duration))
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
        await report(reading.problem.map { $0 + "; fix it, then send SIGHUP" }, kind: .auth, &scheduler, &keeper)
        return reading
    }

    /// A problem in a file read again (the token, the trust files): a sticky alert of `kind`
    /// while there is one, that kind's alert cleared once it is gone; recorded when either
    /// changes something.
    private func report(
        _ problem: String?, kind: AlertKind, _ scheduler: inout DeliveryScheduler<C.Instant>, _ keeper: inout DeliveryRecordKeeper
    ) async {
        let actions = problem.map { scheduler.raise(DeliveryAlert(kind: kind, status: 0, message: $0)) } ?? scheduler.clearRaised(kind)
        guard !actions.isEmpty else { return }
        let (record, effects) = keeper.alertsChanged(actions, nowMillis: parts.clock.wallMillis())
        await perform(effects)
        await save(record)
    }

    /// SIGHUP: read the token and the trust files again and retry at once. Trust files that
    /// cannot be used raise a `tls` alert and the ones read before stay in use.
    private func reload(_ scheduler: inout DeliveryScheduler<C.Instant>, _ keeper: inout DeliveryRecordKeeper) async {
        let changed = await readToken(&scheduler, &keeper).changed
        let problem = await parts.sender.reload(pool: parts.pool)
        await report(
            problem.map { "\($0); the files read before are still used: fix it, then send SIGHUP" }, kind: .tls, &scheduler, &keeper)
        let retrying = scheduler.retryNow()
        parts.logger.notice(
            "reloaded: token and trust files read again",
            metadata: ["token.changed": "\(changed)", "retrying.now": "\(retrying)", "tls.problem": "\(problem ?? "none")"])
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
