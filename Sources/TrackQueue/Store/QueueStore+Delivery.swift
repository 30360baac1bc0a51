/// What `trackq status` shows of delivery: the `daemon_state` row's delivery columns.
public struct DeliveryRecord: Sendable, Equatable {
    public var state: String = "idle"
    public var lastAttemptAtMillis: Int64?
    public var lastSuccessAtMillis: Int64?
    public var lastStatus: Int?
    public var lastError: String?
    public var nextAttemptAtMillis: Int64?
    public var consecutiveFailures = 0
    public var alertKind: String?
    public var alertStatus: Int?
    public var alertSinceMillis: Int64?
    public var alertMessage: String?

    public init() {}
}

/// Why an event left the queue without being delivered.
public enum DeadLetterReason: String, Sendable {
    /// The API refused it on its own (400, 413, 422).
    case rejected
    /// Older than `--max-event-age`.
    case expired
}

extension QueueStore {
    /// Removes delivered events from the queue, a run at a time; call inside ``transaction(_:)``.
    ///
    /// Each run is events that lie next to each other in a batch read in queue order (one
    /// range the API answered 2xx), so the queue holds nothing else between its first id and
    /// its last: later events get higher ids. One range `DELETE` removes the run. When the
    /// whole run is still there (a `count(*)` of the range says so) the batch's own sizes
    /// are counted; otherwise what the `DELETE` returns is, so events already gone are not
    /// counted twice. (`RETURNING` costs about 1 µs an event; the count, a fraction of that.)
    func removeDelivered(_ runs: [ArraySlice<OutgoingBatch.Event>], delta: inout QueueCounters) throws(SQLiteError) {
        for run in runs {
            guard let first = run.first?.id, let last = run.last?.id else { continue }
            let present =
                try db.queryRow(
                    "SELECT count(*) FROM queue WHERE id BETWEEN ? AND ?", [.integer(first), .integer(last)]
                ) { $0.int(0) } ?? 0
            if present == run.count {
                try db.run("DELETE FROM queue WHERE id BETWEEN ? AND ?", [.integer(first), .integer(last)])
                delta.delivered += Int64(run.count)
                delta.pendingEvents -= Int64(run.count)
                delta.pendingBytes -= Int64(run.reduce(0) { $0 + $1.range.count })
                continue
            }
            let stmt = try db.statement("DELETE FROM queue WHERE id BETWEEN ? AND ? RETURNING bytes")
            try stmt.bind(first, at: 1)
            try stmt.bind(last, at: 2)
            defer { stmt.reset() }
            while try stmt.step() {
                delta.delivered += 1
                delta.pendingEvents -= 1
                delta.pendingBytes -= stmt.int64(0)
            }
        }
    }

    /// Moves one event from the queue to the dead letters; call inside ``transaction(_:)``.
    func moveToDeadLetters(
        _ event: OutgoingBatch.Event, reason: DeadLetterReason, status: Int?, response: String?,
        failedAtMillis: Int64, delta: inout QueueCounters
    ) throws(SQLiteError) {
        try db.run(
            """
            INSERT INTO dead_letters (event_id, body, bytes, accepted_at_ms, failed_at_ms, reason, status, response)
            SELECT id, body, bytes, accepted_at_ms, ?, ?, ?, ? FROM queue WHERE id = ?
            """,
            [
                .integer(failedAtMillis), .text(reason.rawValue), status.map { .integer(Int64($0)) } ?? .null,
                response.map { .text(String($0.prefix(Self.maxStoredAnswer))) } ?? .null, .integer(event.id),
            ])
        guard db.changes == 1 else { return }
        try db.run("DELETE FROM queue WHERE id = ?", [.integer(event.id)])
        delta.deadLettered += 1
        delta.pendingEvents -= 1
        delta.pendingBytes -= Int64(event.range.count)
    }

    /// The most of an API's answer a dead letter keeps, in characters.
    static let maxStoredAnswer = 4096

    /// Drops the oldest dead letters beyond the newest `limit`, counting them; call inside
    /// ``transaction(_:)`` after adding some.
    func trimDeadLetters(keeping limit: Int, delta: inout QueueCounters) throws(SQLiteError) {
        try db.run(
            "DELETE FROM dead_letters WHERE id <= (SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?)",
            [.integer(Int64(limit))])
        delta.deadDropped += Int64(db.changes)
    }

    /// Writes the delivery columns of the state record.
    func saveDeliveryRecord(_ record: DeliveryRecord) throws(SQLiteError) {
        func int(_ v: Int64?) -> SQLiteValue { v.map { .integer($0) } ?? .null }
        func text(_ v: String?) -> SQLiteValue { v.map { .text($0) } ?? .null }
        try db.run(
            """
            UPDATE daemon_state SET delivery_state = ?, last_attempt_at_ms = ?, last_success_at_ms = ?,
              last_status = ?, last_error = ?, next_attempt_at_ms = ?, consecutive_failures = ?,
              alert_kind = ?, alert_status = ?, alert_since_ms = ?, alert_message = ?
            WHERE id = 1
            """,
            [
                .text(record.state), int(record.lastAttemptAtMillis), int(record.lastSuccessAtMillis),
                int(record.lastStatus.map(Int64.init)), text(record.lastError), int(record.nextAttemptAtMillis),
                .integer(Int64(record.consecutiveFailures)), text(record.alertKind),
                int(record.alertStatus.map(Int64.init)), int(record.alertSinceMillis), text(record.alertMessage),
            ])
    }

    /// The delivery columns as last saved (a restarted daemon keeps its alert and counts).
    func loadDeliveryRecord() throws(SQLiteError) -> DeliveryRecord {
        try DeliveryRecord.read(db) ?? DeliveryRecord()
    }
}

extension DeliveryRecord {
    /// The delivery columns of the state record, from any connection; nil without the row.
    static func read(_ db: SQLiteConnection) throws(SQLiteError) -> DeliveryRecord? {
        try db.queryRow(
            """
            SELECT delivery_state, last_attempt_at_ms, last_success_at_ms, last_status, last_error,
              next_attempt_at_ms, consecutive_failures, alert_kind, alert_status, alert_since_ms, alert_message
            FROM daemon_state WHERE id = 1
            """
        ) { row in
            var r = DeliveryRecord()
            r.state = row.text(0) ?? "idle"
            r.lastAttemptAtMillis = row.optionalInt64(1)
            r.lastSuccessAtMillis = row.optionalInt64(2)
            r.lastStatus = row.optionalInt64(3).map(Int.init)
            r.lastError = row.text(4)
            r.nextAttemptAtMillis = row.optionalInt64(5)
            r.consecutiveFailures = row.int(6)
            r.alertKind = row.text(7)
            r.alertStatus = row.optionalInt64(8).map(Int.init)
            r.alertSinceMillis = row.optionalInt64(9)
            r.alertMessage = row.text(10)
            return r
        }
    }
}
