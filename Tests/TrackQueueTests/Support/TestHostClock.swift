import NIOConcurrencyHelpers

@testable import TrackQueue

/// A host's clocks as a test sets them: the seam of ``HostClock``. The machine's real clock
/// is never changed. Boottime runs with the test's real monotonic clock from `boottimeMillis`,
/// so time passes as it does; the wall clock is boottime plus an offset a test can step.
final class TestHostClock: Sendable {
    struct State {
        var offsetMillis: Int64
        var bootStartMillis: Int64
        var startedAtNanos: Int64
        var kernelSynced: Bool?
    }

    private let state: NIOLockedValueBox<State>
    let bootID: String?

    /// A host `bootID` whose wall clock reads `wallMillis` and whose boottime reads
    /// `boottimeMillis` now.
    init(wallMillis: Int64, boottimeMillis: Int64 = 5_000, kernelSynced: Bool? = nil, bootID: String? = "test-boot-1") {
        state = NIOLockedValueBox(
            State(
                offsetMillis: wallMillis - boottimeMillis, bootStartMillis: boottimeMillis,
                startedAtNanos: SystemClock.monotonicNanos(), kernelSynced: kernelSynced))
        self.bootID = bootID
    }

    /// The wall clock is set (as NTP steps it): it reads `wallMillis` now.
    func setWall(_ wallMillis: Int64, kernelSynced: Bool?) {
        state.withLockedValue {
            $0.offsetMillis = wallMillis - Self.boottime($0)
            $0.kernelSynced = kernelSynced
        }
    }

    var reading: ClockReading { hostClock.read() }

    /// `wall - boottime`: what the wall clock read at boot, as it is set now.
    var offsetMillis: Int64 { state.withLockedValue { $0.offsetMillis } }

    var hostClock: HostClock {
        let state = self.state
        return HostClock(
            wallMillis: { state.withLockedValue { $0.offsetMillis + Self.boottime($0) } },
            boottimeMillis: { state.withLockedValue { Self.boottime($0) } },
            kernelSynced: { state.withLockedValue { $0.kernelSynced } },
            bootID: bootID)
    }

    private static func boottime(_ state: State) -> Int64 {
        state.bootStartMillis + (SystemClock.monotonicNanos() - state.startedAtNanos) / 1_000_000
    }
}
