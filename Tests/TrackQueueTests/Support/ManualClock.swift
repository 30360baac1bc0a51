import NIOConcurrencyHelpers

/// An instant on a manual time line, for tests of time-driven state machines.
struct ManualInstant: InstantProtocol, CustomStringConvertible {
    /// Time since the start of the test.
    var offset: Duration

    init(offset: Duration = .zero) {
        self.offset = offset
    }

    func advanced(by duration: Duration) -> ManualInstant {
        ManualInstant(offset: offset + duration)
    }

    func duration(to other: ManualInstant) -> Duration {
        other.offset - offset
    }

    static func < (lhs: ManualInstant, rhs: ManualInstant) -> Bool {
        lhs.offset < rhs.offset
    }

    var description: String { "t+\(offset)" }
}

/// A clock that moves only when a test moves it.
struct ManualClock {
    private(set) var now = ManualInstant()

    /// Moves time forward by `duration`.
    mutating func advance(by duration: Duration) {
        now = now.advanced(by: duration)
    }

    /// Moves time to `instant` (never backwards).
    mutating func advance(to instant: ManualInstant) {
        if instant > now { now = instant }
    }
}

/// A `Clock` on the manual time line that code under test can sleep on: sleepers wake when
/// the test moves time past their deadline, never on their own.
final class TestClock: Clock, Sendable {
    typealias Duration = Swift.Duration
    typealias Instant = ManualInstant

    private struct Sleeper {
        var deadline: ManualInstant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = ManualInstant()
        var sleepers: [UInt64: Sleeper] = [:]
        var nextID: UInt64 = 0
    }

    private let state = NIOLockedValueBox(State())

    var now: ManualInstant { state.withLockedValue { $0.now } }
    var minimumResolution: Duration { .zero }

    /// The earliest deadline anyone sleeps until, if anyone sleeps.
    var nextDeadline: ManualInstant? { state.withLockedValue { $0.sleepers.values.map(\.deadline).min() } }

    func sleep(until deadline: ManualInstant, tolerance: Duration?) async throws {
        let id = state.withLockedValue { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resume: Result<Void, any Error>? = state.withLockedValue { state in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if deadline <= state.now { return .success(()) }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return nil
                }
                if let resume { continuation.resume(with: resume) }
            }
        } onCancel: {
            state.withLockedValue { $0.sleepers.removeValue(forKey: id) }?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time to `instant` (never backwards) and wakes every sleeper it passes.
    func advance(to instant: ManualInstant) {
        let woken = state.withLockedValue { state -> [Sleeper] in
            if instant > state.now { state.now = instant }
            let due = state.sleepers.filter { $0.value.deadline <= state.now }
            for id in due.keys { state.sleepers.removeValue(forKey: id) }
            return Array(due.values)
        }
        for sleeper in woken { sleeper.continuation.resume() }
    }

    func advance(by duration: Duration) {
        advance(to: now.advanced(by: duration))
    }
}
