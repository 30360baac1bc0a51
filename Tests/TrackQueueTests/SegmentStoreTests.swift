import Foundation
import Testing

@testable import TrackQueue

/// The queue stored a group commit at a time (schema migration 5): segments, the mark that
/// every id up to it has left, and the gaps of events that left before an earlier one.
@Suite struct SegmentStoreTests {
    private let parser = EventParser(maxEventBytes: 10_000)

    /// A store with one submission of `count` events named `e0`, `e1`, ... in one group commit.
    private func store(_ dir: borrowing TestDirectory, count: Int) throws -> QueueStore {
        let store = try QueueStore(path: dir.database, durability: .full, bootID: "b")
        var batch = EventBatch()
        var lines: [LineEntry] = []
        for i in 0..<count {
            lines.append(.events(count: try parser.parse(#"{"event_name":"e\#(i)","user_id":"u"}"#, stampMillis: 1, into: &batch)))
        }
        _ = try store.append(
            [IngestSubmission(batch: batch, lines: lines, readAtMillis: 5, readAtBoottimeMillis: 6, completion: { _ in })],
            maxQueueBytes: 1 << 30)
        return store
    }

    private func names(_ batch: OutgoingBatch) throws -> [String] {
        let array = try #require(JSONSerialization.jsonObject(with: Data(batch.body)) as? [[String: Any]])
        #expect(array.count == batch.count)
        return array.map { $0["event_name"] as? String ?? "?" }
    }

    /// Events delivered before an earlier one (a 400's bisection) become gaps: the reader
    /// steps over them, and once the earlier ones go too, the mark moves past all of them and
    /// the gaps are gone.
    @Test func eventsThatLeaveOutOfOrderAreSkippedAndTheMarkAbsorbsThem() throws {
        let dir = try TestDirectory()
        let store = try store(dir, count: 20)
        let reader = try QueueReader(path: dir.database)
        let all = try reader.readBatch(maxEvents: 100, maxBytes: 1 << 20)
        #expect(all.count == 20)
        try store.transaction { delta in try store.removeDelivered([all.events[5..<10]], delta: &delta) }
        let probe = DatabaseProbe(path: dir.database)
        #expect(try probe.scalar("SELECT count(*) FROM gaps") == 5)
        #expect(store.counters.doneThrough == 0)
        let next = try reader.readBatch(maxEvents: 100, maxBytes: 1 << 20)
        #expect(try names(next) == (0..<5).map { "e\($0)" } + (10..<20).map { "e\($0)" })
        #expect(try probe.scalar("SELECT count(*) FROM queue") == 15)

        try store.transaction { delta in try store.removeDelivered([all.events[0..<5]], delta: &delta) }
        #expect(store.counters.doneThrough == all.events[9].id)
        #expect(try probe.scalar("SELECT count(*) FROM gaps") == 0)
        #expect(try names(reader.readBatch(maxEvents: 100, maxBytes: 1 << 20)) == (10..<20).map { "e\($0)" })
        #expect(store.counters.pendingEvents == 10)

        try store.transaction { delta in try store.removeDelivered([all.events[10..<20]], delta: &delta) }
        #expect(try probe.scalar("SELECT count(*) FROM segments") == 0)
        #expect(store.counters.doneThrough == store.counters.lastID)
        #expect(store.counters.pendingEvents == 0)
        #expect(store.counters.pendingBytes == 0)
        #expect(store.counters.delivered == 20)
    }

    /// A dead letter taken from the middle of a segment keeps the event's exact JSON, and
    /// only that event leaves the queue.
    @Test func aDeadLetterFromTheMiddleOfASegmentKeepsItsJSON() throws {
        let dir = try TestDirectory()
        let store = try store(dir, count: 5)
        let reader = try QueueReader(path: dir.database)
        let batch = try reader.readBatch(maxEvents: 100, maxBytes: 1 << 20)
        let third = Array(batch.body[batch.events[2].range])
        try store.transaction { delta in
            try store.moveToDeadLetters(
                batch.events[2], reason: .rejected, status: 400, response: "bad", failedAtMillis: 9, delta: &delta)
            // Twice: the second finds it gone and changes nothing.
            try store.moveToDeadLetters(
                batch.events[2], reason: .rejected, status: 400, response: "bad", failedAtMillis: 9, delta: &delta)
        }
        let dead = try DeadLetterStore(path: dir.database, readOnly: true).list(limit: nil)
        #expect(dead.map(\.event) == [String(decoding: third, as: UTF8.self)])
        #expect(dead.map(\.eventID) == [batch.events[2].id])
        #expect(store.counters.deadLettered == 1)
        #expect(store.counters.pendingEvents == 4)
        #expect(try names(reader.readBatch(maxEvents: 100, maxBytes: 1 << 20)) == ["e0", "e1", "e3", "e4"])
    }

    /// However many gaps lie ahead, a read steps over them: batches are never empty while
    /// events are queued, and between them every queued event is read once, in order.
    @Test func aReadStepsOverAnyRunOfGaps() throws {
        let dir = try TestDirectory()
        let store = try store(dir, count: 600)
        let reader = try QueueReader(path: dir.database)
        let all = try reader.readBatch(maxEvents: 1000, maxBytes: 1 << 22)
        // Events 10–399 leave early (a run across segments), then every other one.
        let early = [all.events[10..<400]] + stride(from: 400, to: 600, by: 2).map { all.events[$0...$0] }
        try store.transaction { delta in try store.removeDelivered(early, delta: &delta) }
        var after: Int64 = 0
        var read: [Int64] = []
        while read.count < 1000 {
            let batch = try reader.readBatch(afterID: after, maxEvents: 2, maxBytes: 1 << 20)
            guard let last = batch.lastID else { break }
            read += batch.events.map(\.id)
            after = last
        }
        let expected = all.events.enumerated().filter { $0.offset < 10 || ($0.offset >= 400 && $0.offset % 2 == 1) }
        #expect(read == expected.map(\.element.id))
        #expect(store.counters.pendingEvents == Int64(expected.count))
    }

    /// A queue written by the schema before segments (one row an event, holes where events
    /// left early) keeps every event, its id, order, times, clock state and stamp; new events
    /// take ids after the highest ever given.
    @Test func aQueueFromBeforeSegmentsIsMigratedWithItsIds() throws {
        let dir = try TestDirectory()
        do {
            let db = try SQLiteConnection(path: dir.database)
            for (index, sql) in Schema.migrations.prefix(4).enumerated() {
                try db.execute(sql)
                try db.execute("PRAGMA user_version = \(index + 1)")
            }
            try db.execute("INSERT INTO boots (id, boot_id) VALUES (3, 'old')")
            for id in 1...12 {
                try db.run(
                    "INSERT INTO queue (id, body, bytes, accepted_at_ms, accepted_boottime_ms, boot, clock_state, stamped) VALUES (?, ?, ?, ?, ?, 3, ?, ?)",
                    [
                        .integer(Int64(id)), .text(#"{"event_name":"old\#(id)"}"#),
                        .integer(Int64(#"{"event_name":"old\#(id)"}"#.utf8.count)), .integer(1000 + Int64(id)),
                        .integer(Int64(id)), id % 2 == 0 ? .integer(1) : .null, .integer(id == 5 ? 1 : 0),
                    ])
            }
            // 1–2 and 12 delivered, 3 and 7 dead-lettered: holes; 12 was the highest id.
            try db.execute("DELETE FROM queue WHERE id IN (1, 2, 3, 7, 12)")
            try db.execute("UPDATE counters SET pending_events = 7")
        }
        let store = try QueueStore(path: dir.database, durability: .full, bootID: "b")
        #expect(store.counters.lastID == 12)
        #expect(store.counters.doneThrough == 3)
        let probe = DatabaseProbe(path: dir.database)
        #expect(try probe.strings("SELECT id FROM queue ORDER BY id") == ["4", "5", "6", "8", "9", "10", "11"])
        #expect(try probe.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'queue' AND type = 'view'") == 1)

        let reader = try QueueReader(path: dir.database)
        let batch = try reader.readBatch(maxEvents: 100, maxBytes: 1 << 20)
        #expect(batch.events.map(\.id) == [4, 5, 6, 8, 9, 10, 11])
        #expect(try names(batch) == [4, 5, 6, 8, 9, 10, 11].map { "old\($0)" })
        #expect(batch.events.map(\.acceptedAtMillis) == [1004, 1005, 1006, 1008, 1009, 1010, 1011])
        #expect(batch.events.map(\.acceptedBoottimeMillis) == [4, 5, 6, 8, 9, 10, 11])
        #expect(batch.events.map(\.boot) == Array(repeating: 3, count: 7))
        #expect(batch.events.map(\.clockState) == [.synced, nil, .synced, .synced, nil, .synced, nil])
        #expect(batch.events.map(\.stamped) == [false, true, false, false, false, false, false])

        let answers = try store.append([try submission(tag: "new")], maxQueueBytes: 1 << 30)
        #expect(answers == [[.accepted(count: 1, firstID: 13, lastID: 13)]])
        // Delivering 4–6 moves the mark over the hole at 7 to 8's doorstep; 8–11 then take the
        // mark to 12, the highest id before the new event.
        try store.transaction { delta in try store.removeDelivered([batch.events[0..<3]], delta: &delta) }
        #expect(store.counters.doneThrough == 7)
        try store.transaction { delta in try store.removeDelivered([batch.events[3..<7]], delta: &delta) }
        #expect(store.counters.doneThrough == 12)
        #expect(try names(reader.readBatch(maxEvents: 100, maxBytes: 1 << 20)) == ["new"])
        #expect(store.counters.pendingEvents == 1)
    }

    /// A segment whose columns disagree (only a damaged file has one) fails the read with an
    /// error; it does not trap.
    @Test func aDamagedSegmentFailsTheReadWithoutTrapping() throws {
        let dir = try TestDirectory()
        let store = try store(dir, count: 3)
        try store.db.execute("UPDATE segments SET ends = x'ffffff7f0100000002000000'")
        #expect(throws: SQLiteError.self) { try QueueReader(path: dir.database).readBatch(maxEvents: 10, maxBytes: 1 << 20) }
        try store.db.execute("UPDATE segments SET ends = x'0102'")
        #expect(throws: SQLiteError.self) { try QueueReader(path: dir.database).readBatch(maxEvents: 10, maxBytes: 1 << 20) }
    }

    /// Ids near the top of Int64 in a damaged file (the counters or a segment) make no
    /// arithmetic trap: appending, reading and delivering go on or fail with an error.
    @Test func idsAtTheEndOfTheRangeDoNotTrap() throws {
        let dir = try TestDirectory()
        let store = try store(dir, count: 3)
        try store.db.execute("UPDATE counters SET last_id = 9223372036854775807, done_through = 9223372036854775806")
        try store.db.execute("UPDATE segments SET first_id = 9223372036854775805")
        try store.refreshCounters()
        _ = try? store.append([try submission(tag: "late")], maxQueueBytes: 1 << 30)
        let reader = try QueueReader(path: dir.database)
        let batch = try reader.readBatch(maxEvents: 100, maxBytes: 1 << 20)
        try? store.transaction { delta in try store.removeDelivered([batch.events[...]], delta: &delta) }
        let all = try reader.readBatch(afterID: .min, maxEvents: 100, maxBytes: 1 << 20)
        try? store.transaction { delta in
            for event in all.events {
                try store.moveToDeadLetters(event, reason: .expired, status: nil, response: nil, failedAtMillis: 1, delta: &delta)
            }
        }
        #expect(try store.db.queryRow("PRAGMA integrity_check") { $0.text(0) } == "ok")
    }

    /// `trackq dead requeue` puts dead letters back as segments of their own with new ids.
    @Test func requeuedDeadLettersGetTheNextIds() throws {
        let dir = try TestDirectory()
        let store = try store(dir, count: 3)
        let reader = try QueueReader(path: dir.database)
        let batch = try reader.readBatch(maxEvents: 100, maxBytes: 1 << 20)
        try store.transaction { delta in
            try store.moveToDeadLetters(batch.events[0], reason: .expired, status: nil, response: nil, failedAtMillis: 9, delta: &delta)
            try store.removeDelivered([batch.events[1..<3]], delta: &delta)
        }
        #expect(try DatabaseProbe(path: dir.database).scalar("SELECT count(*) FROM segments") == 0)
        let moved = try DeadLetterStore(path: dir.database, readOnly: false).requeue(
            .all, nowMillis: 77, boottimeMillis: 8, bootID: "b")
        #expect(moved == 1)
        let again = try reader.readBatch(maxEvents: 100, maxBytes: 1 << 20)
        #expect(try names(again) == ["e0"])
        #expect(again.events.map(\.id) == [4])
        #expect(again.events.map(\.acceptedAtMillis) == [77])
        try store.refreshCounters()
        #expect(store.counters.lastID == 4)
        #expect(store.counters.pendingEvents == 1)
    }

    private func submission(tag: String) throws -> IngestSubmission {
        var batch = EventBatch()
        let count = try parser.parse(#"{"event_name":"\#(tag)","user_id":"u"}"#, stampMillis: 1, into: &batch)
        return IngestSubmission(
            batch: batch, lines: [.events(count: count)], readAtMillis: 5, readAtBoottimeMillis: 6, completion: { _ in })
    }
}
