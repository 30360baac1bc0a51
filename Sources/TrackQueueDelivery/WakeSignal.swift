import NIOConcurrencyHelpers

/// Why the delivery loop should look again.
package enum WakeReason: UInt8, Sendable {
    /// Events were committed.
    case newEvents = 1
    /// SIGHUP: read the token again.
    case reload = 2
    /// Stop after the request in flight.
    case shutdown = 4
    /// The wall clock was set, or its state changed: events held for it may go.
    case clock = 8
}

/// A set of ``WakeReason``s in one byte: the writer signals after every commit, so this is
/// on the ingest path and must not hash or allocate.
package struct WakeReasons: Sendable, Equatable, ExpressibleByArrayLiteral {
    private var bits: UInt8 = 0

    package init(arrayLiteral reasons: WakeReason...) {
        for reason in reasons { insert(reason) }
    }

    package func contains(_ reason: WakeReason) -> Bool { bits & reason.rawValue != 0 }
    package mutating func insert(_ reason: WakeReason) { bits |= reason.rawValue }
    package mutating func remove(_ reason: WakeReason) { bits &= ~reason.rawValue }
}

/// Wakes the delivery loop from its waits: idle, lingering or backing off.
///
/// Signals are remembered until taken, so none is lost between two waits; a wait only
/// returns for the reasons it accepts (a backing-off sender ignores new events).
package final class WakeSignal: Sendable {
    private struct State {
        package var pending: WakeReasons = []
        /// Counts signals, so a wait can tell a new one from one it already saw.
        package var generation = 0
        package var waiter: CheckedContinuation<Void, Never>?
        /// The reasons the waiter returns for: other signals are kept without waking it.
        package var waiterAccepts: WakeReasons = []
        package var waiterCancelled = false
        /// Times a signal woke the waiter.
        package var wakes = 0
    }

    private let state = NIOLockedValueBox(State())

    package init() {}
    /// The order ``take(_:)`` prefers reasons in.
    private static let priority: [WakeReason] = [.shutdown, .reload, .clock, .newEvents]

    package func signal(_ reason: WakeReason) {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            state.pending.insert(reason)
            state.generation += 1
            // The writer signals after every commit: a wait that does not take new events
            // (lingering, backing off) must not be woken, and set up again, for each one.
            guard state.waiterAccepts.contains(reason), let waiter = state.waiter else { return nil }
            state.waiter = nil
            state.wakes += 1
            return waiter
        }
        waiter?.resume()
    }

    /// For tests: whether a wait is parked, and how many times a signal woke one.
    package var hasWaiter: Bool { state.withLockedValue { $0.waiter != nil } }
    package var wakes: Int { state.withLockedValue { $0.wakes } }

    /// Takes a pending reason among `accepted`, if there is one.
    package func take(_ accepted: WakeReasons) -> WakeReason? {
        state.withLockedValue { state in
            for reason in Self.priority where accepted.contains(reason) && state.pending.contains(reason) {
                state.pending.remove(reason)
                return reason
            }
            return nil
        }
    }

    /// Waits until one of `accepted` is signalled (returned) or `deadline` passes (nil).
    package func wait(for accepted: WakeReasons, until deadline: ContinuousClock.Instant? = nil) async -> WakeReason? {
        await wait(for: accepted, until: deadline, clock: ContinuousClock())
    }

    /// Waits until one of `accepted` is signalled (returned) or `deadline` on `clock` passes (nil).
    package func wait<C: Clock>(for accepted: WakeReasons, until deadline: C.Instant?, clock: C) async -> WakeReason? {
        while true {
            let seen = state.withLockedValue { $0.generation }
            if let reason = take(accepted) { return reason }
            if let deadline, deadline <= clock.now { return nil }
            if Task.isCancelled { return .shutdown }
            await withTaskGroup(of: Void.self) { group in
                if let deadline {
                    group.addTask { try? await clock.sleep(until: deadline, tolerance: nil) }
                }
                group.addTask { await self.nextSignal(after: seen, accepting: accepted) }
                _ = await group.next()
                group.cancelAll()
            }
        }
    }

    /// Returns at the first signal among `accepted` after generation `seen`, or when cancelled.
    private func nextSignal(after seen: Int, accepting accepted: WakeReasons) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLockedValue { state -> Bool in
                    if state.waiterCancelled || state.generation != seen {
                        state.waiterCancelled = false
                        return true
                    }
                    state.waiter = continuation
                    state.waiterAccepts = accepted
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                if state.waiter == nil { state.waiterCancelled = true }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
