import Foundation
import Logging
import NIOPosix
import Testing

@testable import TrackQueue

/// The bytes of events in flight to the writer are bounded across connections, not per
/// connection: many clients writing at once behind a slow disk do not grow the daemon.
@Suite struct IngestBudgetTests {
    @Test func connectionsStopReadingWhenTheSharedBudgetIsSpentAndResumeAfterCommits() async throws {
        let dir = try TestDirectory()
        let logger = Logger(label: "test")
        let (writer, _) = try await StoreWriter.start(
            .init(path: dir.database, durability: .normal, maxQueueBytes: 1 << 30), logger: logger)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var options = IngestServer.Options(socketPath: dir.socket, socketMode: 0o600, maxEventBytes: 10_000)
        options.maxBytesInFlight = 64 << 10
        let server = try await IngestServer.bind(options: options, writer: writer, group: group, logger: logger)
        let gate = DispatchSemaphore(value: 0)
        writer.pause(until: gate)  // a disk that does not answer yet

        let clients = 8
        let perClient = 2000
        let padding = String(repeating: "x", count: 200)
        let socket = dir.socket
        let answered = Task {
            try await withThrowingTaskGroup(of: Int.self) { tasks in
                for c in 0..<clients {
                    tasks.addTask {
                        try await onOwnThread {
                            let connection = try UnixLineConnection(path: socket)
                            var text = ""
                            for i in 0..<perClient {
                                text += #"{"event_name":"e","user_id":"c\#(c)","properties":{"i":\#(i),"p":"\#(padding)"}}"# + "\n"
                            }
                            try connection.write(text)
                            var accepted = 0
                            for _ in 0..<perClient {
                                guard let line = try connection.nextLine(timeout: .seconds(60)) else { break }
                                if line.contains(#""ok":true"#) { accepted += 1 }
                            }
                            return accepted
                        }
                    }
                }
                return try await tasks.reduce(0, +)
            }
        }
        // Behind the paused writer the budget runs out and connections wait for it.
        try await waitUntil("a connection waiting for the budget") { server.budget.snapshot.waiting >= 1 }
        let held = server.budget.snapshot
        // At most one submission (1 MiB of events and one line) per event loop past the limit.
        #expect(held.used <= options.maxBytesInFlight + 2 * ((1 << 20) + 10_000))
        gate.signal()
        #expect(try await answered.value == clients * perClient)
        #expect(try DatabaseProbe(path: dir.database).queued == Int64(clients * perClient))
        #expect(server.budget.snapshot.used == 0)
        #expect(server.budget.snapshot.peak <= options.maxBytesInFlight + 2 * ((1 << 20) + 10_000))

        await server.drain()
        await writer.stop()
        try await group.shutdownGracefully()
    }
}
