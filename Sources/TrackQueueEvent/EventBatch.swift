/// Normalized events of many lines, packed in one buffer to avoid per-event allocations.
public struct EventBatch: Sendable {
    /// The concatenated normalized JSON texts of all events.
    public private(set) var bytes: [UInt8]
    /// `ends[i]` is the end offset (exclusive) of event `i` in `bytes`.
    public private(set) var ends: [Int]
    /// `stamped[i]`: whether trackq stamped event `i`'s `timestamp` (the app gave none).
    public private(set) var stamped: [Bool]

    /// Creates an empty batch.
    public init() {
        bytes = []
        ends = []
        stamped = []
    }

    /// The number of events in the batch.
    public var count: Int { ends.count }

    /// Whether the batch holds no events.
    public var isEmpty: Bool { ends.isEmpty }

    /// The normalized JSON bytes of event `i`.
    public subscript(i: Int) -> ArraySlice<UInt8> {
        let start = i == 0 ? 0 : ends[i - 1]
        return bytes[start..<ends[i]]
    }

    /// Reserves room for `bytes` of events and `events` events.
    public mutating func reserveCapacity(bytes: Int, events: Int) {
        self.bytes.reserveCapacity(bytes)
        ends.reserveCapacity(events)
        stamped.reserveCapacity(events)
    }

    /// Removes all events, optionally keeping the allocated storage for reuse.
    public mutating func removeAll(keepingCapacity: Bool) {
        bytes.removeAll(keepingCapacity: keepingCapacity)
        ends.removeAll(keepingCapacity: keepingCapacity)
        stamped.removeAll(keepingCapacity: keepingCapacity)
    }

    /// Appends one already-normalized event (its `timestamp`, if any, the app's).
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        self.bytes.append(contentsOf: bytes)
        ends.append(self.bytes.count)
        stamped.append(false)
    }
}

// MARK: - Low-level building, used by EventParser

extension EventBatch {
    /// A position to roll back to: the sizes of `bytes` and `ends`.
    package struct Mark {
        package var byteCount: Int
        package var eventCount: Int
    }

    package var mark: Mark { Mark(byteCount: bytes.count, eventCount: ends.count) }

    package var bytesWritten: Int { bytes.count }

    /// Drops everything appended after `mark`, keeping capacity.
    package mutating func rollBack(to mark: Mark) {
        bytes.removeLast(bytes.count - mark.byteCount)
        ends.removeLast(ends.count - mark.eventCount)
        stamped.removeLast(stamped.count - mark.eventCount)
    }

    @inline(__always)
    package mutating func appendByte(_ byte: UInt8) {
        bytes.append(byte)
    }

    @inline(__always)
    package mutating func appendRaw(_ raw: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: raw)
    }

    /// Removes already-written bytes (rare: dropping a duplicate `event` alias member).
    package mutating func removeBytes(_ range: Range<Int>) {
        bytes.removeSubrange(range)
    }

    /// Turns a trailing `,` into `}` (or appends `}`), then records the event end.
    package mutating func closeEvent(stamped: Bool) {
        if let last = bytes.last, last == UInt8(ascii: ",") {
            bytes[bytes.count - 1] = UInt8(ascii: "}")
        } else {
            bytes.append(UInt8(ascii: "}"))
        }
        ends.append(bytes.count)
        self.stamped.append(stamped)
    }

    /// Appends an RFC 3339 timestamp for `millis` (no quotes).
    package mutating func appendTimestamp(millis: Int64) {
        RFC3339.appendTimestamp(millis: millis, to: &bytes)
    }
}
