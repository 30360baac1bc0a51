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
    public static func read(database path: String, endpoint: String? = nil) throws(StoreError) -> StatusReport {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw .io("no database at \(path) (has the daemon ever run here? --database or TRACKQ_DATABASE name another)")
        }
        do {
            let db = try SQLiteConnection(path: path, readOnly: true)
            try db.execute("PRAGMA busy_timeout = 2000")
            let version = try db.queryRow("PRAGMA user_version") { $0.int(0) } ?? 0
            guard version >= 1 else { throw StoreError.io("\(path) is not a trackq database") }

            let running = DatabaseLock.isHeld(database: path)
            let counters = try db.queryRow(
                "SELECT accepted, delivered, dead_lettered, rejected, pending_events, pending_bytes FROM counters WHERE id = 1"
            ) { row in
                (StatusReport.Totals(accepted: row.int64(0), delivered: row.int64(1), deadLettered: row.int64(2), rejected: row.int64(3)),
                 row.int64(4), row.int64(5))
            } ?? (StatusReport.Totals(accepted: 0, delivered: 0, deadLettered: 0, rejected: 0), 0, 0)
            let oldest = try db.queryRow("SELECT accepted_at_ms FROM queue ORDER BY id LIMIT 1") { $0.int64(0) }
            let deadLetters = try db.queryRow("SELECT count(*) FROM dead_letters") { $0.int64(0) } ?? 0
            let state = try db.queryRow(
                """
                SELECT pid, started_at_ms, delivery_state, last_attempt_at_ms, last_success_at_ms, last_status,
                  last_error, next_attempt_at_ms, consecutive_failures, alert_kind, alert_status, alert_since_ms, alert_message
                FROM daemon_state WHERE id = 1
                """
            ) { row -> (StatusReport.DaemonInfo, StatusReport.DeliveryInfo, StatusReport.AlertInfo?) in
                let daemon = StatusReport.DaemonInfo(
                    running: running, pid: running ? row.optionalInt64(0).map { Int32($0) } : nil,
                    startedAtMillis: row.optionalInt64(1))
                let delivery = StatusReport.DeliveryInfo(
                    state: row.text(2) ?? "idle", lastAttemptAtMillis: row.optionalInt64(3),
                    lastSuccessAtMillis: row.optionalInt64(4), lastStatus: row.optionalInt64(5).map(Int.init),
                    lastError: row.text(6), nextAttemptAtMillis: row.optionalInt64(7), consecutiveFailures: row.int(8))
                let alert = row.text(9).map { kind in
                    StatusReport.AlertInfo(kind: kind, status: row.optionalInt64(10).map(Int.init) ?? 0,
                                           sinceMillis: row.optionalInt64(11) ?? 0, message: row.text(12) ?? "")
                }
                return (daemon, delivery, alert)
            }
            guard let (daemon, delivery, alert) = state else { throw StoreError.io("\(path) has no state record") }
            return StatusReport(
                version: TrackQueue.version,
                daemon: daemon,
                queue: .init(pending: counters.1, pendingBytes: counters.2, oldestPendingAtMillis: oldest),
                delivery: delivery,
                totals: counters.0,
                deadLetters: deadLetters,
                alert: alert,
                database: .init(path: path, sizeBytes: fileSize(path) + fileSize(path + "-wal")),
                endpoint: endpoint)
        } catch {
            throw StoreError(error)
        }
    }

    private static func fileSize(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }
}
