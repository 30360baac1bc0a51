/// Exponential backoff with full jitter (README, "Delivery").
///
/// After the `n`th consecutive failure the wait is uniform in
/// `[0, min(maximum, initial × 2^(n-1))]`, so the first wait is at most `initial`.
/// Randomness is passed in, so tests can seed it and check exact values.
///
/// ```swift
/// let backoff = Backoff(initial: .seconds(1), maximum: .seconds(300))
/// var rng = SystemRandomNumberGenerator()
/// let wait = backoff.delay(failures: 3, retryAfter: nil, using: &rng)  // in [0, 4 s]
/// ```
public struct Backoff: Sendable, Equatable {
    /// The cap of the first wait (`--retry-initial`).
    public var initial: Duration
    /// The largest cap, and the fixed wait after an alert (`--retry-max`).
    public var maximum: Duration

    /// Creates a backoff policy.
    ///
    /// - Parameters:
    ///   - initial: The cap of the first wait. Negative values count as zero.
    ///   - maximum: The largest cap. Negative values count as zero.
    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The cap for the given number of consecutive failures (≥ 1; smaller counts as 1):
    /// `min(maximum, initial × 2^(failures-1))`, overflow-safe for any count.
    public func cap(failures: Int) -> Duration {
        let ceiling = Swift.max(maximum, .zero)
        var cap = Swift.min(Swift.max(initial, .zero), ceiling)
        guard cap > .zero else { return cap }
        var doublings = Swift.max(failures, 1) - 1
        while doublings > 0 && cap < ceiling {
            // Doubling past the ceiling is clamped, so this never overflows.
            cap = cap > ceiling / 2 ? ceiling : cap * 2
            doublings -= 1
        }
        return Swift.min(cap, ceiling)
    }

    /// Full jitter: uniform in `[0, cap(failures:)]` at nanosecond resolution, but never less
    /// than `retryAfter` when given.
    ///
    /// Draws exactly one `UInt64.random(in: 0...capNanoseconds, using: &rng)`.
    public func delay(
        failures: Int,
        retryAfter: Duration?,
        using rng: inout some RandomNumberGenerator
    ) -> Duration {
        let limit = Self.wholeNanoseconds(cap(failures: failures))
        let jitter = Duration.nanoseconds(UInt64.random(in: 0...limit, using: &rng))
        guard let retryAfter else { return jitter }
        return Swift.max(jitter, retryAfter)
    }

    /// A non-negative duration in whole nanoseconds (rounded down), saturating at `UInt64.max`.
    package static func wholeNanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        let (scaled, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return .max }
        let (total, overflow2) = scaled.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000))
        return overflow2 ? .max : total
    }
}
