import Logging

/// Something the delivery loop does besides writing the database: a log line, a systemd
/// status, the alert command, a metric.
enum DeliveryEffect: Sendable, Equatable {
    case log(Logger.Level, String, metadata: [String: String] = [:])
    /// An `sd_notify` message, e.g. `STATUS=backoff: HTTP 503`.
    case notify(String)
    /// Run `--alert-command` for a raised (true) or cleared (false) alert.
    case alertCommand(raised: Bool, DeliveryAlert)
    /// The current backoff, in seconds, for the metrics gauge.
    case backoffSeconds(Double)
}

/// What one answer of the API changes in the database, written in one transaction.
struct DeliveryCommit: Sendable {
    var delivered: [OutgoingBatch.Event] = []
    var refused: [RefusedEvent] = []
    /// The state record `trackq status` shows, as it stands after the answer.
    var record: DeliveryRecord
}

/// Keeps the state record that `trackq status` shows, and decides what a person is told,
/// as the scheduler's actions come in: success, failure, recovery, alert raise and clear.
///
/// A plain value, like ``DeliveryScheduler``: times come in as arguments, and it returns
/// what to write and what to say; the delivery loop performs both.
struct DeliveryRecordKeeper: Sendable {
    private(set) var record: DeliveryRecord

    /// A new daemon run starts clean: no failures, no wait, no alert (an alert that still
    /// applies is raised again by the first answer). Times of earlier attempts are kept.
    init(loaded: DeliveryRecord) {
        record = loaded
        record.state = DeliveryState.idle.rawValue
        record.consecutiveFailures = 0
        record.nextAttemptAtMillis = nil
        clearAlert()
    }

    /// The queue is empty: the state becomes `idle`; nil when it already was.
    mutating func queueEmpty() -> (record: DeliveryRecord, effects: [DeliveryEffect])? {
        guard record.state != DeliveryState.idle.rawValue else { return nil }
        record.state = DeliveryState.idle.rawValue
        record.nextAttemptAtMillis = nil
        return (record, [.notify("STATUS=idle: queue empty")])
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
    mutating func answered<Instant: InstantProtocol>(
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
                record.lastError = "HTTP \(status)" + (body.isEmpty ? "" : ": " + String(body.prefix(200)))
            }
        case .transportError(let message):
            record.lastStatus = nil
            record.lastError = message
        }
        for action in actions {
            switch action {
            case .deliver(let range):
                commit.delivered += batch.events[range]
            case .deadLetter(let index, let status, let body):
                let event = batch.events[index]
                commit.refused.append(RefusedEvent(event: event, status: status, response: body))
                effects.append(
                    .log(
                        .warning, "the API refused an event; moved to the dead letters",
                        metadata: ["event.id": "\(event.id)", "http.status": "\(status)"]))
            case .raiseAlert(let alert):
                record.alertKind = alert.kind.rawValue
                record.alertStatus = alert.status
                record.alertSinceMillis = nowMillis
                record.alertMessage = alert.message
                effects.append(
                    .log(
                        .critical, "alert raised: \(alert.message)",
                        metadata: ["alert.kind": alert.kind.rawValue, "http.status": "\(alert.status)"]))
                effects.append(.notify("STATUS=alert: \(alert.message)"))
                effects.append(.alertCommand(raised: true, alert))
            case .clearAlert:
                let cleared = DeliveryAlert(
                    kind: AlertKind(rawValue: record.alertKind ?? "") ?? .auth, status: record.alertStatus ?? 0,
                    message: "delivery works again")
                clearAlert()
                effects.append(.log(.notice, "alert cleared: the API accepts events again"))
                effects.append(.notify("STATUS=sending"))
                effects.append(.alertCommand(raised: false, cleared))
            case .waitUntil(let instant):
                let wait = now.duration(to: instant)
                record.nextAttemptAtMillis = nowMillis + wait.milliseconds
                effects.append(.backoffSeconds(Double(wait.milliseconds) / 1000))
            }
        }
        let failuresBefore = record.consecutiveFailures
        record.consecutiveFailures = scheduler.consecutiveFailures
        if scheduler.notBefore == nil {
            record.nextAttemptAtMillis = nil
            effects.append(.backoffSeconds(0))
        }
        record.state = scheduler.state.rawValue
        if record.consecutiveFailures == 1 && failuresBefore == 0 {
            effects.append(.log(.warning, "delivery failed; backing off", metadata: ["error": record.lastError ?? ""]))
            effects.append(.notify("STATUS=backoff: \(record.lastError ?? "")"))
        } else if record.consecutiveFailures == 0 && failuresBefore > 0 {
            effects.append(.log(.notice, "delivery recovered", metadata: ["failures": "\(failuresBefore)"]))
            effects.append(.notify("STATUS=sending"))
        }
        commit.record = record
        return (commit, effects)
    }

    private mutating func clearAlert() {
        record.alertKind = nil
        record.alertStatus = nil
        record.alertSinceMillis = nil
        record.alertMessage = nil
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
