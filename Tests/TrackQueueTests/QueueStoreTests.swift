import Foundation
import Testing

@testable import TrackQueue

@Suite struct QueueStoreTests {
    /// A store with `count` events of `size` bytes each, `perSegment` a segment, written
    /// through the writer's own segment path.
    private func filledStore(_ dir: borrowing TestDirectory, count: Int, size: Int = 100, perSegment: Int = 7) throws -> QueueStore {
        let store = try QueueStore(path: dir.database, durability: .full, bootID: "test-boot")
        try store.transaction { delta in
            store.segment.reset()
            for i in 0..<count {
                let prefix = #"{"event_name":"e","user_id":"u","i":\#(i),"pad":""#
                let text = prefix + String(repeating: "p", count: max(0, size - prefix.utf8.count - 2)) + "\"}"
                Array(text.utf8).withUnsafeBytes { store.segment.append($0, stamped: i % 3 == 0, acceptedAtMillis: 1000) }
                if store.segment.count == perSegment || i == count - 1 {
                    try store.insertSegment(
                        acceptedAtMillis: 1000 + Int64(i), boottimeMillis: 7, boot: store.ensureBootRow(), clockState: .synced,
                        delta: &delta)
                    store.segment.reset()
                }
            }
        }
        return store
    }

    @Test func batchesStreamInIdOrderWithinEventAndByteLimits() throws {
        let dir = try TestDirectory()
        let store = try filledStore(dir, count: 2500)
        let reader = try QueueReader(path: dir.database)
        var after: Int64 = 0
        var seen: [Int] = []
        var sizes: [Int] = []
        while true {
            let batch = try reader.readBatch(afterID: after, maxEvents: 1000, maxBytes: 50_000)
            if batch.isEmpty { break }
            #expect(batch.count <= 1000)
            #expect(batch.body.count <= 50_000)
            let array = try #require(JSONSerialization.jsonObject(with: Data(batch.body)) as? [[String: Any]])
            #expect(array.count == batch.count)
            seen += array.map { $0["i"] as! Int }
            for event in batch.events {
                #expect(batch.body[event.range].first == UInt8(ascii: "{"))
            }
            sizes.append(batch.count)
            after = try #require(batch.lastID)
        }
        #expect(seen == Array(0..<2500))
        // 100-byte events + a comma: 495 fit in 50,000 bytes.
        #expect(sizes.first == 495)
        withExtendedLifetime(store) {}
    }

    @Test func theByteLimitCountsWhatDeliveryAddsToEachEvent() throws {
        let dir = try TestDirectory()
        let store = try filledStore(dir, count: 1000)
        let reader = try QueueReader(path: dir.database)
        let batch = try reader.readBatch(maxEvents: 1000, maxBytes: 50_000, extraPerEvent: EventRewriter.maxNoteBytes)
        // 100 + 128 bytes an event as sent, and a comma: 218 fit in 50,000, where 495 did.
        #expect(batch.count == 218)
        #expect(batch.body.count + batch.count * EventRewriter.maxNoteBytes <= 50_000)
        withExtendedLifetime(store) {}
    }

    @Test func eventLimitBindsBeforeByteLimit() throws {
        let dir = try TestDirectory()
        let store = try filledStore(dir, count: 30)
        let reader = try QueueReader(path: dir.database)
        let batch = try reader.readBatch(maxEvents: 7, maxBytes: 2_000_000)
        #expect(batch.events.map(\.id) == Array(1...7))
        // The first seven are one segment: they share its accept time and clock state.
        #expect(batch.events.map(\.acceptedAtMillis) == Array(repeating: 1006, count: 7))
        #expect(batch.events.map(\.clockState) == Array(repeating: .synced, count: 7))
        #expect(batch.events.map(\.stamped) == [true, false, false, true, false, false, true])
        #expect(batch.events.first?.acceptedBoottimeMillis == 7)
        withExtendedLifetime(store) {}
    }

    @Test func anEventLargerThanTheByteLimitStillGoesAlone() throws {
        let dir = try TestDirectory()
        let store = try filledStore(dir, count: 3, size: 500)
        let reader = try QueueReader(path: dir.database)
        #expect(try reader.readBatch(maxEvents: 1000, maxBytes: 100).count == 1)
        #expect(try reader.readBatch(maxEvents: 1000, maxBytes: 1004).count == 2)  // 1 + 500 + 1 + 500 + 1 = 1003
        withExtendedLifetime(store) {}
    }

    @Test func countersFollowCommitsAndRollbacks() throws {
        let dir = try TestDirectory()
        let store = try filledStore(dir, count: 10)
        #expect(store.counters.pendingEvents == 10)
        #expect(store.counters.pendingBytes == 1000)
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try store.transaction { delta in
                delta.pendingEvents += 5
                throw Boom()
            }
        }
        #expect(store.counters.pendingEvents == 10)
        let probe = DatabaseProbe(path: dir.database)
        #expect(try probe.scalar("SELECT pending_events FROM counters") == 10)
        #expect(try probe.scalar("SELECT count(*) FROM queue") == 10)
    }

    @Test func reopeningMigratesNothingTwiceAndKeepsData() throws {
        let dir = try TestDirectory()
        do { _ = try filledStore(dir, count: 3) }
        let again = try QueueStore(path: dir.database, durability: .normal, bootID: "another-boot")
        #expect(again.counters.pendingEvents == 3)
        let probe = DatabaseProbe(path: dir.database)
        #expect(try probe.scalar("PRAGMA user_version") == Int64(Schema.migrations.count))
        #expect(try probe.strings("SELECT boot_id FROM boots ORDER BY id") == ["test-boot", "another-boot"])
    }

    @Test func aNewerSchemaIsRefusedUntouched() throws {
        let dir = try TestDirectory()
        do {
            let db = try SQLiteConnection(path: dir.database)
            try db.execute("PRAGMA user_version = 99")
        }
        #expect {
            _ = try QueueStore(path: dir.database, durability: .full, bootID: "b")
        } throws: { error in
            "\(error)".contains("schema version 99")
        }
    }
}

extension QueueStoreTests {
    /// Delivered segments are freed without being written once more: the writer's connection
    /// zeroes deleted content only where a page is written anyway (Debian's SQLite would
    /// otherwise zero, and so write, every freed overflow page).
    @Test func freedPagesAreNotZeroedAtTheCostOfAWrite() throws {
        let dir = try TestDirectory()
        let store = try QueueStore(path: dir.database, durability: .full, bootID: "b")
        #expect(try store.db.queryRow("PRAGMA secure_delete") { $0.int(0) } == 2)
    }

    /// A savepoint's journal (delivery's deletes joining an ingest group) stays in memory
    /// instead of spilling to a temp file created and unlinked inside an ack's commit.
    @Test func savepointJournalsStayInMemory() throws {
        let dir = try TestDirectory()
        let store = try QueueStore(path: dir.database, durability: .full, bootID: "b")
        #expect(try store.db.queryRow("PRAGMA temp_store") { $0.int(0) } == 2)
    }
}

extension QueueStoreTests {
    /// A power cut in the one commit the daemon makes in rollback-journal mode (switching a
    /// file from before WAL mode, at its first start after an upgrade) leaves a hot journal.
    /// A read-only reader cannot roll it back: `trackq status` and `trackq dead list` say so
    /// in words; the daemon's open rolls it back, and then they read.
    @Test func aWriteCutInRollbackModeIsExplainedToReadersAndUndoneByTheDaemon() throws {
        let dir = try TestDirectory()
        let live = dir.file("live.db")
        let db = try SQLiteConnection(path: live)
        try Schema.migrate(db)  // no WAL yet: the file as a store from before WAL mode left it
        try db.execute("CREATE TABLE pad (x TEXT)")
        try Database.transaction(db) {
            for _ in 0..<2000 { try db.run("INSERT INTO pad VALUES (?)", [.text(String(repeating: "y", count: 500))]) }
        }
        // A transaction whose pages spill from a tiny cache: SQLite syncs the journal before it
        // overwrites the file. A copy of both taken now is what a power cut leaves.
        try db.execute("PRAGMA cache_size = 5")
        try db.execute("BEGIN")
        try db.execute("UPDATE pad SET x = 'overwritten'")
        try FileManager.default.copyItem(atPath: live, toPath: dir.database)
        try FileManager.default.copyItem(atPath: live + "-journal", toPath: dir.database + "-journal")
        try db.execute("ROLLBACK")

        for read in [
            { _ = try StatusReader.read(database: dir.database) },
            { _ = try DeadLetterStore(path: dir.database, readOnly: true).list(limit: nil) },
        ] as [() throws -> Void] {
            #expect {
                try read()
            } throws: { error in
                let said = "\(error)"
                return said.contains("holds a write that a crash or power cut interrupted")
                    && said.contains("the daemon does when it starts") && !said.contains("SQLite error")
            }
        }
        #expect(FileManager.default.fileExists(atPath: dir.database + "-journal"), "a reader changed the file")

        let store = try QueueStore(path: dir.database, durability: .full, bootID: "after-the-cut")
        #expect(!FileManager.default.fileExists(atPath: dir.database + "-journal"))
        #expect(try store.db.queryRow("SELECT count(*) FROM pad WHERE x = 'overwritten'") { $0.int64(0) } == 0)
        #expect(try StatusReader.read(database: dir.database).queue.pending == 0)
    }
}
