import TrackQueueEvent

/// One segment of the queue as it is stored: the events of one submission, as the JSON array
/// they are sent as, with where each one ends (see `Schema`, migration 5).
///
/// Built in buffers that are kept from one commit to the next, so the hot path allocates
/// nothing once they have grown.
package struct SegmentBuilder {
    /// The most events, and about the most bytes, one segment holds. A batch read for delivery
    /// loads whole segments, so a segment much larger than a batch would be read many times.
    package static let maxEvents = 256
    package static let maxBytes = 256 << 10

    package private(set) var body: [UInt8] = [UInt8(ascii: "[")]
    private var ends: [UInt8] = []
    private var stamped: [UInt8] = []
    /// Each event's ``EventUUID``, 16 bytes each.
    private var ids: [UInt8] = []
    private var idSource = EventUUIDSource()
    private var anyStamped = false
    package private(set) var count = 0
    /// The sum of the events' sizes (without the brackets and commas).
    package private(set) var bytes = 0

    package var isFull: Bool { count >= Self.maxEvents || body.count >= Self.maxBytes }

    package mutating func reset() {
        body.removeAll(keepingCapacity: true)
        body.append(UInt8(ascii: "["))
        ends.removeAll(keepingCapacity: true)
        stamped.removeAll(keepingCapacity: true)
        ids.removeAll(keepingCapacity: true)
        anyStamped = false
        count = 0
        bytes = 0
    }

    /// Adds `event`, accepted at `acceptedAtMillis`, with a new id (a requeue keeps a dead
    /// letter's id in SQL, `DeadLetterStore.requeue`).
    package mutating func append(_ event: UnsafeRawBufferPointer, stamped isStamped: Bool, acceptedAtMillis: Int64) {
        idSource.next(millis: acceptedAtMillis).appendBytes(to: &ids)
        if count > 0 { body.append(UInt8(ascii: ",")) }
        body.append(contentsOf: event)
        let end = UInt32(truncatingIfNeeded: body.count)
        ends.append(UInt8(truncatingIfNeeded: end))
        ends.append(UInt8(truncatingIfNeeded: end >> 8))
        ends.append(UInt8(truncatingIfNeeded: end >> 16))
        ends.append(UInt8(truncatingIfNeeded: end >> 24))
        stamped.append(isStamped ? 1 : 0)
        anyStamped = anyStamped || isStamped
        count += 1
        bytes += event.count
    }

    /// The `body`, `ends`, `stamped` and `ids` columns: the array closed, `ends` nil for one
    /// event, `stamped` nil when trackq stamped none.
    package mutating func withColumns<E: Error>(
        _ use: (UnsafeRawBufferPointer, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?, UnsafeRawBufferPointer) throws(E) -> Void
    ) throws(E) {
        body.append(UInt8(ascii: "]"))
        defer { body.removeLast() }
        let one = count == 1
        let any = anyStamped
        var failure: E?
        body.withUnsafeBytes { body in
            ends.withUnsafeBytes { ends in
                stamped.withUnsafeBytes { stamped in
                    ids.withUnsafeBytes { ids in
                        do throws(E) {
                            try use(body, one ? nil : ends, any ? stamped : nil, ids)
                        } catch {
                            failure = error
                        }
                    }
                }
            }
        }
        if let failure { throw failure }
    }
}

/// A stored segment's events, read from its columns without copying them.
package struct SegmentView {
    package let body: UnsafeRawBufferPointer
    package let ends: UnsafeRawBufferPointer
    package let stamped: UnsafeRawBufferPointer
    package let ids: UnsafeRawBufferPointer
    package let count: Int

    /// `count` events in `body` (`"[e1,e2,...]"`), as `ends`, `stamped` and `ids` say (empty
    /// `ids`: stored before ids were); nil when the columns do not agree with each other, as
    /// only a damaged file would make them.
    package init?(
        count: Int, body: UnsafeRawBufferPointer, ends: UnsafeRawBufferPointer, stamped: UnsafeRawBufferPointer,
        ids: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    ) {
        guard count >= 1, body.count >= 2, ends.isEmpty ? count == 1 : ends.count == 4 * count,
            stamped.isEmpty || stamped.count == count, ids.isEmpty || ids.count == 16 * count
        else { return nil }
        self.body = body
        self.ends = ends
        self.stamped = stamped
        self.ids = ids
        self.count = count
    }

    /// Event `index`'s stored id; nil when the segment has none.
    package func id(of index: Int) -> EventUUID? {
        guard !ids.isEmpty else { return nil }
        return EventUUID(bytes: UnsafeRawBufferPointer(rebasing: ids[(16 * index)..<(16 * index + 16)]))
    }

    /// Where event `index` lies in `body`; nil if the offsets are out of order or bounds.
    package func range(of index: Int) -> Range<Int>? {
        let start = index == 0 ? 1 : end(of: index - 1) + 1
        let end = end(of: index)
        guard start <= end, end < body.count else { return nil }
        return start..<end
    }

    package func isStamped(_ index: Int) -> Bool { !stamped.isEmpty && stamped[index] == 1 }

    private func end(of index: Int) -> Int {
        guard !ends.isEmpty else { return body.count - 1 }
        let at = 4 * index
        return Int(ends[at]) | Int(ends[at + 1]) << 8 | Int(ends[at + 2]) << 16 | Int(ends[at + 3]) << 24
    }
}
