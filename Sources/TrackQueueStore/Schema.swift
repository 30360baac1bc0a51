/// The database schema as an ordered list of migrations.
///
/// `PRAGMA user_version` records how many have been applied. A migration is only ever
/// appended, never edited or removed: edge hosts upgrade in place and their queues must
/// survive every upgrade. Nothing here erases or recreates data.
package enum Schema {
    package static let migrations: [String] = [
        // 1: the queue, dead letters, lifetime counters and the daemon's state record.
        """
        CREATE TABLE boots (
            id      INTEGER PRIMARY KEY,
            boot_id TEXT NOT NULL UNIQUE          -- /proc/sys/kernel/random/boot_id
        );
        CREATE TABLE queue (
            id                   INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
            body                 TEXT NOT NULL,                      -- normalized event JSON
            bytes                INTEGER NOT NULL,
            accepted_at_ms       INTEGER NOT NULL,   -- wall clock, ms since the Unix epoch
            accepted_boottime_ms INTEGER NOT NULL,   -- CLOCK_BOOTTIME at accept, ms
            boot                 INTEGER NOT NULL REFERENCES boots(id)
        );
        CREATE TABLE dead_letters (
            id             INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id       INTEGER NOT NULL,         -- its id in the queue
            body           TEXT NOT NULL,
            bytes          INTEGER NOT NULL,
            accepted_at_ms INTEGER NOT NULL,
            failed_at_ms   INTEGER NOT NULL,
            reason         TEXT NOT NULL,            -- 'rejected', 'expired', ...
            status         INTEGER,                  -- HTTP status, when there was one
            response       TEXT                      -- the API's answer body, truncated
        );
        CREATE TABLE counters (
            id             INTEGER PRIMARY KEY CHECK (id = 1),
            accepted       INTEGER NOT NULL DEFAULT 0,
            delivered      INTEGER NOT NULL DEFAULT 0,
            dead_lettered  INTEGER NOT NULL DEFAULT 0,
            rejected       INTEGER NOT NULL DEFAULT 0,
            pending_events INTEGER NOT NULL DEFAULT 0,   -- kept equal to count(queue)
            pending_bytes  INTEGER NOT NULL DEFAULT 0    -- kept equal to sum(queue.bytes)
        );
        INSERT INTO counters (id) VALUES (1);
        CREATE TABLE daemon_state (
            id                   INTEGER PRIMARY KEY CHECK (id = 1),
            pid                  INTEGER,
            version              TEXT,
            started_at_ms        INTEGER,
            stopped_at_ms        INTEGER,
            delivery_state       TEXT NOT NULL DEFAULT 'idle',
            last_attempt_at_ms   INTEGER,
            last_success_at_ms   INTEGER,
            last_status          INTEGER,
            last_error           TEXT,
            next_attempt_at_ms   INTEGER,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            alert_kind           TEXT,
            alert_status         INTEGER,
            alert_since_ms       INTEGER,
            alert_message        TEXT
        );
        INSERT INTO daemon_state (id) VALUES (1);
        """,
        // 2: dead letters are bounded (--max-dead-letters); the oldest dropped are counted.
        """
        ALTER TABLE counters ADD COLUMN dead_dropped INTEGER NOT NULL DEFAULT 0;
        """,
        // 3: the clock's truth. Each boot keeps its latest clock reading (at least once a
        // minute, and at each step of the wall clock) and its latest one while synchronized;
        // each event, the clock's state when it was accepted (ClockState.code; NULL before).
        """
        ALTER TABLE boots ADD COLUMN wall_ms INTEGER;             -- the latest reading: wall clock, ms
        ALTER TABLE boots ADD COLUMN boottime_ms INTEGER;         --   CLOCK_BOOTTIME then: the boot ran at least this long
        ALTER TABLE boots ADD COLUMN clock_state TEXT;            --   'synced', 'unknown' or 'wrong'
        ALTER TABLE boots ADD COLUMN synced_wall_ms INTEGER;      -- the latest reading while synced
        ALTER TABLE boots ADD COLUMN synced_boottime_ms INTEGER;
        ALTER TABLE queue ADD COLUMN clock_state INTEGER;
        """,
        // 4: whether trackq stamped the event's timestamp (1) or the app gave it (0; NULL
        // before): only a time trackq stamped is ever repaired.
        """
        ALTER TABLE queue ADD COLUMN stamped INTEGER;
        """,
        // 5: the queue a group commit at a time. A segment holds one submission's events as
        // the JSON array they are sent as, so that accepting them is one row and delivering
        // them one row's removal, not one of each per event. An event's id is its segment's
        // first id plus its index. Events leave in order: every id up to `done_through` has
        // left the queue; an event that left before an earlier one (a 400's bisection, a dead
        // letter) is a row of `gaps` until the mark passes it. Events queued before this
        // migration become segments of one event each; `queue` stays as a view for operators.
        """
        CREATE TABLE segments (
            first_id             INTEGER PRIMARY KEY,  -- the id of its first event; the others follow one by one
            count                INTEGER NOT NULL,     -- events
            body                 TEXT NOT NULL,        -- "[e1,e2,...]", each event's normalized JSON
            ends                 BLOB,                 -- where each event ends in body: 4 bytes each, little-endian; NULL for one event
            stamped              BLOB,                 -- a byte an event, 1 if trackq stamped its timestamp; NULL if none was
            bytes                INTEGER NOT NULL,     -- sum of the events' sizes
            accepted_at_ms       INTEGER NOT NULL,
            accepted_boottime_ms INTEGER NOT NULL,
            boot                 INTEGER NOT NULL REFERENCES boots(id),
            clock_state          INTEGER
        );
        CREATE TABLE gaps (
            id INTEGER PRIMARY KEY                     -- an event above done_through that has left the queue
        );
        ALTER TABLE counters ADD COLUMN last_id INTEGER NOT NULL DEFAULT 0;       -- the highest event id ever given
        ALTER TABLE counters ADD COLUMN done_through INTEGER NOT NULL DEFAULT 0;  -- every event up to it has left
        UPDATE counters SET
            last_id = max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0),
                          coalesce((SELECT max(id) FROM queue), 0)),
            done_through = coalesce((SELECT min(id) - 1 FROM queue),
                                    (SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0)
        WHERE id = 1;
        INSERT INTO segments (first_id, count, body, ends, stamped, bytes, accepted_at_ms, accepted_boottime_ms, boot, clock_state)
            SELECT id, 1, '[' || body || ']', NULL, CASE WHEN stamped = 1 THEN x'01' END, bytes,
                   accepted_at_ms, accepted_boottime_ms, boot, clock_state
            FROM queue ORDER BY id;
        DROP TABLE queue;
        CREATE VIEW queue (id, body, bytes, accepted_at_ms, accepted_boottime_ms, boot, clock_state, stamped) AS
            SELECT s.first_id + e.key, e.value, length(CAST(e.value AS BLOB)), s.accepted_at_ms, s.accepted_boottime_ms,
                   s.boot, s.clock_state, coalesce(hex(substr(s.stamped, e.key + 1, 1)) = '01', 0)
            FROM segments AS s, json_each(s.body) AS e
            WHERE s.first_id + e.key > (SELECT done_through FROM counters WHERE id = 1)
              AND s.first_id + e.key NOT IN (SELECT id FROM gaps);
        """,
        // 6: storage you can trust. Each time the daemon found its queue file damaged, moved
        // it aside and started a new one with what it could read, or set aside segments that
        // did not parse; `trackq status` shows the latest while its damaged file (or its
        // 'damaged' dead letters) are still there.
        """
        CREATE TABLE storage_recoveries (
            id             INTEGER PRIMARY KEY,
            at_ms          INTEGER NOT NULL,
            reason         TEXT NOT NULL,     -- what was found: SQLite's error, or the check's
            damaged_file   TEXT,              -- where the damaged file was moved, unchanged; NULL if it was not
            salvaged       INTEGER NOT NULL,  -- events read back into the queue
            damaged_events INTEGER NOT NULL,  -- events kept as dead letters with reason 'damaged'
            lost           INTEGER,           -- events the file held that could not be read; NULL: unknown
            failure        TEXT               -- why nothing could be salvaged, if so
        );
        """,
        // 7: ids for exactly-once at the API. Each event's UUIDv7 (16 bytes, big-endian) is
        // stored with it when it is accepted, so every retry, bisection, restart and requeue
        // sends the same one; a segment stored before this has none, and its events' ids are
        // derived from the salt and their queue ids (the same at every read).
        """
        ALTER TABLE segments ADD COLUMN ids BLOB;           -- 16 bytes an event; NULL: derived
        ALTER TABLE dead_letters ADD COLUMN event_uuid BLOB; -- the event's 16 bytes; NULL: none was kept
        ALTER TABLE counters ADD COLUMN id_salt INTEGER NOT NULL DEFAULT 0;
        UPDATE counters SET id_salt = random() WHERE id = 1;
        """,
    ]

    /// Whether `db`'s tables and views have the columns the migrations give them: a flipped
    /// bit in `sqlite_master` (a column renamed, a table lost) is damage SQLite does not
    /// report, and every statement naming that column would fail for good.
    /// - Returns: what differs, or nil.
    package static func verify(_ db: SQLiteConnection) -> String? {
        func shape(_ db: SQLiteConnection) throws(SQLiteError) -> [String: [String]] {
            var names: [String] = []
            let tables = try db.statement("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")
            while try tables.step() { names.append(tables.text(0) ?? "") }
            tables.reset()
            var shape: [String: [String]] = [:]
            for name in names {
                let columns = try db.statement("SELECT name FROM pragma_table_info(?)")
                try columns.bind(name, at: 1)
                var found: [String] = []
                while try columns.step() { found.append(columns.text(0) ?? "") }
                columns.reset()
                shape[name] = found
            }
            return shape
        }
        do {
            let fresh = try SQLiteConnection(path: ":memory:")
            try migrate(fresh)
            let (want, have) = (try shape(fresh), try shape(db))
            for (table, columns) in want.sorted(by: { $0.key < $1.key }) where have[table] != columns {
                return "the schema is damaged: \(table) has columns \(have[table] ?? []), not \(columns)"
            }
            return nil
        } catch {
            return "the schema cannot be read: \(error)"
        }
    }

    /// Applies the migrations the database has not seen, each in its own transaction.
    package static func migrate(_ db: SQLiteConnection) throws(StoreError) {
        do {
            let applied = try Database.schemaVersion(db)
            try Database.checkNotNewer(applied)
            for (index, sql) in migrations.enumerated().dropFirst(applied) {
                try Database.transaction(db) {
                    try db.execute(sql)
                    try db.execute("PRAGMA user_version = \(index + 1)")
                }
            }
        } catch {
            throw StoreError(error)
        }
    }
}

/// Why the store could not do what was asked.
public enum StoreError: Error, Sendable, CustomStringConvertible {
    case sqlite(SQLiteError)
    /// The database was written by a newer trackq; this one will not touch it.
    case newerSchema(found: Int, known: Int)
    /// Another daemon holds the database.
    case locked(path: String, pid: Int32?)
    /// The store was stopped: nothing more is read or written through it.
    case closed
    /// A file the store needs is missing, unreadable, or not what it should be (a database
    /// that is not trackq's, a move during a recovery that failed): the message says which
    /// and what to do.
    case io(String)

    /// `error` as a store error: itself if it is one, wrapped otherwise.
    package init(_ error: any Error) {
        switch error {
        case let error as StoreError: self = error
        case let error as SQLiteError: self = .sqlite(error)
        default: self = .io("\(error)")
        }
    }

    public var description: String {
        switch self {
        case .sqlite(let e): return e.description
        case .newerSchema(let found, let known):
            return "the database has schema version \(found), newer than this trackq knows (\(known)); upgrade trackq"
        case .locked(let path, let pid):
            return "another trackq daemon is already using \(path)" + (pid.map { " (pid \($0))" } ?? "")
        case .closed: return "the store is closed (the daemon is stopping)"
        case .io(let message): return message
        }
    }
}
