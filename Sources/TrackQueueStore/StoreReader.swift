import CSQLite
import NIOConcurrencyHelpers
import NIOCore
import TrackQueueClock
import TrackQueueEvent
import TrackQueueStatus
import TrackQueueSystem

/// A batch of queued events, ready to send: the JSON array body and what each event is.
public struct OutgoingBatch: Sendable, Equatable {
    /// One event of the batch.
    public struct Event: Sendable, Equatable {
        public var id: Int64
        /// Where its JSON text lies in ``OutgoingBatch/body``.
        public var range: Range<Int>
        public var acceptedAtMillis: Int64
        public var acceptedBoottimeMillis: Int64
        /// Its row in `boots`; compare with the current boot's before trusting boottime.
        public var boot: Int64
        /// The clock's state when it was accepted (nil: accepted before trackq recorded it).
        public var clockState: ClockState? = nil
        /// Whether trackq stamped its `timestamp` (only such a time is ever repaired).
        public var stamped: Bool = false
        /// Its id for the API (`context.trackq.event_id`), fixed when it was accepted.
        public var uuid: EventUUID

        /// Creates a value with every property given (or its default; an id derived from
        /// the queue id with salt 0 when none is given).
        package init(
            id: Int64, range: Range<Int>, acceptedAtMillis: Int64, acceptedBoottimeMillis: Int64, boot: Int64,
            clockState: ClockState? = nil, stamped: Bool = false, uuid: EventUUID? = nil
        ) {
            self.uuid = uuid ?? EventUUID.derived(millis: acceptedAtMillis, salt: 0, queueID: id)
            self.id = id
            self.range = range
            self.acceptedAtMillis = acceptedAtMillis
            self.acceptedBoottimeMillis = acceptedBoottimeMillis
            self.boot = boot
            self.clockState = clockState
            self.stamped = stamped
        }
    }

    /// `[e1,e2,...]`, exactly the bytes to POST.
    public var body: [UInt8] = [UInt8(ascii: "[")]
    public var events: [Event] = []
    /// It holds `maxEvents`, or the next event queued would take it past `maxBytes`: it
    /// cannot get fuller by waiting.
    public var isFull = false
    /// The store's generation it was read in: a recovery of a damaged file starts a new one.
    public var generation = 0

    public init() {}

    public var isEmpty: Bool { events.isEmpty }
    public var count: Int { events.count }
    public var lastID: Int64? { events.last?.id }
}

/// Reads the queue in order, a bounded batch at a time, on a connection of its own.
///
/// WAL lets it read while the writer commits. It never loads the queue: each read walks the
/// segments from the first one holding an id above the cursor, and stops at the event or
/// byte limit.
package final class QueueReader {
    private let db: SQLiteConnection
    private var gaps: [Int64] = []

    package func confineToBlockingThreads() { db.confinedToBlockingThreads = true }

    package init(path: String) throws(StoreError) {
        db = try Database.open(path, .readOnly)
    }

    /// The oldest events with an id above `afterID`: at most `maxEvents`, and a body of at
    /// most `maxBytes` once each event has grown by `extraPerEvent` when sent (always at least
    /// one event, when there is one, whatever its size).
    package func readBatch(afterID: Int64 = 0, maxEvents: Int, maxBytes: Int, extraPerEvent: Int = 0) throws(SQLiteError) -> OutgoingBatch {
        // One snapshot: the mark, the gaps and the segments agree with each other.
        try db.execute("BEGIN")
        defer { try? db.rollbackIfNeeded() }
        let (mark, salt) =
            try db.queryRow("SELECT done_through, id_salt FROM counters WHERE id = 1") { ($0.int64(0), $0.int64(1)) } ?? (0, 0)
        let after = max(afterID, mark)
        // Gaps are rare (a 400's bisection leaves them); when there are any ahead, each
        // segment's own are looked up as it is read.
        let anyGaps = try db.queryRow("SELECT 1 FROM gaps WHERE id > ? LIMIT 1", [.integer(after)]) { _ in true } ?? false
        let gapRows = try db.statement("SELECT id FROM gaps WHERE id BETWEEN ? AND ? ORDER BY id")

        let stmt = try db.statement(
            """
            SELECT first_id, count, body, ends, stamped, accepted_at_ms, accepted_boottime_ms, boot, clock_state, ids
            FROM segments
            WHERE first_id >= coalesce((SELECT max(first_id) FROM segments WHERE first_id <= ?), 0)
            ORDER BY first_id
            """)
        try stmt.bind(after &+ 1, at: 1)
        defer { stmt.reset() }
        var batch = OutgoingBatch()
        var grown = 0
        segments: while try stmt.step() {
            let firstID = stmt.int64(0)
            let count = stmt.int(1)
            gaps.removeAll(keepingCapacity: true)
            if anyGaps {
                try gapRows.bind(firstID, at: 1)
                try gapRows.bind(firstID &+ Int64(count), at: 2)
                while try gapRows.step() { gaps.append(gapRows.int64(0)) }
                gapRows.reset()
            }
            var nextGap = 0
            let clockState = stmt.optionalInt64(8).flatMap(ClockState.init(code:))
            let (wall, boottime, boot) = (stmt.int64(5), stmt.int64(6), stmt.int64(7))
            let full = try stmt.withBytes(2) { text throws(SQLiteError) -> Bool in
                try stmt.withBytes(3) { ends throws(SQLiteError) -> Bool in
                    try stmt.withBytes(4) { stamped throws(SQLiteError) -> Bool in
                        try stmt.withBytes(9) { ids throws(SQLiteError) -> Bool in
                            guard let view = SegmentView(count: count, body: text, ends: ends, stamped: stamped, ids: ids) else {
                                throw SQLiteError.damagedSegment(firstID)
                            }
                            for index in 0..<count {
                                let id = firstID &+ Int64(index)
                                guard id > after else { continue }
                                guard batch.events.count < maxEvents else { return true }
                                while nextGap < gaps.count && gaps[nextGap] < id { nextGap += 1 }
                                if nextGap < gaps.count && gaps[nextGap] == id { continue }
                                guard let range = view.range(of: index) else { throw SQLiteError.damagedSegment(firstID) }
                                // "[" + events joined by "," + "]", each event as it is sent
                                let needed =
                                    batch.body.count + grown + extraPerEvent + (batch.events.isEmpty ? 0 : 1) + range.count + 1
                                guard batch.events.isEmpty || needed <= maxBytes else { return true }
                                if !batch.events.isEmpty { batch.body.append(UInt8(ascii: ",")) }
                                grown += extraPerEvent
                                let start = batch.body.count
                                batch.body.append(contentsOf: UnsafeRawBufferPointer(rebasing: text[range]))
                                batch.events.append(
                                    .init(
                                        id: id, range: start..<batch.body.count, acceptedAtMillis: wall,
                                        acceptedBoottimeMillis: boottime, boot: boot, clockState: clockState,
                                        stamped: view.isStamped(index),
                                        uuid: view.id(of: index) ?? EventUUID.derived(millis: wall, salt: salt, queueID: id)))
                            }
                            return false
                        }
                    }
                }
            }
            if full {
                batch.isFull = true
                break segments
            }
        }
        if batch.events.count >= maxEvents { batch.isFull = true }
        batch.body.append(UInt8(ascii: "]"))
        return batch
    }
}

extension SQLiteError {
    /// A segment whose columns do not agree: only a damaged file holds one.
    package static func damagedSegment(_ firstID: Int64) -> SQLiteError {
        SQLiteError(code: SQLITE_CORRUPT, message: "the queue's segment at id \(firstID) is damaged")
    }
}

@available(*, unavailable)
extension QueueReader: Sendable {}

/// The daemon's read side: the delivery reader and the metrics scrape's status, each run on
/// the ``BlockingPool`` with a connection confined to it.
package final class StoreReader: Sendable {
    private let path: String
    private let pool: BlockingPool
    /// The delivery loop's reader, opened on first use; one read at a time.
    private let queue = NIOLockedValueBox<QueueReaderBox?>(nil)
    /// Batches read so far (tests watch delivery read ahead).
    private let reads = NIOLockedValueBox(0)
    package var batchesRead: Int { reads.withLockedValue { $0 } }

    /// The host's clocks, for the status's `clock`.
    private let clock: HostClock
    /// The writer, told when a read finds the file damaged; its generation says when a
    /// recovery replaced the file, so the reader opens the new one.
    private let writer: StoreWriter?

    package init(path: String, pool: BlockingPool, clock: HostClock = .system, writer: StoreWriter? = nil) {
        self.path = path
        self.pool = pool
        self.clock = clock
        self.writer = writer
    }

    /// The next batch of the queue; see ``QueueReader/readBatch(afterID:maxEvents:maxBytes:extraPerEvent:)``.
    package func readBatch(afterID: Int64 = 0, maxEvents: Int, maxBytes: Int, extraPerEvent: Int = 0) async throws -> OutgoingBatch {
        defer { reads.withLockedValue { $0 += 1 } }
        return try await pool.run { [path, queue, writer] in
            try queue.withLockedValue { box in
                let generation = writer?.generation ?? 0
                do {
                    if box?.generation != generation {
                        box = nil
                        let reader = try QueueReader(path: path)
                        reader.confineToBlockingThreads()
                        box = QueueReaderBox(reader: reader, generation: generation)
                    }
                    var batch = try box!.reader.readBatch(
                        afterID: afterID, maxEvents: maxEvents, maxBytes: maxBytes, extraPerEvent: extraPerEvent)
                    batch.generation = generation
                    return batch
                } catch {
                    if StorageRecovery.isDamage(error) {
                        box = nil
                        writer?.reportDamage(error, generation: generation)
                    }
                    throw error
                }
            }
        }
    }

    /// The status report, as `trackq status` reads it, for a metrics scrape or `GET /status`.
    package func status(on eventLoop: any EventLoop, endpoint: String? = nil) -> EventLoopFuture<StatusReport> {
        pool.run(on: eventLoop) { [path, clock] in
            let db = try Database.open(path, .readOnly)
            db.confinedToBlockingThreads = true
            return try StatusReader.read(db, path: path, endpoint: endpoint, clock: clock)
        }
    }
}

/// `@unchecked Sendable`: the reader is only touched inside ``StoreReader``'s lock.
private struct QueueReaderBox: @unchecked Sendable {
    package var reader: QueueReader
    /// The writer's generation when it was opened.
    package var generation: Int
}
