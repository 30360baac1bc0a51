/// `--max-send-rate`: a token bucket on the bytes delivery puts on the wire (request bodies,
/// as sent: compressed when gzip is on). It holds one batch (`--batch-max-bytes`) and fills
/// at the rate, so a batch goes at once after a quiet spell, and a backlog drains at the
/// rate. A request larger than what is held waits until the bucket is full or holds it; the
/// bucket may then go below zero, so the average stays at the rate.
package struct SendRate<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    package let bytesPerSecond: Int
    package let burst: Int
    private var tokens: Double
    private var updated: Instant?

    /// A full bucket.
    package init(bytesPerSecond: Int, burst: Int) {
        self.bytesPerSecond = max(1, bytesPerSecond)
        self.burst = max(1, burst)
        tokens = Double(self.burst)
    }

    /// How long until `bytes` may be sent; nil: now.
    package func wait(for bytes: Int, now: Instant) -> Duration? {
        let held = tokens(at: now)
        let needed = Double(min(max(0, bytes), burst))
        guard held < needed else { return nil }
        let seconds = (needed - held) / Double(bytesPerSecond)
        // Rounded up to the millisecond, so a wait never ends a hair short.
        return .milliseconds(Int64((seconds * 1000).rounded(.up)))
    }

    /// Takes `bytes` out, as they are sent.
    package mutating func spend(_ bytes: Int, now: Instant) {
        tokens = tokens(at: now) - Double(max(0, bytes))
        updated = now
    }

    private func tokens(at now: Instant) -> Double {
        guard let updated else { return tokens }
        let elapsed = updated.duration(to: now)
        guard elapsed > .zero else { return tokens }
        let (seconds, attoseconds) = elapsed.components
        let filled = (Double(seconds) + Double(attoseconds) / 1e18) * Double(bytesPerSecond)
        return min(Double(burst), tokens + filled)
    }
}
