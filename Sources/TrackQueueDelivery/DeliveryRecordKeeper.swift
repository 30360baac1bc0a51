import Logging
import TrackQueueStatus
import TrackQueueStore
import TrackQueueSupport

/// Something the delivery loop does besides writing the database: a log line, a systemd
/// status, the alert command, a metric.
package enum DeliveryEffect: Sendable, Equatable {
    case log(Logger.Level, String, metadata: [String: String] = [:])
    /// systemd's one-line status (`sd_notify` `STATUS=`), e.g. `backoff: HTTP 503`.
    case status(String)
    /// Run `--alert-command` for a raised (true) or cleared (false) alert.
    case alertCommand(raised: Bool, DeliveryAlert)
    /// The current backoff, in seconds, for the metrics gauge.
    case backoffSeconds(Double)
}

/// What one answer of the API changes in the database, written in one transaction.
package struct DeliveryCommit: Sendable {
    /// Runs of events the API took, each one range of the batch.
    package var deliveredRuns: [ArraySlice<OutgoingBatch.Event>] = []
    package var delivered: [OutgoingBatch.Event] { Array(deliveredRuns.joined()) }
    package var refused: [RefusedEvent] = []
    /// The state record `trackq status` shows, as it stands after the answer.
    package var record: DeliveryRecord
}

/// Keeps the state record that `trackq status` shows, and decides what a person is told,
/// as the scheduler's actions come in: success, failure, recovery, alert raise and clear.
///
/// A plain value, like ``DeliveryScheduler``: times come in as arguments, and it returns
/// what to write and what to say; the delivery loop performs both. Text from the API (an
/// answer's body) is made one printable line before it reaches the record, and so status,
/// the log and systemd.
package struct DeliveryRecordKeeper: Sendable {
    package private(set) var record: DeliveryRecord

    /// A new daemon run starts clean: no failures, no wait, no alert (an alert that still
    /// applies is raised again by the first answer). Times of earlier attempts are kept.
    package init(loaded: DeliveryRecord) {
        record = loaded
        record.state = .idle
        record.consecutiveFailures = 0
        record.nextAttemptAtMillis = nil
        clearAlert()
    }

    /// The queue is empty: the state becomes `idle`; nil when it already was.
    package mutating func queueEmpty() -> (record: DeliveryRecord, effects: [DeliveryEffect])? {
        guard record.state != .idle else { return nil }
        record.state = .idle
        record.nextAttemptAtMillis = nil
        return (record, [.status("idle: queue empty")])
    }

    /// Outside the send window until `opensAtMillis`: the record to save when that is news
    /// (the window just closed, or it opens at another time).
    package mutating func waitingForWindow(opensAtMillis: Int64) -> (record: DeliveryRecord, effects: [DeliveryEffect])? {
        guard record.state != .window || record.nextAttemptAtMillis != opensAtMillis else { return nil }
        let news = record.state != .window
        record.state = .window
        record.nextAttemptAtMillis = opensAtMillis
        return (
            record,
            news
                ? [
                    .status(DeliveryState.window.words),
                    .log(.notice, "outside the send window: events are kept until it opens", metadata: [:]),
                ] : []
        )
    }

    /// Takes in one answer and the scheduler's actions for it.
    ///
    /// - Parameters:
    ///   - outcome: how the API answered.
    ///   - actions: what ``DeliveryScheduler/handle(_:now:using:)`` returned for it.
    ///   - scheduler: the scheduler after it handled the answer.
    ///   - batch: the batch the actions' indexes refer to.
    ///   - attemptAtMillis: wall clock when the request went out.
    ///   - nowMillis: wall clock now, for the record's times.
    ///   - now: the scheduler's clock now, to turn a wait into a wall-clock time.
    package mutating func answered<Instant: InstantProtocol>(
        _ outcome: DeliveryOutcome, actions: [DeliveryAction<Instant>], scheduler: DeliveryScheduler<Instant>,
        batch: OutgoingBatch, attemptAtMillis: Int64, nowMillis: Int64, now: Instant
    ) -> (commit: DeliveryCommit, effects: [DeliveryEffect]) where Instant.Duration == Duration {
        var commit = DeliveryCommit(record: record)
        var effects: [DeliveryEffect] = []
        record.lastAttemptAtMillis = attemptAtMillis
        switch outcome {
        case .response(let status, _, let body):
            record.lastStatus = status
            if ResponseClassifier.classify(status: status) == .success {
                record.lastError = nil
                record.lastSuccessAtMillis = nowMillis
            } else {
                record.lastError = Printable.oneLine("HTTP \(status)" + (body.isEmpty ? "" : ": " + body), limit: 200)
            }
        case .transportError(let message), .tlsFailure(let message):
            record.lastStatus = nil
            record.lastError = Printable.oneLine(message, limit: 200)
        }
        for action in actions {
            switch action {
            case .deliver(let range):
                commit.deliveredRuns.append(batch.events[range])
            case .deadLetter(let index, let status, let body):
                let event = batch.events[index]
                commit.refused.append(RefusedEvent(event: event, status: status, response: body))
                effects.append(
                    .log(
                        .warning, "the API refused an event; moved to the dead letters",
                        metadata: ["event.id": "\(event.id)", "http.status": "\(status)"]))
            case .raiseAlert(let alert):
                effects += raise(alert, nowMillis: nowMillis)
            case .clearAlert:
                effects += clear()
            case .waitUntil(let instant):
                let wait = now.duration(to: instant)
                record.nextAttemptAtMillis = nowMillis.saturatingAdd(wait.milliseconds)
                effects.append(.backoffSeconds(Double(wait.milliseconds) / 1000))
            }
        }
        let failuresBefore = record.consecutiveFailures
        record.consecutiveFailures = scheduler.consecutiveFailures
        if scheduler.notBefore == nil {
            record.nextAttemptAtMillis = nil
            effects.append(.backoffSeconds(0))
        }
        record.state = scheduler.state
        // While the API rate-limits (the scheduler paces), a 429 now and then is the pace
        // working, not news: said at info, not as a failure and a recovery each time.
        let pacing = scheduler.pace > .zero
        if record.consecutiveFailures == 1 && failuresBefore == 0 {
            effects.append(
                .log(
                    pacing ? .info : .warning, pacing ? "rate limited by the API; pacing" : "delivery failed; backing off",
                    metadata: ["error": record.lastError ?? ""]))
            effects.append(.status("backoff: \(record.lastError ?? "")"))
        } else if record.consecutiveFailures == 0 && failuresBefore > 0 {
            effects.append(.log(pacing ? .info : .notice, "delivery recovered", metadata: ["failures": "\(failuresBefore)"]))
            // An alert still active (one that stands until a file is fixed, shown again as
            // the answer's alert cleared) keeps systemd's STATUS= line.
            effects.append(.status(record.alertMessage.map { "alert: \($0)" } ?? "sending"))
        }
        commit.record = record
        return (commit, effects)
    }

    /// An alert raised or cleared without an answer (``DeliveryScheduler/raise(_:)``,
    /// ``DeliveryScheduler/clearRaised()``).
    package mutating func alertsChanged<Instant: InstantProtocol>(
        _ actions: [DeliveryAction<Instant>], nowMillis: Int64
    ) -> (record: DeliveryRecord, effects: [DeliveryEffect]) {
        var effects: [DeliveryEffect] = []
        for action in actions {
            switch action {
            case .raiseAlert(let alert): effects += raise(alert, nowMillis: nowMillis)
            case .clearAlert: effects += clear()
            case .deliver, .deadLetter, .waitUntil: break
            }
        }
        return (record, effects)
    }

    private mutating func raise(_ alert: DeliveryAlert, nowMillis: Int64) -> [DeliveryEffect] {
        record.alertKind = alert.kind
        record.alertStatus = alert.status
        record.alertSinceMillis = nowMillis
        record.alertMessage = alert.message
        return [
            .log(
                .critical, "alert raised: \(alert.message)",
                metadata: ["alert.kind": alert.kind.rawValue, "http.status": "\(alert.status)"]),
            .status("alert: \(alert.message)"),
            .alertCommand(raised: true, alert),
        ]
    }

    private mutating func clear() -> [DeliveryEffect] {
        let cleared = DeliveryAlert(
            kind: record.alertKind ?? .auth, status: record.alertStatus ?? 0,
            message: "delivery works again")
        clearAlert()
        return [
            .log(.notice, "alert cleared: the API accepts events again"),
            .status("sending"),
            .alertCommand(raised: false, cleared),
        ]
    }

    private mutating func clearAlert() {
        record.alertKind = nil
        record.alertStatus = nil
        record.alertSinceMillis = nil
        record.alertMessage = nil
    }
}

extension Duration {
    /// Whole milliseconds, rounded down, saturating at `Int64.min` and `Int64.max`: a
    /// duration that came from outside never traps.
    package var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return seconds < 0 ? .min : .max }
        let (total, overflow2) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000_000_000)
        if overflow2 { return seconds < 0 ? .min : .max }
        return total
    }
}
