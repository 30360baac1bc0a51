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
