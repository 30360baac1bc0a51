import Logging
import ServiceLifecycle

/// When a clock reading is worth a write to `boots`: a pure value.
///
/// A reading is recorded when the wall clock was set (its offset from boottime moved by more
/// than ``stepMillis``: NTP or timesyncd stepping it), when its state changed, and at least
/// every ``recordEveryMillis`` of boottime, so an earlier boot's recorded boottime falls at
/// most that short of how long it ran.
struct ClockRecordPolicy: Sendable, Equatable {
    var stepMillis: Int64 = 1000
    var recordEveryMillis: Int64 = 60_000

    enum Decision: Sendable, Equatable {
        case skip
        case record
        /// The wall clock was set: by this many ms (negative: back).
        case step(byMillis: Int64)
    }

    func decide(
        last: ClockReading, lastState: ClockState, now: ClockReading, state: ClockState
    ) -> Decision {
        let moved = now.offsetMillis.saturatingSubtract(last.offsetMillis)
        if moved > stepMillis || moved < -stepMillis { return .step(byMillis: moved) }
        if state != lastState { return .record }
        return now.boottimeMillis.saturatingSubtract(last.boottimeMillis) >= recordEveryMillis ? .record : .skip
    }
}

/// Watches the host's clock while the daemon runs: records this boot's reading in `boots`
/// as ``ClockRecordPolicy`` says, and logs a step of the wall clock or a change of its state.
struct ClockWatch: Service {
    var clock: HostClock
    var judge: ClockJudge
    var writer: StoreWriter
    /// Told of a step or a change of state: delivery may hold events for the clock.
    var wake: WakeSignal?
    /// How often the clock is read (three system calls).
    var checkEvery: Duration
    var policy = ClockRecordPolicy()
    /// The reading the writer recorded at the start, and its state.
    var start: (reading: ClockReading, state: ClockState)
    var logger: Logger

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            // `seen`: the last reading, for the log; `recorded`: the last one written.
            var (seen, recorded) = (start, start)
            while true {
                try await Task.sleep(for: checkEvery)
                let reading = clock.read()
                let now = (reading: reading, state: judge.state(of: reading))
                let change = policy.decide(last: seen.reading, lastState: seen.state, now: now.reading, state: now.state)
                var stepped = false
                if case .step(let by) = change {
                    stepped = true
                    logger.notice(
                        "the wall clock was set", metadata: ["clock.step_ms": "\(by)", "clock.state": "\(now.state.rawValue)"])
                }
                if now.state != seen.state {
                    logger.log(
                        level: now.state == .wrong ? .warning : .notice, "the clock's state changed",
                        metadata: ["clock.state": "\(now.state.rawValue)", "clock.was": "\(seen.state.rawValue)"])
                }
                if stepped || now.state != seen.state { wake?.signal(.clock) }
                seen = now
                guard policy.decide(last: recorded.reading, lastState: recorded.state, now: now.reading, state: now.state) != .skip
                else { continue }
                do {
                    try await writer.recordClock(now.reading, state: now.state)
                    recorded = now
                } catch {
                    // A full disk: tried again at the next check.
                    logger.debug("cannot record the clock reading", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
