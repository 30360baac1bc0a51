/// Opening a trackq database, and the statements every connection shares.
///
/// The one place that knows the busy timeout, how a database is opened read-only or
/// read-write, how its schema version is checked, and how the `boots` and `counters` rows
/// are written, whoever writes them (the daemon's writer or `trackq dead requeue`).
package enum Database {
    /// How long a connection waits for another one's lock before it gives up, in ms.
    package static let busyTimeoutMillis = 5000

    /// How a connection is opened.
    package enum Access {
        /// Read-only: `trackq status`, the delivery reader, metrics scrapes.
        case readOnly
        /// Read-write on a database that must already exist: the `trackq dead` commands.
        case readWriteExisting
    }

    /// Opens an existing trackq database; never creates one, never migrates one.
    ///
    /// Throws when the file is not a trackq database or was written by a newer trackq.
    package static func open(_ path: String, _ access: Access) throws(StoreError) -> SQLiteConnection {
        do {
            let db = try SQLiteConnection(path: path, readOnly: access == .readOnly)
            try db.execute("PRAGMA busy_timeout = \(busyTimeoutMillis)")
            let version = try schemaVersion(db)
            guard version >= 1 else { throw StoreError.io("\(path) is not a trackq database (or is empty)") }
            try checkNotNewer(version)
            return db
        } catch let error as SQLiteError where access == .readOnly && error.isHotJournal {
            throw StoreError.io(
                "the queue file \(path) holds a write that a crash or power cut interrupted; a reader cannot undo it, "
                    + "the daemon does when it starts (systemctl restart trackq), and then this works")
        } catch {
            throw StoreError(error)
        }
    }

    /// `PRAGMA user_version`: how many migrations the database has seen.
    package static func schemaVersion(_ db: SQLiteConnection) throws(SQLiteError) -> Int {
        try db.queryRow("PRAGMA user_version") { $0.int(0) } ?? 0
    }

    /// Refuses a database written by a newer trackq.
    package static func checkNotNewer(_ version: Int) throws(StoreError) {
        guard version <= Schema.migrations.count else {
            throw .newerSchema(found: version, known: Schema.migrations.count)
        }
    }

    /// The `boots` row of `bootID`, created on first use.
    package static func bootRow(_ bootID: String, in db: SQLiteConnection) throws(SQLiteError) -> Int64 {
        try db.run("INSERT OR IGNORE INTO boots (boot_id) VALUES (?)", [.text(bootID)])
        return try db.queryRow("SELECT id FROM boots WHERE boot_id = ?", [.text(bootID)]) { $0.int64(0) } ?? 0
    }

    /// Adds `delta` to the `counters` row; call inside a transaction.
    package static func addToCounters(_ delta: QueueCounters, in db: SQLiteConnection) throws(SQLiteError) {
        guard delta != QueueCounters() else { return }
        try db.run(
            """
            UPDATE counters SET accepted = accepted + ?, delivered = delivered + ?,
              dead_lettered = dead_lettered + ?, rejected = rejected + ?,
              pending_events = pending_events + ?, pending_bytes = pending_bytes + ?, dead_dropped = dead_dropped + ?,
              last_id = last_id + ?, done_through = done_through + ?
            WHERE id = 1
            """,
            [
                .integer(delta.accepted), .integer(delta.delivered), .integer(delta.deadLettered),
                .integer(delta.rejected), .integer(delta.pendingEvents), .integer(delta.pendingBytes),
                .integer(delta.deadDropped), .integer(delta.lastID), .integer(delta.doneThrough),
            ])
    }

    /// Runs `body` in one `BEGIN IMMEDIATE … COMMIT`, rolling back on any error. Both are
    /// cached statements: a group commit does not parse SQL.
    package static func transaction<T>(_ db: SQLiteConnection, _ body: () throws -> T) throws -> T {
        do {
            try db.run("BEGIN IMMEDIATE")
            let result = try body()
            try db.run("COMMIT")
            return result
        } catch {
            do {
                try db.rollbackIfNeeded()
            } catch let rollback {
                throw StoreError.io("\(error); the rollback failed too (\(rollback))")
            }
            throw error
        }
    }
}
