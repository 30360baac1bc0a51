import CSQLite
import TrackQueueConfig
import TrackQueueEvent
import TrackQueueSupport
import TrackQueueSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Storage you can trust on edge hardware: noticing that the queue file is damaged, moving
/// it aside unchanged, and starting a new queue with every event that could still be read.
///
/// The steps, each safe to cut by a power loss at any point:
/// 1. a new database is built beside the old one as `<database>.recovering` from what
///    ``QueueSalvage`` reads out of the damaged file (which is only read), then renamed
///    `<database>.recovered` once it is whole;
/// 2. the damaged file moves to `<database>.damaged-<UTC time>` (its `-wal` with it), and
///    `<database>.recovered` becomes `<database>`.
/// A start that finds `<database>.recovered` finishes step 2 (``resumeInterrupted(_:)``);
/// one that finds `<database>.recovering` deletes it and starts over.
package enum StorageRecovery {
    /// One recovery, as `storage_recoveries` keeps it.
    package struct Record: Sendable, Equatable {
        package var atMillis: Int64
        /// What was found: SQLite's error, or the start's check.
        package var reason: String
        /// Where the damaged file was moved, unchanged (nil: it stayed, only segments were set aside).
        package var damagedFile: String?
        package var salvaged: Int64 = 0
        package var damagedEvents: Int64 = 0
        /// Events the file held that could not be read; nil when its counters were unreadable too.
        package var lost: Int64?
        /// Why nothing could be salvaged (the new queue then starts empty), if so.
        package var failure: String?

        /// Creates a value with every property given (or its default).
        package init(
            atMillis: Int64, reason: String, damagedFile: String? = nil, salvaged: Int64 = 0, damagedEvents: Int64 = 0,
            lost: Int64? = nil, failure: String? = nil
        ) {
            self.atMillis = atMillis
            self.reason = reason
            self.damagedFile = damagedFile
            self.salvaged = salvaged
            self.damagedEvents = damagedEvents
            self.lost = lost
            self.failure = failure
        }
    }

    package static func insert(_ r: Record, into db: SQLiteConnection) throws(SQLiteError) {
        try db.run(
            """
            INSERT INTO storage_recoveries (at_ms, reason, damaged_file, salvaged, damaged_events, lost, failure)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .integer(r.atMillis), .text(r.reason), r.damagedFile.map { .text($0) } ?? .null, .integer(r.salvaged),
                .integer(r.damagedEvents), r.lost.map { .integer($0) } ?? .null, r.failure.map { .text($0) } ?? .null,
            ])
    }

    /// The latest recovery recorded in `db` (schema 6 on), or nil.
    package static func latest(in db: SQLiteConnection) throws(SQLiteError) -> Record? {
        guard try Database.schemaVersion(db) >= 6 else { return nil }
        return try db.queryRow(
            """
            SELECT at_ms, reason, damaged_file, salvaged, damaged_events, lost, failure
            FROM storage_recoveries ORDER BY id DESC LIMIT 1
            """
        ) { row in
            Record(
                atMillis: row.int64(0), reason: row.text(1) ?? "", damagedFile: row.text(2), salvaged: row.int64(3),
                damagedEvents: row.int64(4), lost: row.optionalInt64(5), failure: row.text(6))
        }
    }

    // MARK: Noticing damage

    /// Whether `error` says the file is damaged (not merely busy, full or unwritable).
    package static func isDamage(_ error: any Error) -> Bool {
        switch error {
        case let e as SQLiteError: return [SQLITE_CORRUPT, SQLITE_NOTADB].contains(e.code & 0xff)
        case let e as StoreError:
            if case .sqlite(let inner) = e { return isDamage(inner) }
            return false
        default: return false
        }
    }

    /// Checks that need no SQLite and cost one read of the header: that the file is a
    /// database, and that it is as long as its header says (a file cut short by a failing
    /// disk reads as zeros past its end, which SQLite finds only when it gets there).
    /// - Returns: what is wrong, or nil.
    package static func checkFile(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0, info.st_size > 0 else { return nil }  // none yet: a new queue
        // The header alone first: the WAL is read only for a file shorter than its header says.
        guard let bytes = SQLiteFileImage.Header.read(path) else { return nil }  // unreadable: SQLite says why
        guard let header = SQLiteFileImage.Header(bytes) else {
            return "the file is not a database (its header is not SQLite's)"
        }
        guard header.countedPages > 0, Int(info.st_size) / header.pageSize < header.countedPages,
            let image = try? SQLiteFileImage(path: path)
        else { return nil }
        defer { image.close() }
        let missing = image.missingPages
        if missing > 0 {
            return "the file is shorter than its header says: \(missing) of its pages are missing"
        }
        return nil
    }

    /// How long a start spends on SQLite's `quick_check` at most: it reads every page, so a
    /// large queue is checked only in part (damage past that is found when it is read).
    package static let quickCheckBudgetNanos: Int64 = 1_000_000_000

    /// SQLite's `PRAGMA quick_check`, stopped after `budgetNanos`.
    /// - Returns: what it found wrong (nil: sound, or not found in time), and whether it
    ///   finished within its budget.
    package static func quickCheck(_ db: SQLiteConnection, budgetNanos: Int64 = quickCheckBudgetNanos) -> (
        problem: String?, finished: Bool
    ) {
        do {
            let problems = try db.withTimeLimit(nanoseconds: budgetNanos) { () throws(SQLiteError) -> [String] in
                let stmt = try db.statement("PRAGMA quick_check(5)")
                defer { stmt.reset() }
                var found: [String] = []
                while try stmt.step() { found.append(stmt.text(0) ?? "") }
                return found
            }
            guard problems != ["ok"] else { return (nil, true) }
            return ("quick_check: " + problems.joined(separator: "\n").split(separator: "\n").joined(separator: "; "), true)
        } catch {
            return (isDamage(error) ? "quick_check: \(error)" : nil, error.code & 0xff != SQLITE_INTERRUPT)
        }
    }

    // MARK: Recovering

    /// Opens the queue at `path` for the daemon. A file found damaged (by ``checkFile(_:)``,
    /// by SQLite while opening it, or by ``Schema/verify(_:)``) is recovered first. SQLite's
    /// `quick_check`, which reads every page, runs after the start instead
    /// (``StoreWriter/checkInBackground()``), so a large queue does not delay it.
    /// - Returns: the store, and the recovery if there was one.
    package static func openStore(
        path: String, durability: Durability, bootID: String, nowMillis: Int64
    ) throws(StoreError) -> (QueueStore, Record?) {
        try resumeInterrupted(path)
        var found = checkFile(path)
        if found == nil {
            do {
                let store = try QueueStore(path: path, durability: durability, bootID: bootID)
                guard let problem = Schema.verify(store.db) else { return (store, nil) }
                found = problem
            } catch  where isDamage(error) {
                found = "\(error)"
            }
        }
        let record = try recover(path, reason: found ?? "damaged", nowMillis: nowMillis)
        return (try QueueStore(path: path, durability: durability, bootID: bootID), record)
    }

    /// One line for the log and systemd: what was found, what was kept, what to do.
    package static func describe(_ r: Record) -> String {
        var text = "storage: the queue file was damaged (\(Printable.oneLine(r.reason, limit: 200)))"
        if let failure = r.failure {
            text += "; nothing could be salvaged (\(Printable.oneLine(failure, limit: 200))); a new queue was started"
        } else {
            text += "; a new queue holds the \(r.salvaged) events that could be read"
            if r.damagedEvents > 0 { text += ", \(r.damagedEvents) more are dead letters with reason 'damaged'" }
            text += r.lost.map { "; \($0) lost" } ?? "; how many were lost is unknown"
        }
        if let file = r.damagedFile { text += "; the damaged file is kept as \(file): remove or archive it to clear this" }
        return text
    }

    /// Moves the damaged database at `path` aside and puts in its place a new one holding
    /// what could be read. The caller has closed every connection it had to it.
    package static func recover(_ path: String, reason: String, nowMillis: Int64) throws(StoreError) -> Record {
        let building = path + ".recovering"
        let recovered = path + ".recovered"
        removeDatabaseFiles(building)
        var record = Record(atMillis: nowMillis, reason: reason, damagedFile: damagedName(for: path, atMillis: nowMillis))
        do {
            try build(building) { db in record = try QueueSalvage.salvage(from: path, into: db, record: record) }
        } catch {
            // Nothing salvaged, most often for want of room for a second copy: start an empty
            // queue so apps are served, and keep the damaged file whole (state `damaged`).
            removeDatabaseFiles(building)
            record.failure = "\(error)"
            record.lost = nil
            do {
                try build(building) { db in try insert(record, into: db) }
            } catch {
                removeDatabaseFiles(building)
                throw .io("cannot start a new queue beside the damaged one: \(error)")
            }
        }
        guard rename(building, recovered) == 0 else {
            let why = errnoDescription()
            removeDatabaseFiles(building)
            throw .io("cannot rename \(building): \(why)")
        }
        syncDirectory(of: path)
        try resumeInterrupted(path)
        return record
    }

    /// Finishes a recovery cut short after its new database was whole (see the type's
    /// steps); deletes one cut short before. Safe to call at every start.
    package static func resumeInterrupted(_ path: String) throws(StoreError) {
        removeDatabaseFiles(path + ".recovering")
        let recovered = path + ".recovered"
        guard access(recovered, F_OK) == 0 else { return }
        let target: String
        do {
            let db = try SQLiteConnection(path: recovered, readOnly: true)
            guard let record = try latest(in: db), let damaged = record.damagedFile else {
                throw SQLiteError(code: SQLITE_CORRUPT, message: "it records no damaged file")
            }
            target = damaged
        } catch {
            throw .io("cannot finish the recovery of \(path): \(recovered): \(error); move it aside to start anew")
        }
        if access(path, F_OK) == 0 && access(target, F_OK) != 0 {
            guard rename(path, target) == 0 else { throw .io("cannot move \(path) to \(target): \(errnoDescription())") }
        }
        if access(path + "-wal", F_OK) == 0 && access(target + "-wal", F_OK) != 0 {
            guard rename(path + "-wal", target + "-wal") == 0 else {
                throw .io("cannot move \(path)-wal to \(target)-wal: \(errnoDescription())")
            }
        }
        unlink(path + "-wal")  // a WAL of the damaged file's that a second cut left behind
        unlink(path + "-shm")
        guard rename(recovered, path) == 0 else { throw .io("cannot rename \(recovered): \(errnoDescription())") }
        syncDirectory(of: path)
    }

    /// Makes a new database at `path`, migrated, and fills it with `body`; closed on return.
    /// Left in rollback-journal mode: reading it leaves no -wal or -shm behind, and the daemon
    /// puts it in WAL mode when it opens it.
    private static func build(_ path: String, _ body: (SQLiteConnection) throws -> Void) throws {
        let db = try SQLiteConnection(path: path)
        try db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        try db.execute("PRAGMA synchronous = FULL")
        try Schema.migrate(db)
        try body(db)
    }

    /// `<database>.damaged-<UTC time>`, one that does not exist yet.
    package static func damagedName(for path: String, atMillis: Int64) -> String {
        // 2026-11-27T05:00:00.123Z → 20261127T050000Z: no colons, which some tools split on.
        let stamp = RFC3339.format(millis: atMillis).filter { $0 != "-" && $0 != ":" }
        let base = path + ".damaged-" + stamp.prefix(15) + "Z"
        var name = base
        var n = 1
        while access(name, F_OK) == 0 || access(name + "-wal", F_OK) == 0 {
            n += 1
            name = base + "-\(n)"
        }
        return name
    }

    private static func removeDatabaseFiles(_ path: String) {
        for suffix in ["", "-journal", "-wal", "-shm"] { unlink(path + suffix) }
    }

    /// fsync of the directory holding `path`: its renames survive a power cut.
    private static func syncDirectory(of path: String) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let fd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        _ = close(fd)
    }
}
