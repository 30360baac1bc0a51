import NIOConcurrencyHelpers
import NIOCore

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
        public var stamped = false
    }

    /// `[e1,e2,...]`, exactly the bytes to POST.
    public var body: [UInt8] = [UInt8(ascii: "[")]
    public var events: [Event] = []

    public init() {}

    public var isEmpty: Bool { events.isEmpty }
    public var count: Int { events.count }
    public var lastID: Int64? { events.last?.id }
}

/// Reads the queue in order, a bounded batch at a time, on a connection of its own.
///
/// WAL lets it read while the writer commits. It never loads the queue: each read is one
/// `id > ? ORDER BY id LIMIT ?` walk that stops at the event or byte limit.
final class QueueReader {
    private let db: SQLiteConnection

    func confineToBlockingThreads() { db.confinedToBlockingThreads = true }

    init(path: String) throws(StoreError) {
        db = try Database.open(path, .readOnly)
    }

    /// The oldest events with an id above `afterID`: at most `maxEvents`, and a body of at
    /// most `maxBytes` once each event has grown by `extraPerEvent` when sent (always at least
    /// one event, when there is one, whatever its size).
    func readBatch(afterID: Int64 = 0, maxEvents: Int, maxBytes: Int, extraPerEvent: Int = 0) throws(SQLiteError) -> OutgoingBatch {
        let stmt = try db.statement(
            """
            SELECT id, body, accepted_at_ms, accepted_boottime_ms, boot, clock_state, stamped
            FROM queue WHERE id > ? ORDER BY id LIMIT ?
            """)
        try stmt.bind(afterID, at: 1)
        try stmt.bind(maxEvents, at: 2)
        defer { stmt.reset() }
        var batch = OutgoingBatch()
        var grown = 0
        while try stmt.step() {
            let fits = stmt.withBytes(1) { text -> Bool in
                // "[" + events joined by "," + "]", each event as it is sent
                let needed = batch.body.count + grown + extraPerEvent + (batch.events.isEmpty ? 0 : 1) + text.count + 1
                guard batch.events.isEmpty || needed <= maxBytes else { return false }
                if !batch.events.isEmpty { batch.body.append(UInt8(ascii: ",")) }
                grown += extraPerEvent
                let start = batch.body.count
                batch.body.append(contentsOf: text)
                batch.events.append(
                    .init(
                        id: stmt.int64(0), range: start..<batch.body.count,
                        acceptedAtMillis: stmt.int64(2), acceptedBoottimeMillis: stmt.int64(3), boot: stmt.int64(4),
                        clockState: stmt.optionalInt64(5).flatMap(ClockState.init(code:)), stamped: stmt.int64(6) == 1))
                return true
            }
            if !fits { break }
        }
        batch.body.append(UInt8(ascii: "]"))
        return batch
    }
}

@available(*, unavailable)
extension QueueReader: Sendable {}

/// The daemon's read side: the delivery reader and the metrics scrape's status, each run on
/// the ``BlockingPool`` with a connection confined to it.
final class StoreReader: Sendable {
    private let path: String
    private let pool: BlockingPool
    /// The delivery loop's reader, opened on first use; one read at a time.
    private let queue = NIOLockedValueBox<QueueReaderBox?>(nil)
    /// Batches read so far (tests watch delivery read ahead).
    private let reads = NIOLockedValueBox(0)
    var batchesRead: Int { reads.withLockedValue { $0 } }

    /// The host's clocks, for the status's `clock`.
    private let clock: HostClock

    init(path: String, pool: BlockingPool, clock: HostClock = .system) {
        self.path = path
        self.pool = pool
        self.clock = clock
    }

    /// The next batch of the queue; see ``QueueReader/readBatch(afterID:maxEvents:maxBytes:extraPerEvent:)``.
    func readBatch(afterID: Int64 = 0, maxEvents: Int, maxBytes: Int, extraPerEvent: Int = 0) async throws -> OutgoingBatch {
        defer { reads.withLockedValue { $0 += 1 } }
        return try await pool.run { [path, queue] in
            try queue.withLockedValue { box in
                if box == nil {
                    let reader = try QueueReader(path: path)
                    reader.confineToBlockingThreads()
                    box = QueueReaderBox(reader: reader)
                }
                return try box!.reader.readBatch(
                    afterID: afterID, maxEvents: maxEvents, maxBytes: maxBytes, extraPerEvent: extraPerEvent)
            }
        }
    }

    /// The status report, as `trackq status` reads it, for a metrics scrape or `GET /status`.
    func status(on eventLoop: any EventLoop, endpoint: String? = nil) -> EventLoopFuture<StatusReport> {
        pool.run(on: eventLoop) { [path, clock] in
            let db = try Database.open(path, .readOnly)
            db.confinedToBlockingThreads = true
            return try StatusReader.read(db, path: path, endpoint: endpoint, clock: clock)
        }
    }
}

/// `@unchecked Sendable`: the reader is only touched inside ``StoreReader``'s lock.
private struct QueueReaderBox: @unchecked Sendable {
    var reader: QueueReader
}
