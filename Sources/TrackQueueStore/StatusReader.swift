import CSQLite
import TrackQueueClock
import TrackQueueStatus
import TrackQueueSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a ``StatusReport`` from the database, read-only, whether the daemon runs or not.
///
/// Never blocks the daemon: a read-only connection in WAL mode takes no write lock, and
/// every query is a primary-key lookup or an index walk of one row (the queue's size lives in
/// the `counters` row), so it stays fast with millions of events pending.
public enum StatusReader {
    public static func read(database path: String, endpoint: String? = nil, clock: HostClock = .system) throws(StoreError) -> StatusReport {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == EACCES { throw .io(notReadable(path)) }
            throw .io("no database at \(path) (has the daemon ever run here? --database or TRACKQ_DATABASE name another)")
        }
        guard access(path, R_OK) == 0 else { throw .io(notReadable(path)) }
        do {
            // A recovery swaps the file by renames: a read that lands between them finds no
            // file for a moment; a reader that may not write the WAL's index can meet it half
            // changed. Try again, briefly.
            var tries = 0
            while true {
                do {
                    let db = try Database.open(path, .readOnly)
                    return try read(db, path: path, endpoint: endpoint, clock: clock)
                } catch .sqlite(let error) where (error.code & 0xff == SQLITE_CANTOPEN || error.isWALIndexBusy) && tries < 20 {
                    tries += 1
                    usleep(25_000)
                }
            }
        } catch  where StorageRecovery.isDamage(error) {
            throw .io(
                "the queue file \(path) is damaged (\(error)). The daemon moves it aside and keeps what it can read when it "
                    + "starts (systemctl restart trackq); trackq check --database \(path) says where the damage is")
        }
    }

    /// What to do when the caller may not read the database: it belongs to the daemon's user.
    package static func notReadable(_ path: String) -> String {
        "cannot read \(path): permission denied. The database belongs to the user the daemon runs as "
            + "(trackq for the system service); run `sudo trackq status`, or run it as that user"
    }

    /// The report from an open connection (the daemon's metrics scrape confines it to the
    /// blocking pool).
    package static func read(_ db: SQLiteConnection, path: String, endpoint: String?, clock: HostClock) throws(StoreError) -> StatusReport {
        // Past the counters and the state record, a read that meets damage still gives a
        // report: what it could read, with `storage` saying the file is damaged.
        var damage: String?
        func tolerating<T>(_ fallback: T, _ body: () throws -> T) throws -> T {
            do {
                return try body()
            } catch  where StorageRecovery.isDamage(error) {
                damage = damage ?? "\(error)"
                return fallback
            }
        }
        do {
            let running = DatabaseLock.isHeld(database: path)
            let counters = try QueueCounters.read(db)
            let oldest = try tolerating(nil) {
                try db.queryRow("SELECT accepted_at_ms FROM segments ORDER BY first_id LIMIT 1") { $0.int64(0) }
            }
            let deadLetters = try tolerating(0) { try db.queryRow("SELECT count(*) FROM dead_letters") { $0.int64(0) } ?? 0 }
            let owner = try db.queryRow("SELECT pid, started_at_ms FROM daemon_state WHERE id = 1") {
                ($0.optionalInt64(0), $0.optionalInt64(1))
            }
            guard let (pid, startedAt) = owner, let record = try DeliveryRecord.read(db) else {
                throw StoreError.io("\(path) has no state record")
            }
            let daemon = StatusReport.DaemonInfo(
                running: running, pid: running ? pid.map { Int32($0) } : nil, startedAtMillis: startedAt)
            let delivery = StatusReport.DeliveryInfo(
                state: record.state, lastAttemptAtMillis: record.lastAttemptAtMillis,
                lastSuccessAtMillis: record.lastSuccessAtMillis, lastStatus: record.lastStatus,
                lastError: record.lastError, nextAttemptAtMillis: record.nextAttemptAtMillis,
                consecutiveFailures: record.consecutiveFailures)
            let alert = record.alertKind.map { kind in
                StatusReport.AlertInfo(
                    kind: kind, status: record.alertStatus ?? 0,
                    sinceMillis: record.alertSinceMillis ?? 0, message: record.alertMessage ?? "")
            }
            let clockRecord: StatusReport.ClockInfo? = try tolerating(nil) {
                try Database.schemaVersion(db) >= 3 ? clockInfo(db, clock: clock) : nil
            }
            var storage = try tolerating(StatusReport.StorageInfo.ok) { try storageInfo(db, path: path) }
            if let damage, storage.state == .ok {
                storage = .init(
                    state: .damaged, salvaged: 0, lost: nil, damagedFile: path,
                    reason: "reading it: \(damage) (the daemon recovers it when it reads there, or at its next start)")
            }
            return StatusReport(
                version: TrackQueue.version,
                daemon: daemon,
                queue: .init(pending: counters.pendingEvents, pendingBytes: counters.pendingBytes, oldestPendingAtMillis: oldest),
                delivery: delivery,
                totals: .init(
                    accepted: counters.accepted, delivered: counters.delivered,
                    deadLettered: counters.deadLettered, rejected: counters.rejected,
                    deadLettersDropped: counters.deadDropped),
                deadLetters: deadLetters,
                alert: alert,
                database: .init(path: path, sizeBytes: fileSize(path) + fileSize(path + "-wal")),
                endpoint: endpoint,
                clock: clockRecord,
                storage: storage)
        } catch {
            throw StoreError(error)
        }
    }

    /// This boot's clock as the daemon last recorded it, or as `clock` reads now when the
    /// daemon has recorded nothing in this boot.
    package static func clockInfo(_ db: SQLiteConnection, clock: HostClock) throws(SQLiteError) -> StatusReport.ClockInfo {
        let history = try Database.clockHistory(excludingBootID: clock.storedBootID, in: db)
        let recorded = try db.queryRow(
            "SELECT wall_ms, clock_state FROM boots WHERE boot_id = ? AND wall_ms IS NOT NULL", [.text(clock.storedBootID)]
        ) { row in
            // The file is not trusted: a state it does not name is unknown.
            (row.int64(0), row.text(1).flatMap(ClockState.init(rawValue:)) ?? .unknown)
        }
        let (readAt, state): (Int64, ClockState)
        if let recorded {
            (readAt, state) = recorded
        } else {
            let reading = clock.read()
            (readAt, state) = (reading.wallMillis, history.judge.state(of: reading))
        }
        return .init(
            state: state, readAtMillis: readAt, floorMillis: history.judge.floorMillis, bootIDKnown: clock.bootID != nil)
    }

    /// The queue file's trust: damaged now (the cheap checks of a start), recovered while
    /// the last recovery's damaged file or its `damaged` dead letters are still there, else ok.
    package static func storageInfo(_ db: SQLiteConnection, path: String) throws(SQLiteError) -> StatusReport.StorageInfo {
        if let problem = StorageRecovery.checkFile(path) {
            return .init(state: .damaged, salvaged: 0, lost: nil, damagedFile: path, reason: problem)
        }
        guard let record = try StorageRecovery.latest(in: db) else { return .ok }
        let damagedDeadLetters =
            try db.queryRow("SELECT count(*) FROM dead_letters WHERE reason = ?", [.text(DeadLetterReason.damaged.rawValue)]) {
                $0.int64(0)
            } ?? 0
        let fileKept = record.damagedFile.map { access($0, F_OK) == 0 } ?? false
        guard fileKept || damagedDeadLetters > 0 else { return .ok }
        return .init(
            state: record.failure != nil && fileKept ? .damaged : .recovered, salvaged: record.salvaged, lost: record.lost,
            damagedFile: fileKept ? record.damagedFile : nil, damagedEvents: record.damagedEvents,
            sinceMillis: record.atMillis, reason: record.failure.map { "\(record.reason); salvage failed: \($0)" } ?? record.reason)
    }

    private static func fileSize(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }
}
