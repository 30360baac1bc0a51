import Foundation
import Logging
import Testing

@testable import TrackQueue

@Suite struct StoreWriterTests {
    /// Operators find the writer in `top -H`, `perf` and `/proc` by its name.
    @Test func theWriterThreadIsNamedForTheKernel() async throws {
        let dir = try TestDirectory()
        let (writer, _) = try await StoreWriter.start(
            .init(path: dir.database, durability: .full, maxQueueBytes: 1 << 20), logger: Logger(label: "test"))
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
        let names = tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
        #expect(names.contains("trackq-writer\n"))
        await writer.stop()
    }

    @Test func workAfterStopFailsFastInsteadOfHanging() async throws {
        let dir = try TestDirectory()
        let (writer, _) = try await StoreWriter.start(
            .init(path: dir.database, durability: .full, maxQueueBytes: 1 << 20), logger: Logger(label: "test"))
        _ = try await writer.loadDeliveryRecord()
        await writer.stop()
        await #expect(throws: StoreError.self) { try await writer.loadDeliveryRecord() }
        // The stop was recorded.
        #expect(try DatabaseProbe(path: dir.database).scalar("SELECT stopped_at_ms IS NOT NULL FROM daemon_state") == 1)
        await writer.stop()  // twice is harmless
    }

    @Test func linesSubmittedAfterStopAreAnsweredUnavailable() async throws {
        let dir = try TestDirectory()
        let (writer, _) = try await StoreWriter.start(
            .init(path: dir.database, durability: .full, maxQueueBytes: 1 << 20), logger: Logger(label: "test"))
        await writer.stop()
        var batch = EventBatch()
        let parser = EventParser(maxEventBytes: 1000)
        let count = try parser.parse(#"{"event_name":"e","user_id":"u"}"#, stampMillis: 0, into: &batch)
        let answers = await withCheckedContinuation { (continuation: CheckedContinuation<[LineAnswer], Never>) in
            writer.submit(
                IngestSubmission(
                    batch: batch, lines: [.events(count: count), .refused(IngestError(.invalidJSON, "x"))],
                    readAtMillis: 0, readAtBoottimeMillis: 0, completion: { continuation.resume(returning: $0) }))
        }
        #expect(answers == [.refused(.stopped), .refused(IngestError(.invalidJSON, "x"))])
        #expect(try DatabaseProbe(path: dir.database).queued == 0)
    }

    @Test func aDatabaseItCannotOpenFailsTheStart() async throws {
        let dir = try TestDirectory()
        await #expect(throws: StoreError.self) {
            _ = try await StoreWriter.start(
                .init(path: dir.path + "/missing/dir/queue.db", durability: .full, maxQueueBytes: 1),
                logger: Logger(label: "test"))
        }
    }
}

@Suite struct BlockingPoolTests {
    /// The mark that debug builds check before each of the daemon's SQLite calls: set on
    /// the pool's threads, absent on the cooperative pool the tests run on.
    @Test func onlyThePoolsThreadsAreMarked() async throws {
        #expect(!BlockingThreads.isCurrentThreadMarked)
        let pool = BlockingPool()
        #expect(try await pool.run { BlockingThreads.isCurrentThreadMarked })
        #expect(!BlockingThreads.isCurrentThreadMarked)
        await pool.shutdown()
    }
}
