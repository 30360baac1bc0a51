import TrackQueueStatus

/// What `trackq status` shows of delivery: the `daemon_state` row's delivery columns.
public struct DeliveryRecord: Sendable, Equatable {
    public var state = DeliveryState.idle
    public var lastAttemptAtMillis: Int64?
    public var lastSuccessAtMillis: Int64?
    public var lastStatus: Int?
    public var lastError: String?
    public var nextAttemptAtMillis: Int64?
    public var consecutiveFailures = 0
    public var alertKind: AlertKind?
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
    /// In a part of the queue file that no longer parses: its raw bytes are the body.
    case damaged
}

extension QueueStore {
    /// Removes delivered events from the queue, a run at a time; call inside ``transaction(_:)``.
    ///
    /// Each run is events that lie next to each other in a batch read in queue order (one
    /// range the API answered 2xx). Events already gone are not counted twice.
    package func removeDelivered(_ runs: [ArraySlice<OutgoingBatch.Event>], delta: inout QueueCounters) throws(SQLiteError) {
        for run in runs {
            delta.delivered += try finish(run, delta: &delta)
        }
    }

    /// Moves one event from the queue to the dead letters; call inside ``transaction(_:)``.
    package func moveToDeadLetters(
        _ event: OutgoingBatch.Event, reason: DeadLetterReason, status: Int?, response: String?,
        failedAtMillis: Int64, delta: inout QueueCounters
    ) throws(SQLiteError) {
        guard try isQueued(event.id, delta: delta) else { return }
        let found = try withStoredEvent(event.id) { text throws(SQLiteError) -> Bool in
            let stmt = try db.statement(
                """
                INSERT INTO dead_letters (event_id, body, bytes, accepted_at_ms, failed_at_ms, reason, status, response, event_uuid)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            defer { stmt.reset() }
            try stmt.bind(
                [
                    .integer(event.id), .null, .integer(Int64(text.count)), .integer(event.acceptedAtMillis),
                    .integer(failedAtMillis), .text(reason.rawValue), status.map { .integer(Int64($0)) } ?? .null,
                    response.map { .text(String($0.prefix(Self.maxStoredAnswer))) } ?? .null,
                ])
            try stmt.bindText(text, at: 2)
            var uuid: [UInt8] = []
            event.uuid.appendBytes(to: &uuid)
            try stmt.bindBlobCopy(uuid, at: 9)
            _ = try stmt.step()
            return true
        }
        guard found == true else { return }
        delta.deadLettered += try finish(CollectionOfOne(event), delta: &delta)
    }

    // MARK: Events leave the queue

    /// Takes `run` (events next to each other in queue order) out of the queue: the mark
    /// moves past them if nothing queued lies before them, otherwise they become gaps.
    /// Segments wholly behind the mark are deleted.
    /// - Returns: how many of them were still queued (and are counted out of `pending`).
    private func finish(_ run: some Collection<OutgoingBatch.Event>, delta: inout QueueCounters) throws(SQLiteError) -> Int64 {
        guard let first = run.first?.id, let last = run.map(\.id).max() else { return 0 }
        let mark = counters.doneThrough &+ delta.doneThrough
        guard last > mark else { return 0 }
        var gone = Set<Int64>()
        let gaps = try db.statement("SELECT id FROM gaps WHERE id BETWEEN ? AND ?")
        try gaps.bind(max(first, mark &+ 1), at: 1)
        try gaps.bind(last, at: 2)
        while try gaps.step() { gone.insert(gaps.int64(0)) }
        gaps.reset()
        var left: Int64 = 0
        var bytes: Int64 = 0
        for event in run where event.id > mark && !gone.contains(event.id) {
            left += 1
            bytes += Int64(event.range.count)
        }
        delta.pendingEvents -= left
        delta.pendingBytes -= bytes
        var nothingQueuedBefore = first <= mark &+ 1
        if !nothingQueuedBefore { nothingQueuedBefore = try firstQueued(after: mark, delta: delta) >= first }
        if nothingQueuedBefore {
            try advanceMark(to: last, delta: &delta)
        } else {
            let insert = try db.statement("INSERT OR IGNORE INTO gaps (id) VALUES (?)")
            for event in run where event.id > mark && !gone.contains(event.id) {
                try insert.bind(event.id, at: 1)
                _ = try insert.step()
                insert.reset()
            }
        }
        return left
    }

    /// Moves the mark to `target`, then past the gaps and ids without events right after it,
    /// and deletes what lies behind it.
    private func advanceMark(to target: Int64, delta: inout QueueCounters) throws(SQLiteError) {
        let mark = counters.doneThrough &+ delta.doneThrough
        guard target > mark else { return }
        let next = try firstQueued(after: target, delta: delta)
        let newMark = next &- 1
        try db.run("DELETE FROM gaps WHERE id <= ?", [.integer(newMark)])
        try db.run(
            "DELETE FROM segments WHERE first_id <= ? AND first_id + count - 1 <= ?", [.integer(newMark), .integer(newMark)])
        delta.doneThrough &+= newMark &- mark
    }

    /// The smallest id above `id` of an event still queued; one past the last id given if none.
    private func firstQueued(after id: Int64, delta: QueueCounters) throws(SQLiteError) -> Int64 {
        let segments = try db.statement("SELECT first_id, count FROM segments WHERE first_id + count - 1 > ? ORDER BY first_id")
        defer { segments.reset() }
        try segments.bind(id, at: 1)
        let gap = try db.statement("SELECT 1 FROM gaps WHERE id = ?")
        var candidate = id &+ 1
        while try segments.step() {
            let last = segments.int64(0) &+ segments.int64(1) &- 1
            candidate = max(candidate, segments.int64(0))
            while candidate <= last {
                try gap.bind(candidate, at: 1)
                let isGap = try gap.step()
                gap.reset()
                if !isGap { return candidate }
                candidate &+= 1
            }
        }
        return counters.lastID &+ delta.lastID &+ 1
    }

    /// Whether event `id` is still in the queue: behind no mark, in no gap.
    private func isQueued(_ id: Int64, delta: QueueCounters) throws(SQLiteError) -> Bool {
        guard id > counters.doneThrough &+ delta.doneThrough else { return false }
        return try db.queryRow("SELECT 1 FROM gaps WHERE id = ?", [.integer(id)]) { _ in true } == nil
    }

    /// Hands the stored JSON of event `id` to `body`; nil if no segment holds it.
    private func withStoredEvent<T>(_ id: Int64, _ body: (UnsafeRawBufferPointer) throws(SQLiteError) -> T) throws(SQLiteError) -> T? {
        let stmt = try db.statement("SELECT first_id, count, body, ends FROM segments WHERE first_id <= ? ORDER BY first_id DESC LIMIT 1")
        defer { stmt.reset() }
        try stmt.bind(id, at: 1)
        guard try stmt.step() else { return nil }
        let (offset, overflow) = id.subtractingReportingOverflow(stmt.int64(0))
        let count = stmt.int(1)
        guard !overflow, offset >= 0, offset < count else { return nil }
        let index = Int(offset)
        return try stmt.withBytes(2) { text throws(SQLiteError) -> T? in
            try stmt.withBytes(3) { ends throws(SQLiteError) -> T? in
                guard let view = SegmentView(count: count, body: text, ends: ends, stamped: .init(start: nil, count: 0)),
                    let range = view.range(of: index)
                else { return nil }
                return try body(UnsafeRawBufferPointer(rebasing: text[range]))
            }
        }
    }

    /// The most of an API's answer a dead letter keeps, in characters.
    package static let maxStoredAnswer = 4096

    /// Drops the oldest dead letters beyond the newest `limit`, counting them; call inside
    /// ``transaction(_:)`` after adding some.
    package func trimDeadLetters(keeping limit: Int, delta: inout QueueCounters) throws(SQLiteError) {
        try db.run(
            "DELETE FROM dead_letters WHERE id <= (SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?)",
            [.integer(Int64(limit))])
        delta.deadDropped += Int64(db.changes)
    }

    /// Writes the delivery columns of the state record.
    package func saveDeliveryRecord(_ record: DeliveryRecord) throws(SQLiteError) {
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
                .text(record.state.rawValue), int(record.lastAttemptAtMillis), int(record.lastSuccessAtMillis),
                int(record.lastStatus.map(Int64.init)), text(record.lastError), int(record.nextAttemptAtMillis),
                .integer(Int64(record.consecutiveFailures)), text(record.alertKind?.rawValue),
                int(record.alertStatus.map(Int64.init)), int(record.alertSinceMillis), text(record.alertMessage),
            ])
    }

    /// The delivery columns as last saved (a restarted daemon keeps its alert and counts).
    package func loadDeliveryRecord() throws(SQLiteError) -> DeliveryRecord {
        try DeliveryRecord.read(db) ?? DeliveryRecord()
    }
}

extension DeliveryRecord {
    /// The delivery columns of the state record, from any connection; nil without the row.
    package static func read(_ db: SQLiteConnection) throws(SQLiteError) -> DeliveryRecord? {
        try db.queryRow(
            """
            SELECT delivery_state, last_attempt_at_ms, last_success_at_ms, last_status, last_error,
              next_attempt_at_ms, consecutive_failures, alert_kind, alert_status, alert_since_ms, alert_message
            FROM daemon_state WHERE id = 1
            """
        ) { row in
            var r = DeliveryRecord()
            // Written by trackq, but read from a file: a value this version does not know (a newer
            // trackq's, a damaged page) reads as idle (a state) or endpoint (an alert kind).
            r.state = row.text(0).flatMap(DeliveryState.init(rawValue:)) ?? .idle
            r.lastAttemptAtMillis = row.optionalInt64(1)
            r.lastSuccessAtMillis = row.optionalInt64(2)
            r.lastStatus = row.optionalInt64(3).map(Int.init)
            r.lastError = row.text(4)
            r.nextAttemptAtMillis = row.optionalInt64(5)
            r.consecutiveFailures = row.int(6)
            r.alertKind = row.text(7).map { AlertKind(rawValue: $0) ?? .endpoint }
            r.alertStatus = row.optionalInt64(8).map(Int.init)
            r.alertSinceMillis = row.optionalInt64(9)
            r.alertMessage = row.text(10)
            return r
        }
    }
}
