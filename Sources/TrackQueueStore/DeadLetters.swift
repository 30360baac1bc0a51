import TrackQueueEvent

/// One dead letter, as `trackq dead list` shows it.
public struct DeadLetter: Sendable, Equatable {
    public var id: Int64
    public var eventID: Int64
    public var failedAtMillis: Int64
    public var reason: String
    public var status: Int?
    public var response: String?
    /// The normalized event JSON.
    public var event: String
    /// The id it is sent with (`context.trackq.event_id`), kept through a requeue; nil for
    /// one dead-lettered before ids were stored.
    public var eventUUID: EventUUID? = nil
}

/// The dead letters, for the `trackq dead` commands: a connection of their own beside a
/// running daemon (SQLite's locking and the busy timeout keep the two apart).
public final class DeadLetterStore {
    private let db: SQLiteConnection

    /// Opens an existing database; never creates one.
    public init(path: String, readOnly: Bool) throws(StoreError) {
        db = try Database.open(path, readOnly ? .readOnly : .readWriteExisting)
    }

    /// The oldest `limit` dead letters (all when nil), by id.
    public func list(limit: Int?) throws(StoreError) -> [DeadLetter] {
        do {
            let stmt = try db.statement(
                "SELECT id, event_id, failed_at_ms, reason, status, response, body, event_uuid FROM dead_letters ORDER BY id LIMIT ?")
            try stmt.bind(Int64(limit ?? -1), at: 1)
            defer { stmt.reset() }
            var out: [DeadLetter] = []
            while try stmt.step() {
                out.append(
                    DeadLetter(
                        id: stmt.int64(0), eventID: stmt.int64(1), failedAtMillis: stmt.int64(2),
                        reason: stmt.text(3) ?? "", status: stmt.optionalInt64(4).map(Int.init),
                        response: stmt.text(5), event: stmt.text(6) ?? "",
                        eventUUID: stmt.withBytes(7) { EventUUID(bytes: $0) }))
            }
            return out
        } catch {
            throw .sqlite(error)
        }
    }

    /// Which dead letters a command acts on.
    public enum Selection: Sendable {
        case all
        case ids([Int64])
    }

    /// Puts dead letters back at the end of the queue and removes them from the dead
    /// letters, in one transaction. Their JSON (with its `timestamp`) and their ids are
    /// unchanged; their accept time restarts now, so `--max-event-age` gives them a full new
    /// life.
    /// - Returns: how many were requeued.
    @discardableResult
    public func requeue(_ selection: Selection, nowMillis: Int64, boottimeMillis: Int64, bootID: String) throws(StoreError) -> Int {
        try write { db in
            let boot = try Database.bootRow(bootID, in: db)
            // "id IN (SELECT value FROM json_each(?))" keeps one statement for both selections.
            let filter: String
            let bindings: [SQLiteValue]
            switch selection {
            case .all:
                filter = ""
                bindings = []
            case .ids(let ids):
                filter = "WHERE id IN (SELECT value FROM json_each(?))"
                bindings = [.text("[" + ids.map(String.init).joined(separator: ",") + "]")]
            }
            let (moved, bytes) =
                try db.queryRow("SELECT count(*), coalesce(sum(bytes), 0) FROM dead_letters \(filter)", bindings) {
                    ($0.int64(0), $0.int64(1))
                } ?? (0, 0)
            // Each one a segment of its own, with the next ids.
            let lastID = try QueueCounters.read(db).lastID
            try db.run(
                """
                INSERT INTO segments (first_id, count, body, bytes, accepted_at_ms, accepted_boottime_ms, boot, ids)
                SELECT ? + row_number() OVER (ORDER BY id), 1, '[' || body || ']', bytes, ?, ?, ?,
                       CASE WHEN length(CAST(event_uuid AS BLOB)) = 16 THEN CAST(event_uuid AS BLOB) END
                FROM dead_letters \(filter) ORDER BY id
                """,
                [.integer(lastID), .integer(nowMillis), .integer(boottimeMillis), .integer(boot)] + bindings)
            try db.run("DELETE FROM dead_letters \(filter)", bindings)
            var delta = QueueCounters()
            delta.pendingEvents = moved
            delta.pendingBytes = bytes
            delta.lastID = moved
            try Database.addToCounters(delta, in: db)
            return Int(moved)
        }
    }

    /// Deletes dead letters for good. - Returns: how many were deleted.
    @discardableResult
    public func purge(_ selection: Selection) throws(StoreError) -> Int {
        try write { db in
            switch selection {
            case .all:
                try db.run("DELETE FROM dead_letters")
            case .ids(let ids):
                try db.run(
                    "DELETE FROM dead_letters WHERE id IN (SELECT value FROM json_each(?))",
                    [.text("[" + ids.map(String.init).joined(separator: ",") + "]")])
            }
            return db.changes
        }
    }

    private func write<T>(_ body: (SQLiteConnection) throws -> T) throws(StoreError) -> T {
        do {
            return try Database.transaction(db) { try body(db) }
        } catch {
            throw StoreError(error)
        }
    }
}

@available(*, unavailable)
extension DeadLetterStore: Sendable {}
