/// Reads what a damaged queue file still holds and writes it into a new database.
///
/// Every page of the file (with its WAL's committed frames) is read with
/// ``SQLiteFileImage``, not through SQLite's B-tree: that finds every row the B-tree still
/// reaches and the rows on pages a damaged interior page cut off from it. Rows are told
/// apart by their shape (the columns each table has). Stale rows are kept out by the queue's
/// own bookkeeping: a segment is deleted only once the `done_through` mark has passed all
/// its events, so every segment wholly behind the mark is stale, and pages on the free list
/// are not read.
///
/// Events keep their ids, so their order, their gaps and the lifetime counters carry over.
/// A segment whose columns do not agree (see ``SegmentView``) becomes one dead letter with
/// reason `damaged`, its raw bytes kept.
package enum QueueSalvage {
    /// Reads `damaged` (and its `-wal`), never writing either, and fills the new, migrated
    /// database `db` with what it holds; records the recovery in `storage_recoveries`.
    /// - Returns: `record` with what was salvaged, kept as `damaged` and lost.
    package static func salvage(
        from damaged: String, into db: SQLiteConnection, record: StorageRecovery.Record
    ) throws -> StorageRecovery.Record {
        let image = try SQLiteFileImage(path: damaged)
        defer { image.close() }
        let segmented = image.userVersion >= 5 || image.userVersion == 0

        // Pass 1, small rows only: the counters, the boots, the gaps.
        var counters: QueueCounters?
        var salt: Int64?
        var boots: [Int64: [SQLiteFileImage.Value]] = [:]
        var gaps = Set<Int64>()
        image.forEachRow(followOverflow: false) { row in
            let v = row.values
            if let found = Shapes.counters(row) {
                // The mark and the last id only grow: the newest copy has the highest.
                if counters.map({ ($0.doneThrough, $0.lastID) < (found.doneThrough, found.lastID) }) ?? true {
                    counters = found
                    salt = Shapes.idSalt(row)
                }
            } else if Shapes.isBoot(v) {
                boots[row.rowid] = v
            } else if v.count == 1, v[0] == .null, row.rowid > 0 {
                gaps.insert(row.rowid)
            }
            return true
        }
        let mark = segmented ? (counters?.doneThrough ?? 0) : 0

        // Pass 2: the segments (or the rows of a queue from before segments) and the dead letters.
        var done = record
        done.lost = nil
        var fresh = QueueCounters()
        var lowest: Int64?
        var highest: Int64 = 0
        var usedBoots = Set<Int64>()
        var failure: (any Error)?
        var damagedSegments: [Segment] = []
        try Database.transaction(db) {
            let insertSegment = try db.statement(
                """
                INSERT OR IGNORE INTO segments (first_id, count, body, ends, stamped, bytes, accepted_at_ms,
                  accepted_boottime_ms, boot, clock_state, ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            let insertDead = try db.statement(
                """
                INSERT OR IGNORE INTO dead_letters (id, event_id, body, bytes, accepted_at_ms, failed_at_ms, reason, status,
                  response, event_uuid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            var seenSegments = Set<Int64>()
            image.forEachRow { row in
                do {
                    if let segment = segmented ? Shapes.segment(row) : Shapes.queueRow(row) {
                        guard segment.lastID > mark, seenSegments.insert(segment.firstID).inserted else { return true }
                        lowest = min(lowest ?? segment.firstID, segment.firstID)
                        highest = max(highest, segment.lastID)
                        let live = segment.liveEvents(after: mark, gaps: gaps)
                        if let sizes = segment.eventSizes() {
                            try insert(segment, with: insertSegment)
                            usedBoots.insert(segment.boot)
                            done.salvaged += Int64(live.count)
                            fresh.pendingEvents += Int64(live.count)
                            fresh.pendingBytes += live.reduce(0) { $0 + Int64(sizes[$1]) }
                        } else {
                            // Inserted after the carried-over dead letters, which keep their ids.
                            damagedSegments.append(segment)
                            done.damagedEvents += Int64(live.count)
                            fresh.deadLettered += Int64(live.count)
                        }
                    } else if let dead = Shapes.deadLetter(row) {
                        try insertDead.bind(row.rowid, at: 1)
                        try bind(dead, to: insertDead, from: 2)
                        _ = try insertDead.step()
                        insertDead.reset()
                    }
                    return true
                } catch {
                    failure = error
                    return false
                }
            }
            if let failure { throw failure }
            for segment in damagedSegments { try insertDamaged(segment, at: record.atMillis, with: insertDead) }

            // Every boot a segment names, so the foreign keys hold: the salvaged row, or a
            // stand-in no boot id matches (its events' ages are then measured on the wall clock).
            let insertBoot = try db.statement(
                """
                INSERT OR IGNORE INTO boots (id, boot_id, wall_ms, boottime_ms, clock_state, synced_wall_ms,
                  synced_boottime_ms) VALUES (?, ?, ?, ?, ?, ?, ?)
                """)
            for id in usedBoots.sorted() {
                if let v = boots[id] {
                    // A row from before migration 3 has fewer columns: the rest stay NULL.
                    try insertBoot.bind(id, at: 1)
                    try bind(v.dropFirst(), to: insertBoot, from: 2)
                    _ = try insertBoot.step()
                    insertBoot.reset()
                }
                try db.run("INSERT OR IGNORE INTO boots (id, boot_id) VALUES (?, ?)", [.integer(id), .text("salvaged-\(id)")])
            }
            for gap in gaps.sorted() where gap > mark {
                try db.run("INSERT OR IGNORE INTO gaps (id) VALUES (?)", [.integer(gap)])
            }

            // The counters: the lifetime totals carry over; the queue's size is what was kept.
            var totals = counters ?? QueueCounters()
            totals.lastID = max(totals.lastID, highest)
            // Numbers from the file: arithmetic on them wraps rather than traps.
            totals.doneThrough = segmented && counters != nil ? mark : max(0, (lowest ?? (totals.lastID &+ 1)) &- 1)
            totals.pendingEvents = fresh.pendingEvents
            totals.pendingBytes = fresh.pendingBytes
            totals.deadLettered &+= fresh.deadLettered
            // The new database's counters row is all zeros: adding the totals sets them.
            try Database.addToCounters(totals, in: db)
            // The salt too: events stored before ids were keep the ids derived from it.
            if let salt { try db.run("UPDATE counters SET id_salt = ? WHERE id = 1", [.integer(salt)]) }
            if let counters {
                done.lost = max(
                    0,
                    counters.pendingEvents.subtractingReportingOverflow(done.salvaged).partialValue
                        .subtractingReportingOverflow(done.damagedEvents).partialValue)
            }
            try StorageRecovery.insert(done, into: db)
        }
        return done
    }

    /// A segment as read from the file.
    package struct Segment {
        package var firstID: Int64
        package var count: Int
        package var body: [UInt8]
        package var ends: [UInt8]?
        package var stamped: [UInt8]?
        package var bytes: Int64
        package var acceptedAtMillis: Int64
        package var boottimeMillis: Int64
        package var boot: Int64
        package var clockState: Int64?
        /// Its events' ids, 16 bytes each; nil: none stored (or not 16 an event: derived then).
        package var ids: [UInt8]? = nil

        package var lastID: Int64 { firstID &+ Int64(count) &- 1 }

        /// Indexes of its events still queued: above the mark, in no gap.
        package func liveEvents(after mark: Int64, gaps: Set<Int64>) -> [Int] {
            (0..<count).filter { i in
                let id = firstID &+ Int64(i)
                return id > mark && !gaps.contains(id)
            }
        }

        /// Each event's size, or nil when the columns do not agree or an event is not an
        /// object where the array says it is: such a segment is kept as a dead letter.
        package func eventSizes() -> [Int]? {
            body.withUnsafeBytes { text in
                (ends ?? []).withUnsafeBytes { endBytes in
                    (stamped ?? []).withUnsafeBytes { stampedBytes -> [Int]? in
                        guard text.first == UInt8(ascii: "["), text.last == UInt8(ascii: "]"),
                            let view = SegmentView(count: count, body: text, ends: endBytes, stamped: stampedBytes)
                        else { return nil }
                        var sizes: [Int] = []
                        sizes.reserveCapacity(count)
                        for i in 0..<count {
                            guard let range = view.range(of: i), range.count >= 2,
                                text[range.lowerBound] == UInt8(ascii: "{"), text[range.upperBound - 1] == UInt8(ascii: "}"),
                                text[range.upperBound] == UInt8(ascii: i == count - 1 ? "]" : ",")
                            else { return nil }
                            sizes.append(range.count)
                        }
                        return sizes
                    }
                }
            }
        }
    }

    private static func insert(_ s: Segment, with stmt: SQLiteStatement) throws {
        defer { stmt.reset() }
        try stmt.bind(s.firstID, at: 1)
        try stmt.bind(s.count, at: 2)
        try stmt.bind(s.bytes, at: 6)
        try stmt.bind(s.acceptedAtMillis, at: 7)
        try stmt.bind(s.boottimeMillis, at: 8)
        try stmt.bind(s.boot, at: 9)
        if let clock = s.clockState { try stmt.bind(clock, at: 10) }
        if let ids = s.ids { try stmt.bindBlobCopy(ids, at: 11) }
        try s.body.withUnsafeBytes { body in
            try stmt.bindText(body, at: 3)
            try (s.ends ?? []).withUnsafeBytes { ends in
                if s.ends != nil { try stmt.bindBlob(ends, at: 4) }
                try (s.stamped ?? []).withUnsafeBytes { stamped in
                    if s.stamped != nil { try stmt.bindBlob(stamped, at: 5) }
                    _ = try stmt.step()
                }
            }
        }
    }

    /// A segment that does not parse: one dead letter holding its raw bytes.
    private static func insertDamaged(_ s: Segment, at millis: Int64, with stmt: SQLiteStatement) throws {
        defer { stmt.reset() }
        try stmt.bind(
            [
                .null, .integer(s.firstID), .null, .integer(Int64(s.body.count)), .integer(s.acceptedAtMillis),
                .integer(millis), .text(DeadLetterReason.damaged.rawValue), .null,
                .text("a damaged queue segment of \(s.count) events (ids \(s.firstID) to \(s.lastID)); its raw bytes are the body"),
                .null,
            ])
        try s.body.withUnsafeBytes { body in
            try stmt.bindText(body, at: 3)
            _ = try stmt.step()
        }
    }

    private static func bind(_ values: ArraySlice<SQLiteFileImage.Value>, to stmt: SQLiteStatement, from index: Int32) throws(SQLiteError) {
        for (offset, value) in values.enumerated() {
            let at = index + Int32(offset)
            switch value {
            case .null, .real: try stmt.bind(.null, at: at)
            case .integer(let v): try stmt.bind(v, at: at)
            case .text(let bytes): try stmt.bindTextCopy(bytes, at: at)
            // A BLOB stays one (an event's id): as TEXT, SQL's length() would stop at a NUL byte.
            case .blob(let bytes): try stmt.bindBlobCopy(bytes, at: at)
            }
        }
    }

    /// The tables' rows, told apart by their columns.
    package enum Shapes {
        /// `counters`: rowid 1, the id column (NULL: it is the rowid), then 6 to 10 integers
        /// (schema 7 added the ids' salt).
        package static func counters(_ row: SQLiteFileImage.Row) -> QueueCounters? {
            let v = row.values
            guard row.rowid == 1, (7...11).contains(v.count), v[0] == .null else { return nil }
            let ints = v.dropFirst().map(\.integer)
            guard ints.allSatisfy({ $0 != nil }) else { return nil }
            let n = ints.map { $0! } + Array(repeating: 0, count: max(0, 10 - v.count))
            var c = QueueCounters()
            (c.accepted, c.delivered, c.deadLettered, c.rejected, c.pendingEvents, c.pendingBytes) = (n[0], n[1], n[2], n[3], n[4], n[5])
            (c.deadDropped, c.lastID, c.doneThrough) = (n[6], n[7], n[8])
            return c
        }

        /// The ids' salt in a `counters` row of schema 7 on.
        package static func idSalt(_ row: SQLiteFileImage.Row) -> Int64? {
            row.values.count == 11 ? row.values[10].integer : nil
        }

        /// `boots`: the id (NULL), the boot id's text, then up to five clock columns.
        package static func isBoot(_ v: [SQLiteFileImage.Value]) -> Bool {
            guard (2...7).contains(v.count), v[0] == .null, case .text(let id) = v[1], id.count <= 64, id.first != UInt8(ascii: "{")
            else { return false }
            return v.dropFirst(2).allSatisfy {
                switch $0 {
                case .null, .integer, .text: return true
                default: return false
                }
            }
        }

        /// `segments` (schema 5 on; schema 7 added `ids`, which rows written before lack).
        package static func segment(_ row: SQLiteFileImage.Row) -> Segment? {
            let v = row.values
            guard v.count == 10 || v.count == 11, v[0] == .null, let count = v[1].integer,
                (1...Int64(SegmentBuilder.maxEvents)).contains(count),
                case .text(let body) = v[2], let bytes = v[5].integer, let at = v[6].integer, let boottime = v[7].integer,
                let boot = v[8].integer
            else { return nil }
            func blob(_ value: SQLiteFileImage.Value) -> [UInt8]?? {
                switch value {
                case .null: return .some(nil)
                case .blob(let b), .text(let b): return .some(b)
                default: return nil
                }
            }
            guard let ends = blob(v[3]), let stamped = blob(v[4]) else { return nil }
            let clock: Int64?
            switch v[9] {
            case .null: clock = nil
            case .integer(let c): clock = c
            default: return nil
            }
            var ids: [UInt8]?
            if v.count == 11 {
                guard let stored = blob(v[10]) else { return nil }
                ids = stored?.count == 16 * Int(count) ? stored : nil
            }
            return Segment(
                firstID: row.rowid, count: Int(count), body: body, ends: ends, stamped: stamped, bytes: bytes,
                acceptedAtMillis: at, boottimeMillis: boottime, boot: boot, clockState: clock, ids: ids)
        }

        /// A row of the one-row-an-event `queue` table of schemas 1 to 4, as a segment of one.
        package static func queueRow(_ row: SQLiteFileImage.Row) -> Segment? {
            let v = row.values
            guard (6...8).contains(v.count), v[0] == .null, case .text(let body) = v[1], body.first == UInt8(ascii: "{"),
                let bytes = v[2].integer, let at = v[3].integer, let boottime = v[4].integer, let boot = v[5].integer
            else { return nil }
            let clock = v.count > 6 ? v[6].integer : nil
            let stamped = v.count > 7 && v[7].integer == 1
            return Segment(
                firstID: row.rowid, count: 1, body: [UInt8(ascii: "[")] + body + [UInt8(ascii: "]")], ends: nil,
                stamped: stamped ? [1] : nil, bytes: bytes, acceptedAtMillis: at, boottimeMillis: boottime, boot: boot,
                clockState: clock)
        }

        /// `dead_letters`: its columns after the id, to insert as they are (schema 7 added
        /// `event_uuid`, which rows written before lack: it stays NULL).
        package static func deadLetter(_ row: SQLiteFileImage.Row) -> ArraySlice<SQLiteFileImage.Value>? {
            let v = row.values
            guard v.count == 9 || v.count == 10, v[0] == .null, v[1].integer != nil, case .text = v[2], v[3].integer != nil,
                v[4].integer != nil,
                v[5].integer != nil, case .text = v[6]
            else { return nil }
            return v[1...]
        }
    }
}
