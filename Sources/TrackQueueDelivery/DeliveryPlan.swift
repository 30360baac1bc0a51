/// What the delivery loop does between the scheduler's answers, as a value: whether a batch
/// just read is sent, held for the clock, or waited for; whether the next batch is read while
/// one is out, and whether it goes at once. ``DeliveryScheduler`` decides what to send and
/// what an answer means; this decides the rest; ``DeliveryLoop`` asks both, then performs.
///
/// No clock and no I/O: times come in as arguments (`CLOCK_BOOTTIME` milliseconds for the
/// clock hold, as event stamps are kept), durations go out.
package struct DeliveryPlan: Sendable, Equatable {
    package struct Timing: Sendable, Equatable {
        /// `--batch-linger`: how long a batch may wait to fill after new events, or after a
        /// trickle came in while a request was out.
        package var linger: Duration
        /// How often an idle sender looks at the queue without being woken (another process
        /// may have queued events: `trackq dead requeue`).
        package var idleRecheck: Duration = .seconds(2)
        /// After a failed read of the queue.
        package var readRetry: Duration
        /// The longest one wait for the clock, before the batch is read again.
        package var maxClockHold: Duration = .seconds(60)

        /// Creates a value with every property given (or its default).
        package init(linger: Duration, idleRecheck: Duration = .seconds(2), readRetry: Duration, maxClockHold: Duration = .seconds(60)) {
            self.linger = linger
            self.idleRecheck = idleRecheck
            self.readRetry = readRetry
            self.maxClockHold = maxClockHold
        }
    }

    /// What to do with a batch just read.
    package enum AfterRead: Equatable, Sendable {
        /// The queue is empty: wait for new events (or a reload) at most this long.
        case waitForEvents(Duration)
        /// Every event read was stamped while the clock was wrong and waits for it to be set
        /// (`--clock-sync-wait`): wait for the clock at most this long, then read again.
        /// `announce` is true the first time, so the hold is logged once, not each minute.
        case holdForClock(Duration, announce: Bool)
        /// Send the batch's first `count` events (the rest wait for the clock).
        case send(count: Int)
    }

    /// What to do once the batch under way is finished.
    package enum AfterBatch: Equatable, Sendable {
        /// Read the queue again.
        case read
        /// Send the batch read while this one was out, at once.
        case sendPrefetched
        /// A trickle came in meanwhile: let the batch fill for this long, then read again.
        case linger(Duration)
    }

    package let timing: Timing
    /// The loop is holding events for the clock (announced).
    package private(set) var holding = false

    package init(timing: Timing) { self.timing = timing }

    /// - Parameters:
    ///   - count: events read.
    ///   - ready: of those, the ones that may be sent now (in queue order, from the first).
    ///   - holdUntilBoottime: when the first of the others may be sent, if they are held.
    ///   - nowBoottime: now, on the same clock.
    package mutating func read(count: Int, ready: Int, holdUntilBoottime: Int64?, nowBoottime: Int64) -> AfterRead {
        guard count > 0 else { return .waitForEvents(timing.idleRecheck) }
        if ready <= 0 {
            let announce = !holding
            holding = true
            let wait = holdUntilBoottime.map { $0.saturatingSubtract(nowBoottime) } ?? timing.maxClockHold.milliseconds
            return .holdForClock(.milliseconds(min(max(1, wait), timing.maxClockHold.milliseconds)), announce: announce)
        }
        holding = false
        return .send(count: min(ready, count))
    }

    /// Whether to read the next batch while `range` is out: only when the whole batch goes
    /// and all is well, so that on success it is sent at once.
    package func prefetches(range: Range<Int>, batchCount: Int, consecutiveFailures: Int) -> Bool {
        range == 0..<batchCount && consecutiveFailures == 0
    }

    /// The batch under way is finished.
    ///
    /// - Parameters:
    ///   - delivered: the scheduler's word on the last answer (``DeliveryScheduler/lastAnswerDelivered``).
    ///   - prefetched: the batch read meanwhile, if one was: its size, whether it is full, and
    ///     how many of its events may be sent now.
    package func finished(
        delivered: Bool, consecutiveFailures: Int, prefetched: (count: Int, isFull: Bool, ready: Int)?
    ) -> AfterBatch {
        guard delivered, consecutiveFailures == 0, let prefetched, prefetched.count > 0,
            prefetched.ready == prefetched.count
        else { return .read }
        // A trickle: what came in during the request waits for a fuller batch, as new events
        // after an idle spell do, instead of a request each.
        return prefetched.isFull ? .sendPrefetched : .linger(timing.linger)
    }
}
