import TrackQueueClock

extension QueueStore {
    /// Records `reading` as this boot's latest clock reading, and as its latest synchronized
    /// one when `state` is `synced`. Alone, or inside a transaction.
    package func recordClock(_ reading: ClockReading, state: ClockState) throws(SQLiteError) {
        let boot = try ensureBootRow()
        let synced: SQLiteValue = state == .synced ? .integer(1) : .integer(0)
        try db.run(
            """
            UPDATE boots SET wall_ms = ?1, boottime_ms = ?2, clock_state = ?3,
              synced_wall_ms = CASE WHEN ?4 THEN ?1 ELSE synced_wall_ms END,
              synced_boottime_ms = CASE WHEN ?4 THEN ?2 ELSE synced_boottime_ms END
            WHERE id = ?5
            """,
            [.integer(reading.wallMillis), .integer(reading.boottimeMillis), .text(state.rawValue), synced, .integer(boot)])
    }

    /// The clock as earlier boots left it: every `boots` row but this boot's.
    package func clockHistory() throws(SQLiteError) -> ClockHistory {
        try Database.clockHistory(excludingBootID: bootID, in: db)
    }
}

extension Database {
    /// The clock history of every boot but `bootID`'s.
    package static func clockHistory(excludingBootID bootID: String, in db: SQLiteConnection) throws(SQLiteError) -> ClockHistory {
        var boots: [(id: Int64, spanMillis: Int64?)] = []
        var latestSynced: Int64?
        var syncedOffsets: [Int64: Int64] = [:]
        let stmt = try db.statement(
            "SELECT id, boottime_ms, synced_wall_ms, synced_boottime_ms FROM boots WHERE boot_id <> ? ORDER BY id")
        defer { stmt.reset() }
        try stmt.bind(bootID, at: 1)
        while try stmt.step() {
            let boot = stmt.int64(0)
            boots.append((boot, stmt.optionalInt64(1)))
            if let wall = stmt.optionalInt64(2), let boottime = stmt.optionalInt64(3) {
                latestSynced = max(latestSynced ?? .min, wall)
                syncedOffsets[boot] = wall.saturatingSubtract(boottime)
            }
        }
        return ClockHistory(
            judge: ClockJudge(latestSyncedWallMillis: latestSynced), earlierBoots: BootSpans(boots), syncedOffsets: syncedOffsets)
    }
}
