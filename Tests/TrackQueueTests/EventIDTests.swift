import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import TrackQueue

/// Ids for exactly-once at the API (issue 23): `context.trackq.event_id`, a UUIDv7 fixed at
/// accept and stored, and `Idempotency-Key` per request. Whole processes against real HTTP
/// servers: the same ids and key on a retry, after a restart and a requeue; a bisection's
/// halves keep their events' ids.
@Suite(.serialized) struct EventIDTests {
    private func startDaemon(_ dir: borrowing TestDirectory, _ arguments: [String], name: String = "daemon") async throws
        -> TrackqProcess
    {
        try await TrackqProcess.startDaemon(
            dir, ["--retry-initial", "50ms", "--retry-max", "200ms"] + arguments, environment: ["TRACKQ_TOKEN": "t"],
            logName: name)
    }

    /// Each event of a request as (seq, context.trackq.event_id).
    private static func ids(_ request: ReceivedRequest) -> [(seq: Int, id: String)] {
        (request.jsonArray ?? []).map { event in
            let trackq = (event["context"] as? [String: Any])?["trackq"] as? [String: Any]
            return (event["seq"] as? Int ?? -1, trackq?["event_id"] as? String ?? "")
        }
    }

    private static func idMap(_ requests: [ReceivedRequest]) -> [Int: String] {
        var map: [Int: String] = [:]
        for request in requests {
            for (seq, id) in ids(request) { map[seq] = id }
        }
        return map
    }

    @Test func aRetryCarriesTheSameIdsAndKey() async throws {
        let dir = try TestDirectory()
        let server = try await TestHTTPServer.start { _, index in index == 0 ? .status(503, body: "down") : .ok() }
        let before = Int64(Date().timeIntervalSince1970 * 1000)
        let daemon = try await startDaemon(dir, ["--endpoint", server.url])
        try DeliveryTests.enqueue(20, socket: dir.socket)
        let after = Int64(Date().timeIntervalSince1970 * 1000)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        let requests = server.requests
        try #require(requests.count >= 2)
        let (failed, retried) = (requests[0], requests[1])
        #expect(Self.ids(failed).map(\.seq) == Array(0..<20))
        #expect(Self.ids(failed).map(\.id) == Self.ids(retried).map(\.id))
        let key = try #require(failed.header("idempotency-key"))
        #expect(key.count == 32 && key.allSatisfy(\.isHexDigit))
        #expect(retried.header("idempotency-key") == key)
        // UUIDv7s: distinct, version 7, the variant, and the accept time in their first 48 bits.
        let ids = Self.ids(failed).map(\.id)
        #expect(Set(ids).count == 20)
        for id in ids {
            let characters = Array(id)
            #expect(characters.count == 36 && characters[14] == "7" && "89ab".contains(characters[19]), "\(id)")
            let millis = Int64(id.replacingOccurrences(of: "-", with: "").prefix(12), radix: 16) ?? 0
            #expect((before - 1000...after + 1000).contains(millis), "\(id)")
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        try await server.stop()
    }

    @Test func theSameIdsAndKeyAfterARestart() async throws {
        let dir = try TestDirectory()
        let accepting = NIOLockedValueBox(false)
        let server = try await TestHTTPServer.start { _, _ in
            accepting.withLockedValue { $0 } ? .ok() : .status(503, body: "down")
        }
        let first = try await startDaemon(dir, ["--endpoint", server.url], name: "first")
        try DeliveryTests.enqueue(7, socket: dir.socket)
        try await waitUntil("a failed request") { server.requestCount >= 1 }
        first.signal(SIGTERM)
        #expect(try await first.waitForExit() == 0)
        let sentBefore = server.requests[0]

        accepting.withLockedValue { $0 = true }
        let second = try await startDaemon(dir, ["--endpoint", server.url], name: "second")
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        let delivered = try #require(server.requests.last)
        #expect(Self.ids(delivered).map(\.id) == Self.ids(sentBefore).map(\.id))
        #expect(delivered.header("idempotency-key") == sentBefore.header("idempotency-key"))
        second.signal(SIGTERM)
        #expect(try await second.waitForExit() == 0)
        try await server.stop()
    }

    @Test func bisectionHalvesAndARequeueKeepTheirEventsIds() async throws {
        let dir = try TestDirectory()
        let takesBad = NIOLockedValueBox(false)
        let server = try await TestHTTPServer.start { request, _ in
            request.bodyText.contains("poison") && !takesBad.withLockedValue({ $0 }) ? .status(400, body: "bad event") : .ok()
        }
        let daemon = try await startDaemon(dir, ["--endpoint", server.url])
        try DeliveryTests.enqueue(8, socket: dir.socket) { i in i == 5 ? #","note":"poison""# : "" }
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        let requests = server.requests
        let original = Self.idMap([requests[0]])
        #expect(original.count == 8)
        // Every request, halves included, sent each event with the id it had in the first.
        for request in requests {
            for (seq, id) in Self.ids(request) { #expect(original[seq] == id, "seq \(seq)") }
        }
        let keys = requests.compactMap { $0.header("idempotency-key") }
        #expect(keys.count == requests.count)
        let lastRefused = try #require(requests.last { $0.bodyText.contains("poison") })
        #expect(Self.ids(lastRefused).map(\.seq) == [5])

        // The dead letter shows the id; requeued, it goes with the same id and the same key.
        let listed = try runCommand(TrackqBinary.path, ["dead", "list", "--json", "--database", dir.database])
        let letters = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        #expect(letters.count == 1)
        #expect(letters.first?["event_uuid"] as? String == original[5])
        let text = try runCommand(TrackqBinary.path, ["dead", "list", "--database", dir.database])
        #expect(text.stdout.contains("\tevent_id: \(original[5] ?? "?")"))
        takesBad.withLockedValue { $0 = true }
        let requeued = try runCommand(TrackqBinary.path, ["dead", "requeue", "--all", "--database", dir.database])
        #expect(requeued.status == 0)
        daemon.signal(SIGHUP)  // retry at once
        try await waitUntil("the requeued event delivered") {
            let queued = try probe.queued
            return server.requests.count > requests.count && queued == 0
        }
        let resent = try #require(server.requests.last)
        #expect(Self.ids(resent).map(\.seq) == [5] && Self.ids(resent).map(\.id) == [original[5] ?? "?"])
        #expect(resent.header("idempotency-key") == lastRefused.header("idempotency-key"))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        try await server.stop()
    }

    @Test func theSwitchesAreIndependent() async throws {
        let dir = try TestDirectory()
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let probe = DatabaseProbe(path: dir.database)

        // Without the clock's note, the id alone.
        let idsOnly = try await startDaemon(dir, ["--endpoint", server.url, "--clock-annotation", "false"], name: "ids-only")
        try DeliveryTests.enqueue(2, socket: dir.socket)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        let withID = try #require(server.requests.last?.jsonArray?.first)
        let trackq = try #require((withID["context"] as? [String: Any])?["trackq"] as? [String: Any])
        #expect(Array(trackq.keys) == ["event_id"])
        #expect(server.requests.last?.header("idempotency-key") != nil)
        idsOnly.signal(SIGTERM)
        #expect(try await idsOnly.waitForExit() == 0)

        // Both off: the events exactly as the app wrote them, and no key.
        let plain = try await startDaemon(
            dir, ["--endpoint", server.url, "--clock-annotation", "false", "--event-ids", "false"], name: "plain")
        try DeliveryTests.enqueue(2, socket: dir.socket)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        let last = try #require(server.requests.last)
        // Stamped on accept (they came without a timestamp), nothing else added.
        #expect(last.bodyText.hasPrefix(#"[{"event_name":"e","user_id":"u","seq":0,"timestamp":""#))
        #expect(!last.bodyText.contains("context") && !last.bodyText.contains("event_id"))
        #expect(last.header("idempotency-key") == nil)
        plain.signal(SIGTERM)
        #expect(try await plain.waitForExit() == 0)
        try await server.stop()
    }
}

/// The ids and keys: pure values and the store.
@Suite struct EventIDValueTests {
    @Test func uuidv7sHaveTheirVersionVariantTimeAndText() {
        var source = EventUUIDSource()
        let id = source.next(millis: 1_795_755_600_123)
        #expect(id.millis == 1_795_755_600_123)
        let text = id.description
        #expect(text.count == 36 && Array(text)[14] == "7" && "89ab".contains(Array(text)[19]))
        #expect(text.hasPrefix("01a2"))  // 1_795_755_600_123 = 0x01a2…
        var bytes: [UInt8] = []
        id.appendBytes(to: &bytes)
        #expect(bytes.withUnsafeBytes { EventUUID(bytes: $0) } == id)
        #expect(EventUUID(high: 0x0123_4567_89ab_7cde, low: 0x8f01_2345_6789_abcd).description == "01234567-89ab-7cde-8f01-23456789abcd")
        #expect(source.next(millis: 5) != source.next(millis: 5))
        #expect(EventUUID(millis: -5, random: (0, 0)).millis == 0)
    }

    @Test func derivedIdsAreStableAndDifferByDatabaseAndEvent() {
        let one = EventUUID.derived(millis: 1000, salt: 42, queueID: 7)
        #expect(one == EventUUID.derived(millis: 1000, salt: 42, queueID: 7))
        #expect(one != EventUUID.derived(millis: 1000, salt: 43, queueID: 7))
        #expect(one != EventUUID.derived(millis: 1000, salt: 42, queueID: 8))
        #expect(one.millis == 1000 && Array(one.description)[14] == "7")
    }

    @Test func keysFollowTheEvents() {
        func event(_ id: Int64, _ uuid: EventUUID) -> OutgoingBatch.Event {
            .init(id: id, range: 0..<1, acceptedAtMillis: 0, acceptedBoottimeMillis: 0, boot: 1, uuid: uuid)
        }
        let events = (1...3).map { event($0, EventUUID(millis: 1, random: (UInt64($0), 9))) }
        let key = IdempotencyKey.of(events[...])
        #expect(key == IdempotencyKey.of(events[...]))
        #expect(key != IdempotencyKey.of(events[0..<2]))
        #expect(key.count == 32 && key.allSatisfy(\.isHexDigit))
    }

    @Test func theStoreKeepsEachEventsIdAcrossReadsAndReopeningAndDerivesOldOnes() throws {
        let dir = try TestDirectory()
        var store: QueueStore? = try QueueStore(path: dir.database, durability: .full, bootID: "test-boot")
        try store!.transaction { delta in
            for i in 0..<5 {
                _ = try Array(#"{"event_name":"e","user_id":"u","seq":\#(i)}"#.utf8).withUnsafeBytes {
                    try store!.insertEvent($0, acceptedAtMillis: 1_795_755_600_000, boottimeMillis: 7, delta: &delta)
                }
            }
            // A segment as schema 6 wrote them: no ids.
            try store!.db.execute(
                """
                INSERT INTO segments (first_id, count, body, bytes, accepted_at_ms, accepted_boottime_ms, boot)
                VALUES (6, 1, '[{"event_name":"old","user_id":"u"}]', 34, 1000, 7, \(try store!.ensureBootRow()))
                """)
            delta.lastID += 1
            delta.pendingEvents += 1
            delta.pendingBytes += 34
        }
        let first = try QueueReader(path: dir.database).readBatch(maxEvents: 10, maxBytes: 1 << 20)
        #expect(first.count == 6)
        #expect(Set(first.events.map(\.uuid)).count == 6)
        #expect(first.events.prefix(5).allSatisfy { $0.uuid.millis == 1_795_755_600_000 })
        #expect(first.events[5].uuid.millis == 1000)
        store = nil
        _ = try QueueStore(path: dir.database, durability: .full, bootID: "test-boot-2")
        let again = try QueueReader(path: dir.database).readBatch(maxEvents: 10, maxBytes: 1 << 20)
        #expect(again.events.map(\.uuid) == first.events.map(\.uuid))
        // Another database derives other ids for its own old events.
        let other = try TestDirectory()
        let otherStore = try QueueStore(path: other.database, durability: .full, bootID: "test-boot")
        #expect(try DatabaseProbe(path: other.database).scalar("SELECT id_salt FROM counters") != 0)
        _ = otherStore
        #expect(
            try DatabaseProbe(path: dir.database).scalar("SELECT id_salt FROM counters")
                != (try DatabaseProbe(path: other.database).scalar("SELECT id_salt FROM counters")))
    }

    /// A salvage copies a dead letter's id as the BLOB it is, and a requeue puts it back on
    /// the event: an id whose bytes hold a NUL and high bytes, which SQL's length() counts
    /// short as TEXT (found by the review: such ids were replaced by derived ones).
    @Test func aSalvagedDeadLetterKeepsItsIdThroughARequeue() throws {
        let dir = try TestDirectory()
        let tricky = EventUUID(high: 0x0000_0000_0001_70C0, low: 0x80FF_0000_0000_0001)
        var store: QueueStore? = try QueueStore(path: dir.database, durability: .full, bootID: "test-boot")
        try store!.transaction { delta in
            let id = try Array(#"{"event_name":"e","user_id":"u"}"#.utf8).withUnsafeBytes {
                try store!.insertEvent($0, acceptedAtMillis: 1000, boottimeMillis: 7, delta: &delta)
            }
            let event = OutgoingBatch.Event(
                id: id, range: 0..<1, acceptedAtMillis: 1000, acceptedBoottimeMillis: 7, boot: try store!.ensureBootRow(),
                uuid: tricky)
            try store!.moveToDeadLetters(event, reason: .rejected, status: 400, response: "bad", failedAtMillis: 2000, delta: &delta)
        }
        store = nil
        #expect(try DeadLetterStore(path: dir.database, readOnly: true).list(limit: nil).map(\.eventUUID) == [tricky])

        let salvaged = dir.file("salvaged.db")
        do {
            let db = try SQLiteConnection(path: salvaged)
            try Schema.migrate(db)
            _ = try QueueSalvage.salvage(from: dir.database, into: db, record: .init(atMillis: 3000, reason: "a test"))
        }
        let letters = try DeadLetterStore(path: salvaged, readOnly: false)
        #expect(try letters.list(limit: nil).map(\.eventUUID) == [tricky])
        #expect(try letters.requeue(.all, nowMillis: 4000, boottimeMillis: 8, bootID: "test-boot") == 1)
        let batch = try QueueReader(path: salvaged).readBatch(maxEvents: 10, maxBytes: 1 << 20)
        #expect(batch.events.map(\.uuid) == [tricky])
    }

    @Test func theNoteCarriesTheIdFirstAndAloneWithoutTheClock() throws {
        let event = Array(#"{"event_name":"e","user_id":"u"}"#.utf8)
        let id = EventUUID(high: 0x0123_4567_89ab_7cde, low: 0x8f01_2345_6789_abcd)
        let fix = EventTimeFix(timestampMillis: nil, word: .synced, acceptedAtMillis: 1_795_824_000_000)
        var alone: [UInt8] = []
        event.withUnsafeBytes { EventRewriter.append($0, fix: fix, sentAtMillis: 0, annotate: false, eventID: id, to: &alone) }
        #expect(
            String(decoding: alone, as: UTF8.self)
                == #"{"event_name":"e","user_id":"u","context":{"trackq":{"event_id":"01234567-89ab-7cde-8f01-23456789abcd"}}}"#)
        var both: [UInt8] = []
        event.withUnsafeBytes { EventRewriter.append($0, fix: fix, sentAtMillis: 0, annotate: true, eventID: id, to: &both) }
        let text = String(decoding: both, as: UTF8.self)
        #expect(
            text.hasPrefix(
                #"{"event_name":"e","user_id":"u","context":{"trackq":{"event_id":"01234567-89ab-7cde-8f01-23456789abcd","clock":"synced","#
            ))
        #expect(both.count - event.count <= EventRewriter.noteBytes(annotate: true, eventIDs: true))
        #expect(alone.count - event.count <= EventRewriter.noteBytes(annotate: false, eventIDs: true))
        #expect((try JSONSerialization.jsonObject(with: Data(both))) is [String: Any])
    }
}
