import Logging
import Testing

@testable import TrackQueue

/// The group commit's SQL: many rows an `INSERT`, runs of delivered events removed by range,
/// and delivery's writes sharing an ingest group's transaction.
@Suite struct GroupCommitTests {
    private let parser = EventParser(maxEventBytes: 10_000)

    /// A submission of `lines`: `nil` is a line refused at parsing, `n` a JSON array of n events.
    private func submission(_ lines: [Int?], tag: String, completion: @escaping @Sendable ([LineAnswer]) -> Void = { _ in })
        throws -> IngestSubmission
    {
        var batch = EventBatch()
        var entries: [LineEntry] = []
        for (l, line) in lines.enumerated() {
            guard let count = line else {
                entries.append(.refused(IngestError(.invalidJSON, "bad")))
                continue
            }
            let events = (0..<count).map { #"{"event_name":"\#(tag)-\#(l)-\#($0)","user_id":"u"}"# }
            let text = count == 1 ? events[0] : "[" + events.joined(separator: ",") + "]"
            entries.append(.events(count: try parser.parse(text, stampMillis: 1, into: &batch)))
        }
        return IngestSubmission(batch: batch, lines: entries, readAtMillis: 5, readAtBoottimeMillis: 6, completion: completion)
    }

    /// Ids answered per line are those of the events, in order, across segment boundaries
    /// (at most 256 events a segment), refused lines and a second submission in the same group.
    @Test func answeredIdsAreTheEventsIdsAcrossSegmentBoundaries() throws {
        let dir = try TestDirectory()
        let store = try QueueStore(path: dir.database, durability: .full, bootID: "b")
        _ = try store.append([try submission([1], tag: "warm")], maxQueueBytes: 1 << 30)
        let answers = try store.append(
            [try submission([40, nil, 1, 0, 231, nil, 33], tag: "a"), try submission([3, 65], tag: "b")], maxQueueBytes: 1 << 30)
        let probe = DatabaseProbe(path: dir.database)
        var expected: [String] = []
        let lines: [(Int, [Int?], String)] = [(0, [40, nil, 1, 0, 231, nil, 33], "a"), (1, [3, 65], "b")]
        for (s, counts, tag) in lines {
            for (l, count) in counts.enumerated() {
                switch (answers[s][l], count) {
                case (.refused, nil): continue
                case (.accepted(let n, let first, let last), let count?):
                    #expect(n == count)
                    guard n > 0 else { continue }
                    #expect(last - first + 1 == Int64(n))
                    let names = try probe.strings(
                        "SELECT json_extract(body, '$.event_name') FROM queue WHERE id BETWEEN \(first) AND \(last) ORDER BY id")
                    #expect(names == (0..<n).map { "\(tag)-\(l)-\($0)" })
                    expected += names
                default: Issue.record("line \(s).\(l): \(answers[s][l])")
                }
            }
        }
        #expect(try probe.strings("SELECT json_extract(body, '$.event_name') FROM queue WHERE id > 1 ORDER BY id") == expected)
        #expect(try probe.scalar("SELECT count(*) FROM queue WHERE accepted_at_ms = 5 AND accepted_boottime_ms = 6") == 374)
        #expect(try probe.scalar("SELECT count(*) FROM segments WHERE accepted_at_ms = 5") == 4)  // 1, 256 + 49, 68
        #expect(store.counters.pendingEvents == 374)
    }

    /// A run already partly gone (an at-least-once repeat) is counted by what it removed.
    @Test func deliveredRunsAreRemovedByRangeAndCountedByWhatWasThere() throws {
        let dir = try TestDirectory()
        let store = try QueueStore(path: dir.database, durability: .full, bootID: "b")
        _ = try store.append([try submission([10], tag: "x")], maxQueueBytes: 1 << 30)
        let batch = try QueueReader(path: dir.database).readBatch(maxEvents: 100, maxBytes: 1 << 20)
        let bytes = Int64(batch.events.reduce(0) { $0 + $1.range.count })
        let before = store.counters
        try store.transaction { delta in try store.removeDelivered([batch.events[2..<5]], delta: &delta) }
        try store.transaction { delta in try store.removeDelivered([batch.events[0..<4], batch.events[7..<9]], delta: &delta) }
        let probe = DatabaseProbe(path: dir.database)
        let left = try probe.strings("SELECT id FROM queue ORDER BY id").map { Int64($0)! }
        #expect(left == [5, 6, 9].map { batch.events[$0].id })
        #expect(store.counters.delivered - before.delivered == 7)  // 2, 3, 4, then 0, 1 and 7, 8
        #expect(store.counters.pendingEvents == 3)
        let leftBytes = [5, 6, 9].reduce(Int64(0)) { $0 + Int64(batch.events[$1].range.count) }
        #expect(store.counters.pendingBytes == leftBytes)
        #expect(try probe.scalar("SELECT pending_bytes FROM counters") == leftBytes)
        #expect(bytes > leftBytes)
    }

    /// While apps write, delivery's answer is recorded in the next ingest group's transaction:
    /// one commit for both.
    @Test func deliveryWritesJoinTheNextGroupCommitWhileAppsWrite() async throws {
        let dir = try TestDirectory()
        var options = StoreWriter.Options(path: dir.database, durability: .full, maxQueueBytes: 1 << 30)
        options.pacing.joinWindow = 600 * WriterPacing.millisecond * 1000  // no test is that slow
        let (writer, _) = try await StoreWriter.start(options, logger: Logger(label: "test"))
        func submit(_ tag: String) async throws -> [LineAnswer] {
            let sub = try submission([2], tag: tag)
            return await withCheckedContinuation { continuation in
                writer.submit(
                    IngestSubmission(
                        batch: sub.batch, lines: sub.lines, readAtMillis: 5, readAtBoottimeMillis: 6,
                        completion: { continuation.resume(returning: $0) }))
            }
        }
        _ = try await submit("first")
        let batch = try QueueReader(path: dir.database).readBatch(maxEvents: 100, maxBytes: 1 << 20)
        let before = writer.transactionsCommitted
        // Within the join window of that commit: the answer waits for the next group.
        let recorded = Task {
            try await writer.recordAnswer(delivered: [batch.events[...]], refused: [], record: DeliveryRecord(), atMillis: 1)
        }
        try await waitUntil("the answer to be held for the next group") { writer.partsHeld == 1 }
        #expect(writer.transactionsCommitted == before)
        _ = try await submit("second")
        try await recorded.value
        #expect(writer.transactionsCommitted == before + 1)
        #expect(writer.partsHeld == 0)
        let probe = DatabaseProbe(path: dir.database)
        #expect(try probe.strings("SELECT body FROM queue ORDER BY id").count == 2)
        #expect(try probe.scalar("SELECT delivered FROM counters") == 2)
        await writer.stop()
    }

    /// With no app writing, delivery's answer commits at once on its own.
    @Test func deliveryWritesCommitAtOnceWhenAppsAreQuiet() async throws {
        let dir = try TestDirectory()
        let (writer, _) = try await StoreWriter.start(
            .init(path: dir.database, durability: .full, maxQueueBytes: 1 << 30), logger: Logger(label: "test"))
        let before = writer.transactionsCommitted
        try await writer.recordAnswer(delivered: [], refused: [], record: DeliveryRecord(), atMillis: 1)
        #expect(writer.transactionsCommitted == before + 1)
        await writer.stop()
    }
}

@Suite struct WriterPacingTests {
    private let ms = WriterPacing.millisecond

    @Test func deliveryWaitsForAGroupOnlyWhileAppsAreWriting() {
        var pacing = WriterPacing()
        #expect(pacing.holdPartsUntil(now: 0) == nil)  // no ingest yet
        pacing.ingestCommitted(at: 100 * ms)
        #expect(pacing.holdPartsUntil(now: 101 * ms) == 105 * ms)
        #expect(pacing.holdPartsUntil(now: 105 * ms) == nil)
        #expect(pacing.holdPartsUntil(now: 1_000 * ms) == nil)
    }

    @Test func spaceIsGivenBackWhenAppsPauseOrEveryFewSecondsUnderSteadyIngest() {
        var pacing = WriterPacing()
        #expect(pacing.nextReclaim(now: 0) == nil)
        pacing.reclaimWanted = true
        #expect(pacing.nextReclaim(now: 0) == nil)  // never any ingest: now
        pacing.ingestCommitted(at: 1_000 * ms)
        pacing.reclaimed(at: 1_000 * ms, more: true)
        #expect(pacing.nextReclaim(now: 1_050 * ms) == 1_200 * ms)  // apps idle 200 ms
        #expect(pacing.nextReclaim(now: 1_200 * ms) == nil)
        // Steady ingest: at most one step every 5 s.
        pacing.ingestCommitted(at: 5_900 * ms)
        #expect(pacing.nextReclaim(now: 5_950 * ms) == 6_000 * ms)
        #expect(pacing.nextReclaim(now: 6_000 * ms) == nil)
        pacing.reclaimed(at: 6_000 * ms, more: false)
        #expect(!pacing.reclaimWanted)
        #expect(pacing.nextReclaim(now: 6_000 * ms) == nil)
    }

    @Test func farTimesDoNotTrap() {
        var pacing = WriterPacing()
        pacing.ingestCommitted(at: .max)
        pacing.reclaimWanted = true
        pacing.reclaimed(at: .max, more: true)
        _ = pacing.holdPartsUntil(now: .max)
        _ = pacing.nextReclaim(now: .min)
    }
}
