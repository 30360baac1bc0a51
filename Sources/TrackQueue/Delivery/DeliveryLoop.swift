import Logging
import Metrics

/// Drains the queue to the API: reads a batch, asks the ``DeliveryScheduler`` what to send,
/// sends it, and carries out what the scheduler decides. All judgement lives in the
/// scheduler; this type only does the I/O.
///
/// Every decision is written to the database in one transaction with the events it
/// concerns: delivered events leave the queue in the transaction that records their 2xx,
/// and the state record `trackq status` reads is updated alongside.
final class DeliveryLoop: Sendable {
    /// How often an idle sender looks at the queue without being woken.
    static let idleRecheck = Duration.seconds(2)

    let settings: DaemonSettings
    let writer: GroupCommitWriter
    let sender: HTTPSender
    let tokens: TokenSource
    let wake: WakeSignal
    let bootRow: Int64
    let alertCommand: AlertCommand?
    let notifier: SystemdNotifier
    let metrics: DaemonMetrics
    let logger: Logger

    init(settings: DaemonSettings, writer: GroupCommitWriter, sender: HTTPSender, tokens: TokenSource, wake: WakeSignal,
         bootRow: Int64, alertCommand: AlertCommand?, notifier: SystemdNotifier, metrics: DaemonMetrics, logger: Logger) {
        self.metrics = metrics
        self.settings = settings
        self.writer = writer
        self.sender = sender
        self.tokens = tokens
        self.wake = wake
        self.bootRow = bootRow
        self.alertCommand = alertCommand
        self.notifier = notifier
        self.logger = logger
    }

    /// Runs until a `.shutdown` wake or cancellation.
    func run(random: inout some RandomNumberGenerator) async {
        let reader: QueueReader
        do {
            reader = try QueueReader(path: settings.paths.database)
        } catch {
            logger.critical("cannot open the queue for delivery", metadata: ["error": "\(error)"])
            return
        }
        var scheduler = DeliveryScheduler<ContinuousClock.Instant>(
            backoff: Backoff(initial: settings.retryInitial, maximum: settings.retryMax))
        var record = (try? await writer.perform { try $0.loadDeliveryRecord() }) ?? DeliveryRecord()
        // A new run starts clean; an alert that still applies is raised again at the first answer.
        record.state = DeliveryState.idle.rawValue
        record.consecutiveFailures = 0
        record.nextAttemptAtMillis = nil
        record.alertKind = nil
        record.alertStatus = nil
        record.alertSinceMillis = nil
        record.alertMessage = nil
        await save(record)
        _ = tokens.read()

        var batch: OutgoingBatch?
        while !Task.isCancelled {
            if wake.take([.shutdown]) != nil { break }
            if wake.take([.reload]) != nil { reloadToken(&scheduler) }

            // 1. A batch to work on.
            if batch == nil {
                let read: OutgoingBatch
                do {
                    read = try reader.readBatch(maxEvents: settings.batchMaxEvents, maxBytes: settings.batchMaxBytes)
                } catch {
                    logger.error("cannot read the queue; retrying", metadata: ["error": "\(error)"])
                    if await wake.wait(for: [.shutdown], until: .now + settings.retryInitial) == .shutdown { break }
                    continue
                }
                if read.isEmpty {
                    if record.state != DeliveryState.idle.rawValue {
                        record.state = DeliveryState.idle.rawValue
                        record.nextAttemptAtMillis = nil
                        await save(record)
                        notifier.notify("STATUS=idle: queue empty")
                    }
                    // Our own commits wake us at once; the timeout catches events another
                    // process put in the queue (`trackq dead requeue`).
                    let reason = await wake.wait(for: [.newEvents, .reload, .shutdown], until: .now + Self.idleRecheck)
                    if reason == .shutdown { break }
                    if reason == nil { continue }
                    if reason == .reload { reloadToken(&scheduler); continue }
                    // New events: give the batch a moment to fill.
                    if await wake.wait(for: [.shutdown], until: .now + settings.batchLinger) == .shutdown { break }
                    continue
                }
                batch = read
                scheduler.begin(batchCount: read.count)
            }
            guard let current = batch else { continue }

            // 2. Not before the scheduler says so (backoff, alert pause).
            if let notBefore = scheduler.notBefore, notBefore > .now {
                let reason = await wake.wait(for: [.shutdown, .reload], until: notBefore)
                if reason == .shutdown { break }
                if reason == .reload { reloadToken(&scheduler) }
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
            let (token, _) = tokens.read()
            let body = range == 0..<current.count ? current.body : Self.body(of: current, range)
            let attemptAt = SystemClock.wallMillis()
            let started = ContinuousClock.now
            let outcome = await sender.send(body, token: token)
            if Task.isCancelled { break }  // shut down mid-request: record nothing, the events stay queued
            metrics.requestDuration.record(duration: started.duration(to: .now))
            if case .response(let status, _, _) = outcome { metrics.response(status: status) } else { metrics.response(status: nil) }
            let actions = scheduler.handle(outcome, now: .now, using: &random)
            await apply(actions, outcome: outcome, batch: current, sentRange: range, attemptAt: attemptAt,
                        scheduler: scheduler, record: &record)
            if scheduler.nextRange() == nil { batch = nil }
        }
    }

    /// Carries out one answer's actions in one transaction.
    private func apply(
        _ actions: [DeliveryAction<ContinuousClock.Instant>], outcome: DeliveryOutcome, batch: OutgoingBatch,
        sentRange: Range<Int>, attemptAt: Int64, scheduler: DeliveryScheduler<ContinuousClock.Instant>,
        record: inout DeliveryRecord
    ) async {
        let now = SystemClock.wallMillis()
        var delivered: [OutgoingBatch.Event] = []
        var dead: [(OutgoingBatch.Event, Int, String)] = []
        record.lastAttemptAtMillis = attemptAt
        switch outcome {
        case .response(let status, _, let body):
            record.lastStatus = status
            if (200..<300).contains(status) {
                record.lastError = nil
                record.lastSuccessAtMillis = now
                logWarnings(in: body)
            } else {
                record.lastError = "HTTP \(status)" + (body.isEmpty ? "" : ": " + String(body.prefix(200)))
            }
        case .transportError(let message):
            record.lastStatus = nil
            record.lastError = message
        }
        for action in actions {
            switch action {
            case .deliver(let range):
                delivered += batch.events[range]
            case .deadLetter(let index, let status, let body):
                dead.append((batch.events[index], status, body))
                logger.warning("the API refused an event; moved to the dead letters",
                               metadata: ["event.id": "\(batch.events[index].id)", "http.status": "\(status)"])
            case .raiseAlert(let alert):
                record.alertKind = alert.kind.rawValue
                record.alertStatus = alert.status
                record.alertSinceMillis = now
                record.alertMessage = alert.message
                logger.critical("alert raised: \(alert.message)", metadata: ["alert.kind": "\(alert.kind.rawValue)", "http.status": "\(alert.status)"])
                notifier.notify("STATUS=alert: \(alert.message)")
                alertCommand?.run(raised: true, alert: alert)
            case .clearAlert:
                let cleared = DeliveryAlert(
                    kind: AlertKind(rawValue: record.alertKind ?? "") ?? .auth, status: record.alertStatus ?? 0,
                    message: "delivery works again")
                record.alertKind = nil
                record.alertStatus = nil
                record.alertSinceMillis = nil
                record.alertMessage = nil
                logger.notice("alert cleared: the API accepts events again")
                notifier.notify("STATUS=sending")
                alertCommand?.run(raised: false, alert: cleared)
            case .waitUntil(let instant):
                let wait = ContinuousClock.now.duration(to: instant)
                record.nextAttemptAtMillis = now + wait.milliseconds
                metrics.backoff.record(Double(wait.milliseconds) / 1000)
            }
        }
        let failuresBefore = record.consecutiveFailures
        record.consecutiveFailures = scheduler.consecutiveFailures
        if scheduler.notBefore == nil {
            record.nextAttemptAtMillis = nil
            metrics.backoff.record(0)
        }
        record.state = scheduler.state.rawValue
        if record.consecutiveFailures == 1 && failuresBefore == 0 {
            logger.warning("delivery failed; backing off", metadata: ["error": "\(record.lastError ?? "")"])
            notifier.notify("STATUS=backoff: \(record.lastError ?? "")")
        } else if record.consecutiveFailures == 0 && failuresBefore > 0 {
            logger.notice("delivery recovered", metadata: ["failures": "\(failuresBefore)"])
            notifier.notify("STATUS=sending")
        }
        let finalRecord = record
        let deadLetters = dead
        let deliveredEvents = delivered
        do {
            try await writer.perform { store in
                try store.transaction { delta in
                    try store.removeDelivered(deliveredEvents, delta: &delta)
                    for (event, status, body) in deadLetters {
                        try store.moveToDeadLetters(event, reason: .rejected, status: status, response: body,
                                                    failedAtMillis: now, delta: &delta)
                    }
                    try store.saveDeliveryRecord(finalRecord)
                }
            }
        } catch {
            // The API has them; they stay queued and will be sent again (at least once).
            logger.error("cannot record a delivery; its events will be sent again", metadata: ["error": "\(error)"])
        }
    }

    /// Moves the expired ones of `events` to the dead letters; true if there were any.
    private func deadLetterExpired(_ events: ArraySlice<OutgoingBatch.Event>) async -> Bool {
        let age = EventAge(maxAge: settings.maxEventAge, nowWallMillis: SystemClock.wallMillis(),
                           nowBoottimeMillis: SystemClock.boottimeMillis(), currentBoot: bootRow)
        let expired = events.filter(age.isExpired)
        guard !expired.isEmpty else { return false }
        let now = SystemClock.wallMillis()
        do {
            try await writer.perform { store in
                try store.transaction { delta in
                    for event in expired {
                        try store.moveToDeadLetters(event, reason: .expired, status: nil, response: nil,
                                                    failedAtMillis: now, delta: &delta)
                    }
                }
            }
            logger.warning("events older than max-event-age moved to the dead letters", metadata: ["count": "\(expired.count)"])
        } catch {
            logger.error("cannot move expired events", metadata: ["error": "\(error)"])
        }
        return true
    }

    private func reloadToken(_ scheduler: inout DeliveryScheduler<ContinuousClock.Instant>) {
        let (_, changed) = tokens.read()
        logger.notice("token read again", metadata: ["token.changed": "\(changed)"])
        if changed && scheduler.tokenChanged() {
            logger.notice("token changed: retrying now")
        }
    }

    /// Counts the `warnings` a 2xx answer carries, and logs them at debug.
    private func logWarnings(in body: String) {
        guard body.contains("\"warnings\"") else { return }
        let count = APIAnswer.warningCount(body)
        guard count > 0 else { return }
        metrics.apiWarnings.increment(by: count)
        logger.debug("the API answered with warnings", metadata: ["warnings": "\(count)", "http.body": "\(body.prefix(500))"])
    }

    private func save(_ record: DeliveryRecord) async {
        _ = try? await writer.perform { try $0.saveDeliveryRecord(record) }
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

extension Duration {
    /// Whole milliseconds, rounded down.
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
