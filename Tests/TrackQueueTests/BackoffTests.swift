import Testing

@testable import TrackQueue

@Suite struct BackoffTests {
    let backoff = Backoff(initial: .seconds(1), maximum: .seconds(300))

    @Test func capDoublesUntilTheMaximumAndNeverPassesIt() {
        var previous = Duration.zero
        for failures in 1...20 {
            let cap = backoff.cap(failures: failures)
            let doubled = Duration.seconds(1) * (1 << (failures - 1))
            #expect(cap == min(doubled, .seconds(300)), "failures \(failures)")
            #expect(cap <= .seconds(300))
            #expect(cap >= previous)
            previous = cap
        }
        #expect(backoff.cap(failures: 1) == .seconds(1))
        #expect(backoff.cap(failures: 9) == .seconds(256))
        #expect(backoff.cap(failures: 10) == .seconds(300))
    }

    @Test func capIsOverflowSafe() {
        #expect(backoff.cap(failures: 10_000) == .seconds(300))
        #expect(backoff.cap(failures: .max) == .seconds(300))
        let huge = Backoff(initial: .seconds(Int64.max / 2), maximum: .seconds(Int64.max))
        #expect(huge.cap(failures: 1_000) == .seconds(Int64.max))
        let ms = Backoff(initial: .milliseconds(250), maximum: .seconds(5))
        #expect(ms.cap(failures: 3) == .seconds(1))
        #expect(ms.cap(failures: 6) == .seconds(5))
    }

    @Test func capTreatsFailuresBelowOneAsOne() {
        #expect(backoff.cap(failures: 0) == .seconds(1))
        #expect(backoff.cap(failures: -5) == .seconds(1))
    }

    @Test func capIsTheMaximumWhenInitialExceedsIt() {
        let odd = Backoff(initial: .seconds(10), maximum: .seconds(3))
        #expect(odd.cap(failures: 1) == .seconds(3))
    }

    @Test func delayIsExactlyTheSeededDraw() {
        var rng = SplitMix64(seed: 42)
        var twin = SplitMix64(seed: 42)
        for failures in 1...20 {
            let cap = backoff.cap(failures: failures)
            let capNanos = UInt64(cap.components.seconds) * 1_000_000_000
            let expected = Duration.nanoseconds(UInt64.random(in: 0...capNanos, using: &twin))
            let delay = backoff.delay(failures: failures, retryAfter: nil, using: &rng)
            #expect(delay == expected)
            #expect(delay >= .zero && delay <= cap)
        }
    }

    @Test func delaysStayWithinTheirCapsOverManyDraws() {
        var rng = SplitMix64(seed: 7)
        for failures in 1...20 {
            for _ in 0..<200 {
                let delay = backoff.delay(failures: failures, retryAfter: nil, using: &rng)
                #expect(delay >= .zero && delay <= backoff.cap(failures: failures))
            }
        }
    }

    @Test func retryAfterIsAFloor() {
        var rng = SplitMix64(seed: 1)
        var twin = SplitMix64(seed: 1)
        // Retry-After longer than any jitter wins, even beyond the maximum.
        #expect(backoff.delay(failures: 1, retryAfter: .seconds(120), using: &rng) == .seconds(120))
        #expect(backoff.delay(failures: 20, retryAfter: .seconds(900), using: &rng) == .seconds(900))
        _ = UInt64.random(in: 0...1_000_000_000, using: &twin)
        _ = UInt64.random(in: 0...300_000_000_000, using: &twin)
        // A short Retry-After leaves the jitter when the jitter is longer.
        let jitter = Duration.nanoseconds(UInt64.random(in: 0...300_000_000_000, using: &twin))
        let delay = backoff.delay(failures: 20, retryAfter: .nanoseconds(1), using: &rng)
        #expect(delay == max(jitter, .nanoseconds(1)))
    }

    @Test func zeroInitialNeverWaits() {
        var rng = SplitMix64(seed: 3)
        let none = Backoff(initial: .zero, maximum: .seconds(300))
        #expect(none.cap(failures: 50) == .zero)
        #expect(none.delay(failures: 50, retryAfter: nil, using: &rng) == .zero)
    }

    /// A generator that always answers `UInt64.max` draws the top of each range.
    private struct TopRandom: RandomNumberGenerator {
        mutating func next() -> UInt64 { .max }
    }

    @Test func topDrawIsTheCap() {
        var rng = TopRandom()
        let fast = Backoff(initial: .milliseconds(40), maximum: .seconds(60))
        let delays = (1...6).map { fast.delay(failures: $0, retryAfter: nil, using: &rng) }
        #expect(delays == [40, 80, 160, 320, 640, 1280].map { Duration.milliseconds($0) })
    }
}
