import CSQLite
import TrackQueueClock
import TrackQueueConfig

/// Lifetime counters and the size of the queue, as kept in the `counters` row.
public struct QueueCounters: Sendable, Equatable {
    public var accepted: Int64 = 0
    public var delivered: Int64 = 0
    public var deadLettered: Int64 = 0
    public var rejected: Int64 = 0
    public var pendingEvents: Int64 = 0
    public var pendingBytes: Int64 = 0
    /// Dead letters dropped, oldest first, to keep within `--max-dead-letters`.
    public var deadDropped: Int64 = 0
    /// The highest event id ever given (ids are never reused).
    public var lastID: Int64 = 0
    /// Every event with an id up to this one has left the queue (see ``QueueStore/finish(_:delta:)``).
    public var doneThrough: Int64 = 0

    public init() {}

    package mutating func add(_ delta: QueueCounters) {
        accepted += delta.accepted
        delivered += delta.delivered
        deadLettered += delta.deadLettered
        rejected += delta.rejected
        pendingEvents += delta.pendingEvents
        pendingBytes += delta.pendingBytes
        deadDropped += delta.deadDropped
        lastID &+= delta.lastID
        doneThrough &+= delta.doneThrough
    }

    /// The `counters` row, from any connection (the writer's, or `trackq status`'s).
    package static func read(_ db: SQLiteConnection) throws(SQLiteError) -> QueueCounters {
        try db.queryRow(
            """
            SELECT accepted, delivered, dead_lettered, rejected, pending_events, pending_bytes, dead_dropped, last_id,
              done_through
            FROM counters WHERE id = 1
            """
        ) { row in
            var c = QueueCounters()
            c.accepted = row.int64(0)
            c.delivered = row.int64(1)
            c.deadLettered = row.int64(2)
            c.rejected = row.int64(3)
            c.pendingEvents = row.int64(4)
            c.pendingBytes = row.int64(5)
            c.deadDropped = row.int64(6)
            c.lastID = row.int64(7)
            c.doneThrough = row.int64(8)
            return c
        } ?? QueueCounters()
    }
}

/// The write side of the database: the one connection that changes it.
///
/// Owned by the ``StoreWriter`` thread; every method runs there. Reads for delivery,
/// `trackq status` and the tests use their own read-only connections, which WAL lets run
/// beside this one without blocking it.
package final class QueueStore {
    package let db: SQLiteConnection
    /// Our row in `boots`, for this boot of the machine; nil until it could be written (the
    /// daemon starts on a full disk too). ``append(_:maxQueueBytes:)`` tries again.
    package private(set) var bootRow: Int64?
    package let bootID: String
    /// The counters as of the last commit; refreshed from the database after a rollback.
    package private(set) var counters = QueueCounters()

    /// The segment being built, in buffers kept from one commit to the next.
    package var segment = SegmentBuilder()

    /// Inserts ``segment`` as the queue's next segment, its events given the next ids;
    /// call inside ``transaction(_:)``.
    /// - Returns: the id of its first event.
    @discardableResult
    package func insertSegment(
        acceptedAtMillis: Int64, boottimeMillis: Int64, boot: Int64, clockState: ClockState, delta: inout QueueCounters
    ) throws(SQLiteError) -> Int64 {
        precondition(segment.count > 0, "an empty segment")
        // Counters come from the file: arithmetic on them wraps rather than traps.
        let firstID = counters.lastID &+ delta.lastID &+ 1
        let stmt = try db.statement(
            """
            INSERT INTO segments (first_id, count, body, ends, stamped, bytes, accepted_at_ms, accepted_boottime_ms, boot, clock_state, ids)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        defer { stmt.reset() }
        try stmt.bind(firstID, at: 1)
        try stmt.bind(segment.count, at: 2)
        try stmt.bind(segment.bytes, at: 6)
        try stmt.bind(acceptedAtMillis, at: 7)
        try stmt.bind(boottimeMillis, at: 8)
        try stmt.bind(boot, at: 9)
        try stmt.bind(clockState.code, at: 10)
        try segment.withColumns { body, ends, stamped, ids throws(SQLiteError) in
            // Bound without a copy: valid only until the closure returns.
            try stmt.bindText(body, at: 3)
            if let ends { try stmt.bindBlob(ends, at: 4) }
            if let stamped { try stmt.bindBlob(stamped, at: 5) }
            try stmt.bindBlob(ids, at: 11)
            _ = try stmt.step()
        }
        delta.lastID += Int64(segment.count)
        delta.accepted += Int64(segment.count)
        delta.pendingEvents += Int64(segment.count)
        delta.pendingBytes += Int64(segment.bytes)
        return firstID
    }

    /// The most the WAL keeps between checkpoints and across restarts: a reserve of space
    /// the next start and the first deliveries write into, however full the disk is.
    package static let walReserveBytes = 8 << 20

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// A database that exists opens on a full disk too: only writing this boot's row may
    /// fail then, and is tried again at the first append.
    package init(path: String, durability: Durability, bootID: String) throws(StoreError) {
        self.bootID = bootID
        do {
            db = try SQLiteConnection(path: path)
            try db.execute("PRAGMA busy_timeout = \(Database.busyTimeoutMillis)")
            if try Database.schemaVersion(db) == 0 {
                // A new database gives space back as its queue drains (see `reclaimSpace`);
                // this must be set before the first table exists, and before WAL mode.
                try db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            }
            // WAL: readers never block the writer; FULL fsyncs the WAL at each commit so an
            // ack survives power loss, NORMAL only at checkpoints.
            let mode = try db.queryRow("PRAGMA journal_mode = WAL") { $0.text(0) } ?? nil
            guard mode?.lowercased() == "wal" else {
                throw StoreError.io(
                    "cannot put \(path) in WAL mode (journal_mode is \(mode ?? "unknown")); trackq needs it so that "
                        + "readers never block the writer")
            }
            db.persistWAL()
            try db.execute("PRAGMA journal_size_limit = \(Self.walReserveBytes)")
            // A WAL kept from the last run holds frames already in the main file; mark them
            // so, and the first write starts over at the WAL's beginning, in space it owns.
            try? db.execute("PRAGMA wal_checkpoint(RESTART)")
            try db.execute("PRAGMA synchronous = \(durability == .full ? "FULL" : "NORMAL")")
            try db.execute("PRAGMA foreign_keys = ON")
            // Debian's SQLite zeroes every freed page by default (SECURE_DELETE), which writes
            // each page of a delivered segment once more, to the WAL and then the file. FAST
            // zeroes deleted content only where the page is written anyway; freed overflow
            // pages keep their bytes until reused or given back (the file is the daemon's own,
            // mode 0600).
            try db.execute("PRAGMA secure_delete = FAST")
        } catch {
            throw StoreError(error)
        }
        try Schema.migrate(db)
        do {
            // Delivery's writes go into an ingest group's transaction under a savepoint, so
            // their pages are journaled for the savepoint; by default a journal past 64 KiB
            // (a delivered batch's deletes) spills to a temp file created and unlinked in the
            // commit an ack waits for. In memory, it is bounded by one transaction's pages.
            // Set after the migrations, whose statements may touch the whole queue.
            try db.execute("PRAGMA temp_store = MEMORY")
            bootRow = try? Database.bootRow(bootID, in: db)
            try refreshCounters()
        } catch {
            throw .sqlite(error)
        }
    }

    /// This boot's row, written now if the start could not.
    package func ensureBootRow() throws(SQLiteError) -> Int64 {
        if let bootRow { return bootRow }
        let row = try Database.bootRow(bootID, in: db)
        bootRow = row
        return row
    }

    /// Re-reads the counters row: after a rollback the in-memory copy may be ahead of the disk.
    package func refreshCounters() throws(SQLiteError) {
        counters = try QueueCounters.read(db)
    }

    // MARK: Transactions

    /// Runs `body` in one `BEGIN IMMEDIATE … COMMIT`; on any error rolls back, re-reads the
    /// counters and rethrows. `delta` collects counter changes that are written just before
    /// the commit and applied in memory only once it succeeded.
    package func transaction<T>(_ body: (inout QueueCounters) throws -> T) throws -> T {
        var delta = QueueCounters()
        do {
            let result = try Database.transaction(db) {
                // Holding the write lock, the row is the truth: `trackq dead requeue` may have
                // changed it from another process since our last commit.
                try refreshCounters()
                let result = try body(&delta)
                try Database.addToCounters(delta, in: db)
                return result
            }
            counters.add(delta)
            return result
        } catch {
            try? refreshCounters()
            throw error
        }
    }

    /// Runs `body` inside the open transaction as one part of it (`SAVEPOINT`): if it
    /// throws, its own changes are undone and the rest of the transaction goes on. Counter
    /// changes it makes in its `delta` are added to `delta` only if it succeeded.
    ///
    /// Throws the body's error, or, if the part could not be undone, an error that must end
    /// the whole transaction.
    package func part<T>(_ delta: inout QueueCounters, _ body: (inout QueueCounters) throws -> T) throws -> Result<T, any Error> {
        try db.run("SAVEPOINT part")
        var own = QueueCounters()
        do {
            let result = try body(&own)
            try db.run("RELEASE part")
            delta.add(own)
            return .success(result)
        } catch {
            do {
                try db.run("ROLLBACK TO part")
                try db.run("RELEASE part")
            } catch let undo {
                throw StoreError.io("\(error); undoing it failed too (\(undo))")
            }
            return .failure(error)
        }
    }

    // MARK: Queue

    /// Appends one normalized event to the end of the queue, a segment of its own; call
    /// inside ``transaction(_:)``.
    /// - Returns: its queue id.
    @discardableResult
    package func insertEvent(
        _ body: UnsafeRawBufferPointer, acceptedAtMillis: Int64, boottimeMillis: Int64, clockState: ClockState = .unknown,
        stamped: Bool = false, delta: inout QueueCounters
    ) throws(SQLiteError) -> Int64 {
        segment.reset()
        segment.append(body, stamped: stamped, acceptedAtMillis: acceptedAtMillis)
        return try insertSegment(
            acceptedAtMillis: acceptedAtMillis, boottimeMillis: boottimeMillis, boot: bootRow ?? 0, clockState: clockState,
            delta: &delta)
    }

    // MARK: Daemon state

    /// Records that this process now owns the database.
    package func recordStart(pid: Int32, version: String, atMillis: Int64) throws(SQLiteError) {
        try db.run(
            "UPDATE daemon_state SET pid = ?, version = ?, started_at_ms = ?, stopped_at_ms = NULL WHERE id = 1",
            [.integer(Int64(pid)), .text(version), .integer(atMillis)])
    }

    /// Records a clean stop.
    package func recordStop(atMillis: Int64) throws(SQLiteError) {
        try db.run("UPDATE daemon_state SET stopped_at_ms = ? WHERE id = 1", [.integer(atMillis)])
    }

    /// Gives free pages back to the file system once a quarter of the file is free (a long
    /// backlog drained), at most 8 MiB a call so a commit never waits long behind it, and
    /// checkpoints so the file really shrinks. Only a database created with incremental
    /// auto-vacuum can (every one this version creates).
    /// - Returns: whether there is more to give back.
    package func reclaimSpace() -> Bool {
        guard let free = (try? db.queryRow("PRAGMA freelist_count", [], { $0.int64(0) })) ?? nil, free >= 256,
            let pages = (try? db.queryRow("PRAGMA page_count", [], { $0.int64(0) })) ?? nil, free * 4 >= pages
        else { return false }
        guard (try? db.execute("PRAGMA incremental_vacuum(2048)")) != nil else { return false }
        try? db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return free > 2048
    }

    /// Checkpoints the WAL into the main file at a clean stop. The WAL is not truncated: up to
    /// ``walReserveBytes`` of it stay as the space the next start writes into.
    package func checkpoint() {
        try? db.execute("PRAGMA wal_checkpoint(RESTART)")
    }
}

@available(*, unavailable)
extension QueueStore: Sendable {}
