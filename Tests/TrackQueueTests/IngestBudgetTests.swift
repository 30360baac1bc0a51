import Foundation
import Logging
import NIOPosix
import Testing

@testable import TrackQueue

/// The bytes of events in flight to the writer are bounded across connections, not per
/// connection: many clients writing at once behind a slow disk do not grow the daemon.
@Suite struct IngestBudgetTests {
    @Test func connectionsStopReadingWhenTheSharedBudgetIsSpentAndResumeAfterCommits() async throws {
        try await Self.withServer(budget: 64 << 10) { server, writer, dir in
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
            // Past the limit by at most one short read on each connection, with the part of a
            // line it held unframed before that read (counted once the read completes it): no
            // long read fits. (Without the held part, as this bound was until now, the test
            // failed in 3 of 6 runs alone on cba17b0, by up to one line a connection.)
            let longestLine =
                #"{"event_name":"e","user_id":"c\#(clients - 1)","properties":{"i":\#(perClient - 1),"p":"\#(padding)"}}"#
                .utf8.count + 1
            let bound = server.budget.limit + clients * (LineLimits().readBytes + longestLine)
            #expect(held.used <= bound)
            gate.signal()
            #expect(try await answered.value == clients * perClient)
            #expect(try DatabaseProbe(path: dir.database).queued == Int64(clients * perClient))
            #expect(server.budget.snapshot.used == 0)
            #expect(server.budget.snapshot.peak <= bound)
        }
    }

    /// Behind a disk that does not answer, 256 apps each with 500 KB to send cost the daemon
    /// the budget and a short read each, not a read burst each. Every byte read counts until
    /// it is answered, and a connection reads only while the budget has room, one buffer at a
    /// time unless a burst fits. Before, each connection read a burst of up to 256 KiB into a
    /// buffer of its own while the budget was spent, and NIO's pool kept as much again:
    /// 100 MB more for 256 connections.
    @Test func busyConnectionsBehindASlowDiskHoldTheBudgetNotABurstEach() async throws {
        try await Self.withServer { server, writer, dir in
            let clients = 256
            let line = #"{"event_name":"e","user_id":"u","properties":{"p":"\#(String(repeating: "x", count: 230))"}}"#
            let warmUp = Array(String(repeating: line + "\n", count: 400).utf8)
            let load = Array(String(repeating: line + "\n", count: 1800).utf8)
            let before = try HostileClientTests.residentKiB(getpid())
            let connections = try (0..<clients).map { _ in try UnixLineConnection(path: dir.socket) }
            // Apps that have been sending for a while: NIO sizes their reads up to its largest.
            #expect(try await Self.pipeline(warmUp, on: connections) == clients * 400)

            let gate = DispatchSemaphore(value: 0)
            writer.pause(until: gate)  // a disk that does not answer yet
            let answered = Task { try await Self.pipeline(load, on: connections) }
            // Most connections have read what the budget lets them and wait for it.
            try await waitUntil(timeout: .seconds(60), "the connections to wait for the budget") {
                server.budget.snapshot.waiting >= clients * 3 / 4
            }
            let held = try HostileClientTests.residentKiB(getpid()) - before
            gate.signal()
            #expect(try await answered.value == clients * 1800)
            print("busy-connections: clients=\(clients) rss_held_kib=\(held) budget_peak=\(server.budget.snapshot.peak)")
            // The budget (8 MiB) and a short read each (4 MiB), read and parsed, NIO's buffers,
            // the connections: with room to spare.
            #expect(held < 48 * 1024, "\(clients) waiting connections hold \(held) KiB")
            #expect(server.budget.snapshot.used == 0)
        }
    }

    /// Every byte read leaves the budget again, whatever it held: lines accepted or refused,
    /// blank lines, the rest of a line too long, a last line without a newline, a line cut off
    /// by a client that went away. Otherwise the budget would shrink until nobody could read.
    @Test func everyByteReadLeavesTheBudgetAgain() async throws {
        try await Self.withServer(maxLineBytes: 4096) { server, _, dir in
            let event = #"{"event_name":"e","user_id":"u"}"#

            let mixed = try UnixLineConnection(path: dir.socket)
            try mixed.write("\n \r\n\(event)\nnot json\n\(String(repeating: "y", count: 50_000))\n\t\n\(event)")
            mixed.finishWriting()  // the last line has no newline
            let answers = try mixed.readToEnd().split(separator: "\n")
            #expect(answers.count == 4)
            #expect(answers.map { $0.hasPrefix(#"{"ok":true"#) } == [true, false, false, true])

            let blank = try UnixLineConnection(path: dir.socket)
            try blank.write(String(repeating: " \n", count: 10_000))
            blank.finishWriting()
            #expect(try blank.readToEnd().isEmpty)

            do {
                let cutOff = try UnixLineConnection(path: dir.socket)
                try cutOff.write(event + "\n" + event + "\n" + #"{"event_name":"#)
                #expect(try cutOff.readLines(2).allSatisfy { $0.hasPrefix(#"{"ok":true"#) })
            }  // closed with a line unfinished

            try await waitUntil("every connection to close") { server.connections.all().isEmpty }
            // The last answers are given back on the event loops, after the close.
            try await waitUntil("the budget to be whole again") { server.budget.snapshot.used == 0 }
            #expect(server.budget.snapshot.reserved == 0)
        }
    }

    /// Clients that start lines and never finish them hold what they sent, but not the budget:
    /// an app beside them is read and answered. (Counted from the read, five 15 KB starts of
    /// lines spent a 64 KiB budget for good, and the daemon stopped reading anyone.)
    @Test func unfinishedLinesDoNotStopOtherApps() async throws {
        try await Self.withServer(budget: 64 << 10) { server, _, dir in
            let socket = dir.socket
            let stalled = try (0..<5).map { _ in try UnixLineConnection(path: socket) }
            for client in stalled { try client.write(#"{"event_name":"e","p":""# + String(repeating: "y", count: 15_000)) }
            try await waitUntil("the daemon to read the unfinished lines") {
                stalled.allSatisfy { Self.unreadBytes($0.fd) == 0 }
            }
            let app = try UnixLineConnection(path: socket)
            try app.write(#"{"event_name":"e","user_id":"u"}"# + "\n")
            #expect(try app.readLine(timeout: .seconds(10)).hasPrefix(#"{"ok":true"#))
            withExtendedLifetime(stalled) {}
        }
    }

    /// Clients that pipeline and never read their answers stall on their own sockets, holding
    /// at most a read each outside the budget: an app beside them is read and answered.
    @Test func clientsThatNeverReadDoNotStopOtherApps() async throws {
        try await Self.withServer(budget: 64 << 10) { server, _, dir in
            let socket = dir.socket
            let line = #"{"event_name":"e","user_id":"u","p":"\#(String(repeating: "z", count: 200))"}"# + "\n"
            let chunk = Array(String(repeating: line, count: 1000).utf8)
            let deaf = try (0..<8).map { _ in try UnixLineConnection(path: socket) }
            let writers = deaf.map { $0.writeUntilStalled(chunk) }
            try await waitUntil(timeout: .seconds(60), "the deaf clients to stall") { writers.allSatisfy(\.isFinished) }
            let app = try UnixLineConnection(path: socket)
            try app.write(line)
            #expect(try app.readLine(timeout: .seconds(10)).hasPrefix(#"{"ok":true"#))
            withExtendedLifetime(deaf) {}
        }
    }

    /// Bytes a client has sent that the daemon has not read yet (`SIOCOUTQ`).
    static func unreadBytes(_ fd: Int32) -> Int {
        var queued: Int32 = 0
        return ioctl(fd, UInt(TIOCOUTQ), &queued) == 0 ? Int(queued) : -1
    }

    /// An ingest server over a real store, with the default budget and line limit unless
    /// told; stopped after `body`, closing within 1 s connections that still wait for their
    /// answers or send.
    static func withServer(
        budget: Int? = nil, maxLineBytes: Int? = nil,
        _ body: (IngestServer, StoreWriter, borrowing TestDirectory) async throws -> Void
    ) async throws {
        let dir = try TestDirectory()
        let logger = Logger(label: "test")
        let (writer, _) = try await StoreWriter.start(
            .init(path: dir.database, durability: .normal, maxQueueBytes: 1 << 30), logger: logger)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var options = IngestServer.Options(socketPath: dir.socket, socketMode: 0o600, maxEventBytes: 10_000)
        if let budget { options.maxBytesInFlight = budget }
        if let maxLineBytes { options.maxLineBytes = maxLineBytes }
        let server = try await IngestServer.bind(options: options, writer: writer, group: group, logger: logger)
        try await body(server, writer, dir)
        await server.drain(timeout: .seconds(1))
        await writer.stop()
        try await group.shutdownGracefully()
    }

    /// A connection reserves room for a burst of reads only while its client has more to send
    /// (its last read filled the buffer). Before, every connection reserved again as soon as
    /// a burst ended, so connections that had gone quiet held the room, and busy ones read
    /// 16 KiB at a time.
    @Test func quietConnectionsHoldNoRoomForBursts() async throws {
        try await Self.withServer { server, _, dir in
            let socket = dir.socket
            let line = #"{"event_name":"e","user_id":"u","p":"\#(String(repeating: "q", count: 200))"}"# + "\n"
            let text = String(repeating: line, count: 2000)  // 500 KB: reads that fill their buffers
            let clients = try (0..<8).map { _ in try UnixLineConnection(path: socket) }
            for client in clients {
                try client.write(text)
                #expect(try client.readLines(2000).allSatisfy { $0.hasPrefix(#"{"ok":true"#) })
            }
            // All quiet now, each waiting for its next bytes with a read asked for.
            try await waitUntil("the budget to be whole again") { server.budget.snapshot.used == 0 }
            #expect(server.budget.snapshot.reserved == 0)
            withExtendedLifetime(clients) {}
        }
    }

    /// Room reserved for long reads only keeps them, together, within the limit; it never
    /// stops a connection reading (an idle connection may hold its reservation for long).
    @Test func aReservationShortensReadsAndNeverStopsThem() {
        let budget = IngestBudget(limit: 100)
        #expect(budget.tryReserve(60))
        #expect(!budget.tryReserve(60))  // two long reads would not fit together
        #expect(budget.admits)
        budget.take(30)
        #expect(!budget.tryReserve(11))  // 30 held and 60 reserved leave 10
        #expect(budget.tryReserve(10))
        budget.release(60)
        budget.take(80)  // a long read came: 110 held
        #expect(!budget.admits)
        #expect(!budget.tryReserve(1))
        budget.give(110)
        budget.release(10)
        #expect(budget.snapshot.used == 0 && budget.snapshot.reserved == 0)
        #expect(budget.tryReserve(100))
    }

    /// Writes `text` on every connection while reading the answers; the lines accepted.
    static func pipeline(_ text: [UInt8], on connections: [UnixLineConnection]) async throws -> Int {
        let lines = text.count { $0 == UInt8(ascii: "\n") }
        return try await withThrowingTaskGroup(of: Int.self) { tasks in
            for connection in connections {
                tasks.addTask {
                    try await onOwnThread { try connection.write(text) }
                    return 0
                }
                tasks.addTask {
                    try await onOwnThread {
                        var accepted = 0
                        for _ in 0..<lines {
                            guard let line = try connection.nextLine(timeout: .seconds(120)) else { break }
                            if line.hasPrefix(#"{"ok":true"#) { accepted += 1 }
                        }
                        return accepted
                    }
                }
            }
            return try await tasks.reduce(0, +)
        }
    }
}
