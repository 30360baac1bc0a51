/// Eight bytes at a time ("SIMD within a register"): how the JSON scanner and the delivery
/// walk find the few bytes that matter in a run of text without a branch on every byte.
///
/// Every member is `@inlinable`: they are called from the Event and Delivery targets, in
/// loops over every byte sent, and a call across the module boundary (with `skip`'s closure
/// unspecialized) made draining the queue about 15% dearer (BENCHMARKS.md).
public enum SWAR {
    @inlinable public static var ones: UInt64 { 0x0101_0101_0101_0101 }
    @inlinable public static var highs: UInt64 { 0x8080_8080_8080_8080 }

    /// The eight bytes at `offset` of `bytes` (which holds at least `offset + 8`), the first
    /// in the lowest bits.
    @inlinable @inline(__always)
    public static func word(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// A high bit set in each byte of `word` equal to `byte`. The lowest one set is exact (a
    /// borrow can only mark bytes above a real match), so `trailingZeroBitCount / 8` is the
    /// index of the first such byte; zero when there is none.
    @inlinable @inline(__always)
    public static func matches(_ word: UInt64, _ byte: UInt8) -> UInt64 {
        let x = word ^ (ones &* UInt64(byte))
        return (x &- ones) & ~x & highs
    }

    /// A high bit set in each byte of `word` below `limit` (at most 0x80); the lowest one set
    /// is exact, as for ``matches(_:_:)``.
    @inlinable @inline(__always)
    public static func below(_ word: UInt64, _ limit: UInt8) -> UInt64 {
        (word &- ones &* UInt64(limit)) & ~word & highs
    }

    /// The first index at or after `start` whose byte may matter: the first byte `stops`
    /// marks in an eight-byte word of `bytes`, or, past every word with no mark, where fewer
    /// than eight bytes remain (the caller looks at those one by one).
    @inlinable @inline(__always)
    public static func skip(_ bytes: UnsafeRawBufferPointer, from start: Int, _ stops: (UInt64) -> UInt64) -> Int {
        var i = start
        while i + 8 <= bytes.count {
            let marks = stops(word(bytes, at: i))
            if marks != 0 { return i + (marks.trailingZeroBitCount >> 3) }
            i += 8
        }
        return i
    }
}
