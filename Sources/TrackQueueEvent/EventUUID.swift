/// An event's id for the API, `context.trackq.event_id`: a UUIDv7 (RFC 9562) fixed when the
/// event is accepted (its milliseconds, then random bits) and stored with it, so every retry,
/// bisection, restart and requeue sends the same one, and the API can drop duplicates.
public struct EventUUID: Sendable, Hashable, CustomStringConvertible {
    /// The first 8 bytes (big-endian): 48 bits of Unix milliseconds, the version, 12 bits.
    public var high: UInt64
    /// The last 8: the variant, 62 bits.
    public var low: UInt64

    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A UUIDv7 for `millis` (clamped to 48 bits) with `random`'s bits.
    @inlinable
    public init(millis: Int64, random: (UInt64, UInt64)) {
        let stamp = UInt64(clamping: max(0, millis)) & 0xFFFF_FFFF_FFFF
        high = stamp << 16 | 0x7000 | (random.0 & 0x0FFF)
        low = 0x8000_0000_0000_0000 | (random.1 & 0x3FFF_FFFF_FFFF_FFFF)
    }

    /// The id of an event stored before ids were (schema 6 and older): derived from the
    /// database's salt and the event's queue id, the same at every read.
    public static func derived(millis: Int64, salt: Int64, queueID: Int64) -> EventUUID {
        var state = UInt64(bitPattern: salt) ^ UInt64(bitPattern: queueID) &* 0x9E37_79B9_7F4A_7C15
        return EventUUID(millis: millis, random: (splitMix(&state), splitMix(&state)))
    }

    /// SplitMix64's step: a fixed mix, so derived ids never change between versions.
    public static func splitMix(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// From its 16 stored bytes; nil unless there are exactly 16.
    @inlinable
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 16 else { return nil }
        self.init(
            high: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    /// Appends its 16 bytes, big-endian, as they are stored. Inlinable, as the rest of the
    /// hot path here: the ingest and the delivery layers call it across modules.
    @inlinable
    public func appendBytes(to out: inout [UInt8]) {
        withUnsafeBytes(of: high.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: low.bigEndian) { out.append(contentsOf: $0) }
    }

    /// Appends its text, `0190f2c4-1a2b-7c3d-8e4f-0123456789ab` (36 bytes, lower case),
    /// written into 36 bytes on the stack and appended at once.
    @inlinable
    public func appendText(to out: inout [UInt8]) {
        var text: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &text) { buffer in
            var at = 0
            @inline(__always) func hex(_ value: UInt64, nibbles: Range<Int>) {
                for nibble in nibbles.reversed() {
                    let digit = UInt8(truncatingIfNeeded: (value >> UInt64(nibble * 4)) & 0xF)
                    buffer[at] = digit < 10 ? 0x30 + digit : 0x57 + digit
                    at += 1
                }
            }
            hex(high, nibbles: 8..<16)
            buffer[at] = 0x2D
            at += 1
            hex(high, nibbles: 4..<8)
            buffer[at] = 0x2D
            at += 1
            hex(high, nibbles: 0..<4)
            buffer[at] = 0x2D
            at += 1
            hex(low, nibbles: 12..<16)
            buffer[at] = 0x2D
            at += 1
            hex(low, nibbles: 0..<12)
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<36]))
        }
    }

    public var description: String {
        var text: [UInt8] = []
        text.reserveCapacity(36)
        appendText(to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    /// The milliseconds it carries.
    public var millis: Int64 { Int64(high >> 16) }
}

/// Random bits for the ids of accepted events: xoshiro256** seeded from the system's random
/// source once, so the hot path makes no system call (uniqueness, not secrecy, is wanted:
/// 74 random bits an id, within a millisecond).
public struct EventUUIDSource: Sendable {
    @usableFromInline var state: (UInt64, UInt64, UInt64, UInt64)

    public init() {
        var system = SystemRandomNumberGenerator()
        state = (system.next(), system.next(), system.next(), system.next())
        if state == (0, 0, 0, 0) { state.0 = 1 }
    }

    @inlinable
    public mutating func next(millis: Int64) -> EventUUID {
        EventUUID(millis: millis, random: (nextRandom(), nextRandom()))
    }

    @inlinable
    mutating func nextRandom() -> UInt64 {
        let result = rotate(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotate(state.3, 45)
        return result
    }

    @inlinable
    func rotate(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}
