import TrackQueueStatus

/// An alert for a person: delivery is stuck until someone fixes the configuration.
public struct DeliveryAlert: Sendable, Equatable {
    /// What is wrong.
    public var kind: AlertKind
    /// The HTTP status that raised it.
    public var status: Int
    /// What to do about it, e.g. `the API answered 404: check --endpoint`.
    public var message: String

    /// Creates an alert.
    public init(kind: AlertKind, status: Int, message: String) {
        self.kind = kind
        self.status = status
        self.message = message
    }

    /// The alert for a status of the given kind, with the standard message.
    ///
    /// - Parameter tokenMissing: whether the request went without a token because none was
    ///   configured: then that is the reason the auth alert gives.
    public static func forStatus(_ status: Int, kind: AlertKind, tokenMissing: Bool = false) -> DeliveryAlert {
        let message =
            switch kind {
            case .auth where tokenMissing:
                "the API answered \(status) and trackq has no token: write it to /etc/trackq/token (the system "
                    + "service) or set TRACKQ_TOKEN or --token-file, then restart trackq"
            case .auth:
                "the API answered \(status): check the token (TRACKQ_TOKEN or --token-file), then send SIGHUP"
            case .endpoint, .storage, .tls:
                "the API answered \(status): check --endpoint"
            }
        return DeliveryAlert(kind: kind, status: status, message: message)
    }
}

/// One thing the delivery loop must do, in the order returned.
public enum DeliveryAction<Instant: InstantProtocol>: Sendable, Equatable where Instant.Duration == Duration {
    /// Delete these batch indexes from the queue as delivered.
    case deliver(Range<Int>)
    /// Move the event at this batch index to the dead letters, with the API's answer.
    case deadLetter(index: Int, status: Int, body: String)
    /// Raise this alert (log, status record, systemd, alert command).
    case raiseAlert(DeliveryAlert)
    /// Clear the active alert.
    case clearAlert
    /// Do not send before this instant.
    case waitUntil(Instant)
}

/// Decides what to send, when, and what each answer means; the delivery loop only performs
/// the returned ``DeliveryAction`` values (README, "Delivery").
///
/// A plain value with no clock and no global randomness: time comes from `now:`, jitter
/// from the generator passed in.
///
/// ```swift
/// var scheduler = DeliveryScheduler<ContinuousClock.Instant>(
///     backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
/// scheduler.begin(batchCount: batch.count)
/// while let range = scheduler.nextRange() {
///     let outcome = await send(batch[range])
///     for action in scheduler.handle(outcome, now: clock.now, using: &rng) {
///         perform(action)   // .waitUntil(t): sleep until t before the next send
///     }
/// }
/// ```
///
/// ## Splitting
/// A rejected range (400, 413, 422) of more than one event is split: its first half
/// (⌈count/2⌉ events) is sent next and its second half is kept, marked *bad if sibling OK*.
/// When the first half is delivered, the second half must hold a bad event, so it is split
/// again without being sent; a marked single event is still sent alone, so the dead letter
/// carries the API's own answer. When the first half is rejected, the mark is dropped.
///
/// ## An API that refuses everything
/// A schema change or a gateway rule can make the API answer 400 to every event; splitting
/// would then move the whole queue to the dead letters. So once ``systemicThreshold`` events
/// in a row were refused alone with no 2xx since, the next one refused alone is kept and a
/// *probe* is sent: the last event of the batch, alone. If the API takes it, the events
/// were at fault and splitting goes on. If it refuses that one too, it is the API: an
/// `endpoint` alert is raised, nothing more is dead-lettered, and the batch is tried again
/// after the retry maximum. The next 2xx clears the alert.
public struct DeliveryScheduler<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// A range of the current batch still to be sent.
    package struct Pending: Sendable, Equatable {
        package var range: Range<Int>
        /// Its sibling (sent first) was delivered, so this range holds a refused event.
        package var badIfSiblingOK: Bool
        /// The probe of a suspected API-wide refusal.
        package var isProbe = false
    }

    /// How many events refused alone in a row, with no 2xx since, make the API a suspect.
    public static var systemicThreshold: Int { 8 }

    /// The alerts ``raise(_:)`` raised and ``clearRaised(_:)`` has not cleared, one a kind,
    /// the latest last: a 2xx does not clear them, and when an answer's alert that hid one
    /// clears, the latest is the active alert again.
    private var standing: [DeliveryAlert] = []

    /// Events refused alone since the last 2xx.
    public private(set) var refusedAloneSince2xx = 0

    /// The backoff policy; its maximum is also the retry interval while an alert is active.
    public var backoff: Backoff
    /// Failed tries since the last 2xx (retryable, credentials and endpoint answers;
    /// rejections do not count).
    public private(set) var consecutiveFailures: Int = 0
    /// The active alert, if any.
    public private(set) var alert: DeliveryAlert?

    /// Whether the next request goes without a token because none is configured (set before
    /// each send): a 401/403 then says so.
    public var tokenMissing = false
    /// The pending wait, if any: nothing is to be sent before it.
    public private(set) var notBefore: Instant?

    /// While the API rate-limits (429): the time a host leaves between its requests. Each
    /// 429 doubles it (to at least its `Retry-After`, at most the retry maximum); each 2xx
    /// takes an eighth off, and below ``minimumPace`` it is gone. So a fleet that the API
    /// turns away slows down together, and speeds up again as the API takes it: about one
    /// request in six is turned away, instead of most.
    public private(set) var pace: Duration = .zero
    /// After a 2xx while pacing: the next request waits until then. Not a backoff: status
    /// shows the sender as sending.
    public private(set) var pacedUntil: Instant?
    /// When the next request may go: after the wait and the pace, whichever is later.
    public var sendNotBefore: Instant? {
        switch (notBefore, pacedUntil) {
        case (let wait?, let paced?): return Swift.max(wait, paced)
        case (let wait?, nil): return wait
        case (nil, let paced): return paced
        }
    }
    /// A pace below this is no pace.
    public static var minimumPace: Duration { .milliseconds(50) }
    /// The pace grows to at most this many times the larger of `Retry-After` and
    /// `--retry-initial` (and never past `--retry-max`): a host turned away often still asks
    /// again within about half a minute, so the fleet's last hosts do not sit idle while the
    /// API has room. (The fleet simulation in BENCHMARKS.md chose 32 over 8, 64 and 128.)
    public static var paceCeilingFactor: Int { 32 }

    /// What the last answer meant: its events were delivered (a 2xx). The loop asks this, not
    /// the status again, so an answer is classified once.
    public private(set) var lastAnswerDelivered = false

    /// Ranges of the current batch still to send; the last is sent next.
    package private(set) var pending: [Pending] = []

    /// Creates a scheduler with no batch, no failures and no alert.
    public init(backoff: Backoff) {
        self.backoff = backoff
    }

    /// What the sender is doing: `alert` when waiting with an alert active, `backoff` when
    /// waiting otherwise, `sending` while a batch is in progress, else `idle`.
    public var state: DeliveryState {
        if notBefore != nil { return alert != nil ? .alert : .backoff }
        // Paced: the next batch goes at `pacedUntil`.
        return pending.isEmpty && pacedUntil == nil ? .idle : .sending
    }

    /// Starts work on a freshly read batch of `batchCount` events, dropping any unfinished one.
    ///
    /// Keeps failures, alert and wait. A count below 1 gives an empty batch.
    public mutating func begin(batchCount: Int) {
        pending = batchCount > 0 ? [Pending(range: 0..<batchCount, badIfSiblingOK: false)] : []
    }

    /// The range of batch indexes to send next, or nil when the current batch is finished.
    ///
    /// Honour a ``DeliveryAction/waitUntil(_:)`` before sending it.
    public func nextRange() -> Range<Int>? {
        pending.last?.range
    }

    /// Feeds the outcome of sending ``nextRange()`` and returns the actions, in order.
    ///
    /// For example `[.deliver(0..<500), .clearAlert]` or `[.raiseAlert(a), .waitUntil(t)]`.
    /// Any pending wait is over once this is called. Without a batch in progress it
    /// returns no actions.
    ///
    /// - Parameters:
    ///   - outcome: How the API answered.
    ///   - now: The current instant; waits are measured from it.
    ///   - rng: The source of jitter.
    public mutating func handle(
        _ outcome: DeliveryOutcome,
        now: Instant,
        using rng: inout some RandomNumberGenerator
    ) -> [DeliveryAction<Instant>] {
        guard let sent = pending.last else { return [] }
        notBefore = nil
        pacedUntil = nil
        lastAnswerDelivered = false
        switch outcome {
        case .transportError:
            return retryLater(retryAfter: nil, now: now, using: &rng)
        case .tlsFailure(let message):
            return alertAndWait(DeliveryAlert(kind: .tls, status: 0, message: message), now: now)
        case .response(let status, let retryAfter, let body):
            switch ResponseClassifier.classify(status: status) {
            case .success:
                lastAnswerDelivered = true
                slowPace(now: now, using: &rng)
                return delivered(sent.range)
            case .rejected where sent.isProbe:
                return refusesEverything(status: status, now: now)
            case .rejected:
                // The API answered for itself: room again, as for a 2xx; the halves keep the pace.
                slowPace(now: now, using: &rng)
                return rejected(sent.range, status: status, body: body)
            case .credentials:
                return alertAndWait(.forStatus(status, kind: .auth, tokenMissing: tokenMissing), now: now)
            case .endpoint:
                return alertAndWait(.forStatus(status, kind: .endpoint), now: now)
            case .retryable where status == 429:
                return rateLimited(retryAfter: retryAfter, now: now, using: &rng)
            case .retryable:
                return retryLater(retryAfter: retryAfter, now: now, using: &rng)
            }
        }
    }

    /// The answer could not be recorded (the database refused the write): none of it counts.
    /// Call it on the scheduler as it was before ``handle(_:now:using:)`` took that answer:
    /// it backs off as for a 5xx, one failure more than before, and drops the batch so it is
    /// read again, whole, after the wait.
    public mutating func recordFailed(now: Instant, using rng: inout some RandomNumberGenerator) -> [DeliveryAction<Instant>] {
        pending = []
        notBefore = nil
        lastAnswerDelivered = false
        return retryLater(retryAfter: nil, now: now, using: &rng)
    }

    /// Raises `raised` without an answer from the API (a token refused when read, a trust
    /// file that cannot be read again). Unlike an
    /// alert an answer raised, a 2xx does not clear it: ``clearRaised()`` does, once the
    /// cause is gone.
    /// - Returns: `[.raiseAlert(raised)]`, or nothing when that alert is already active.
    public mutating func raise(_ raised: DeliveryAlert) -> [DeliveryAction<Instant>] {
        standing.removeAll { $0.kind == raised.kind }
        standing.append(raised)
        guard alert != raised else { return [] }
        alert = raised
        return [.raiseAlert(raised)]
    }

    /// Clears the alerts raised by ``raise(_:)`` (of `kind`, when given: a token read well
    /// does not clear a trust file's alert). When the active alert was one of them, another
    /// still standing becomes the active alert, or none is.
    public mutating func clearRaised(_ kind: AlertKind? = nil) -> [DeliveryAction<Instant>] {
        let wasActive = alert.map { active in standing.contains(active) && (kind == nil || active.kind == kind) } ?? false
        standing.removeAll { kind == nil || $0.kind == kind }
        guard wasActive else { return [] }
        return showStandingOrClear()
    }

    /// The latest standing alert as the active one, or no alert.
    private mutating func showStandingOrClear() -> [DeliveryAction<Instant>] {
        alert = standing.last
        return [alert.map { .raiseAlert($0) } ?? .clearAlert]
    }

    /// SIGHUP: drops any pending wait (backoff, or an alert's) so the next try is now.
    ///
    /// Failures and the alert are kept: the alert stays until a 2xx clears it.
    /// - Returns: Whether a wait was dropped.
    public mutating func retryNow() -> Bool {
        let waited = notBefore != nil || pacedUntil != nil
        notBefore = nil
        pacedUntil = nil
        return waited
    }

    // MARK: - Answers

    private mutating func delivered(_ range: Range<Int>) -> [DeliveryAction<Instant>] {
        pending.removeLast()
        var actions: [DeliveryAction<Instant>] = [.deliver(range)]
        consecutiveFailures = 0
        refusedAloneSince2xx = 0
        if let active = alert, !standing.contains(active) {
            actions += showStandingOrClear()
        }
        // The first half went through, so a marked second half holds a bad event:
        // split it without sending it, down to a single event (sent alone for its answer).
        while let top = pending.last, top.badIfSiblingOK, top.range.count > 1 {
            pending.removeLast()
            pushHalves(of: top.range)
        }
        return actions
    }

    private mutating func rejected(_ range: Range<Int>, status: Int, body: String) -> [DeliveryAction<Instant>] {
        pending.removeLast()
        // If this was the first half of a split, its sibling is no longer known to be bad.
        if !pending.isEmpty, pending[pending.count - 1].badIfSiblingOK {
            pending[pending.count - 1].badIfSiblingOK = false
        }
        guard range.count > 1 else {
            guard refusedAloneSince2xx >= Self.systemicThreshold, let probe = probeIndex(besides: range.lowerBound) else {
                refusedAloneSince2xx = Self.incremented(refusedAloneSince2xx)
                return [.deadLetter(index: range.lowerBound, status: status, body: body)]
            }
            // Keep this one, and ask the last event of the batch first.
            pending.append(Pending(range: range, badIfSiblingOK: false))
            pending.append(Pending(range: probe..<(probe + 1), badIfSiblingOK: false, isProbe: true))
            return []
        }
        pushHalves(of: range)
        return []
    }

    /// The last index of the batch still pending, taken out of its range; nil when `refused`
    /// is all that is left.
    private mutating func probeIndex(besides refused: Int) -> Int? {
        guard let bottom = pending.first, bottom.range.upperBound - 1 != refused else { return nil }
        let index = bottom.range.upperBound - 1
        if bottom.range.count == 1 {
            pending.removeFirst()
        } else {
            pending[0].range = bottom.range.lowerBound..<index
        }
        return index
    }

    /// The probe was refused too: the API refuses every event. Alert, keep everything, and
    /// read the batch again after the retry maximum.
    private mutating func refusesEverything(status: Int, now: Instant) -> [DeliveryAction<Instant>] {
        pending = []
        return alertAndWait(
            DeliveryAlert(
                kind: .endpoint, status: status,
                message: "the API refuses every event (HTTP \(status), even one alone): check the API and --endpoint; "
                    + "events stay queued"),
            now: now)
    }

    private mutating func alertAndWait(_ raised: DeliveryAlert, now: Instant) -> [DeliveryAction<Instant>] {
        consecutiveFailures = Self.incremented(consecutiveFailures)
        var actions: [DeliveryAction<Instant>] = []
        // A new message is news too (a TLS failure that changed: the status is 0 for all).
        if alert != raised {
            alert = raised
            actions.append(.raiseAlert(raised))
        }
        let until = now.advanced(by: Swift.max(backoff.maximum, .zero))
        notBefore = until
        actions.append(.waitUntil(until))
        return actions
    }

    private mutating func retryLater(
        retryAfter: Duration?,
        now: Instant,
        using rng: inout some RandomNumberGenerator
    ) -> [DeliveryAction<Instant>] {
        consecutiveFailures = Self.incremented(consecutiveFailures)
        let delay = backoff.delay(failures: consecutiveFailures, retryAfter: retryAfter, using: &rng)
        let until = now.advanced(by: delay)
        notBefore = until
        return [.waitUntil(until)]
    }

    /// A 429: the pace doubles, and the same range is retried after about one pace (a
    /// uniform draw in [pace/2, 3·pace/2], so a fleet turned away at once does not come back
    /// at once), never before the answer's `Retry-After`.
    private mutating func rateLimited(
        retryAfter: Duration?, now: Instant, using rng: inout some RandomNumberGenerator
    ) -> [DeliveryAction<Instant>] {
        consecutiveFailures = Self.incremented(consecutiveFailures)
        let base = Swift.max(retryAfter ?? .zero, backoff.initial, Self.minimumPace)
        let ceiling = Swift.min(Swift.max(backoff.maximum, .zero), base * Self.paceCeilingFactor)
        let doubled = pace > ceiling / 2 ? ceiling : pace * 2
        pace = Swift.min(Swift.max(doubled, base), ceiling)
        let wait = Swift.max(Self.uniform(pace / 2, pace * 3 / 2, using: &rng), retryAfter ?? .zero)
        let until = now.advanced(by: wait)
        notBefore = until
        return [.waitUntil(until)]
    }

    /// A 2xx while pacing: an eighth off the pace, and the next request about one pace later.
    private mutating func slowPace(now: Instant, using rng: inout some RandomNumberGenerator) {
        guard pace > .zero else { return }
        pace = pace - pace / 8
        guard pace >= Self.minimumPace else {
            pace = .zero
            return
        }
        pacedUntil = now.advanced(by: Self.uniform(pace / 2, pace * 3 / 2, using: &rng))
    }

    /// Uniform in `[low, high]` at nanosecond resolution (one draw).
    package static func uniform(_ low: Duration, _ high: Duration, using rng: inout some RandomNumberGenerator) -> Duration {
        let from = Backoff.wholeNanoseconds(low)
        let to = Swift.max(from, Backoff.wholeNanoseconds(high))
        return .nanoseconds(UInt64.random(in: from...to, using: &rng))
    }

    // MARK: - Helpers

    /// Replaces a range by its halves: the first ⌈count/2⌉ events on top (sent next), the rest
    /// below, marked bad-if-sibling-OK.
    private mutating func pushHalves(of range: Range<Int>) {
        let middle = range.lowerBound + (range.count + 1) / 2
        pending.append(Pending(range: middle..<range.upperBound, badIfSiblingOK: true))
        pending.append(Pending(range: range.lowerBound..<middle, badIfSiblingOK: false))
    }

    private static func incremented(_ count: Int) -> Int {
        count == .max ? count : count + 1
    }
}
