import Foundation
import Testing

@testable import TrackQueue

/// Apps as they really are: half-closing, slow to read, or leaving things behind.
@Suite struct HostileClientTests {
    static let event = #"{"event_name":"e","user_id":"u"}"#

    /// `trackq send -` and `socat` half-close when their input ends, then read: every line
    /// committed is answered, however slowly they read.
    @Test func aHalfClosedSlowReaderGetsEveryAnswer() async throws {
        let dir = try TestDirectory()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", DaemonProcessTests.nowhere], environment: ["TRACKQ_TOKEN": "t"])
        let client = try UnixClient(path: dir.socket)
        var small: Int32 = 4096
        setsockopt(client.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let count = 20_000
        let writer = Thread {
            try? client.write(String(repeating: Self.event + "\n", count: count))
            client.finishWriting()
        }
        writer.start()
        let answers = try await onOwnThread {
            var answers = 0
            var chunk = [UInt8](repeating: 0, count: 512)
            while true {
                // A slow reader: a small read, then a pause, so answers pile up in the daemon.
                var poller = pollfd(fd: client.fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 30_000) > 0 else { break }
                let n = chunk.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                answers += chunk[..<n].filter { $0 == UInt8(ascii: "\n") }.count
                usleep(200)
            }
            return answers
        }
        #expect(answers == count)
        #expect(try DatabaseProbe(path: dir.database).queued == Int64(count))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// Clients that write and never read, short garbage lines or arrays over the limit,
    /// cost the daemon a bounded amount each: its memory stays flat, and an app beside them
    /// is answered.
    @Test func clientsThatNeverReadDoNotGrowMemory() async throws {
        let dir = try TestDirectory()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", DaemonProcessTests.nowhere], environment: ["TRACKQ_TOKEN": "t"])
        try DeliveryTests.enqueue(10, socket: dir.socket)
        let before = try Self.residentKiB(daemon.pid)

        let garbage = Array(String(repeating: "x\n", count: 32_768).utf8)
        let element = #"{"event_name":"e","user_id":"u","p":"\#(String(repeating: "q", count: 100))"}"#
        let oversized = Array(("[" + Array(repeating: element, count: 1001).joined(separator: ",") + "]\n").utf8)
        let clients = try (0..<12).map { _ in try UnixClient(path: dir.socket) }
        let writers = clients.enumerated().map { index, client in
            // Until the daemon stops reading (a send times out), or 16 MiB (refusing a long
            // line costs one short answer, so those are read on as fast as they come).
            client.writeUntilStalled(index % 2 == 0 ? garbage : oversized, atMost: 16 << 20)
        }
        try await waitUntil(timeout: .seconds(60), "the hostile writers to stall") { writers.allSatisfy(\.isFinished) }

        // Beside them, an app is answered.
        let app = try UnixClient(path: dir.socket)
        try app.write(Self.event + "\n")
        #expect(try Answer(app.readLine()).ok)
        let after = try Self.residentKiB(daemon.pid)
        let peak = try Self.residentKiB(daemon.pid, field: "VmHWM:")
        print("hostile-clients: rss_before_kib=\(before) rss_after_kib=\(after) peak_rss_kib=\(peak) clients=12")
        #expect(after - before < 48 * 1024, "RSS grew from \(before) KiB to \(after) KiB")
        withExtendedLifetime(clients) {}
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// An HTTP client that pipelines requests and never reads the answers stalls on its own
    /// socket, as a line client does: the daemon stops reading it instead of buffering answers.
    @Test func anHTTPClientThatNeverReadsDoesNotGrowMemory() async throws {
        let dir = try TestDirectory()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", DaemonProcessTests.nowhere], environment: ["TRACKQ_TOKEN": "t"])
        try DeliveryTests.enqueue(10, socket: dir.socket)
        let before = try Self.residentKiB(daemon.pid)
        let client = try UnixClient(path: dir.socket)
        // 404s: answered at once, each answer ten times its request.
        let chunk = Array(String(repeating: "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", count: 2048).utf8)
        let writer = client.writeUntilStalled(chunk, atMost: 16 << 20)
        try await waitUntil(timeout: .seconds(60), "the writer to stall or finish") { writer.isFinished }
        let app = try UnixClient(path: dir.socket)
        #expect(try app.exchange(httpRequest("POST", "/track", body: Self.event)).status == 200)
        let after = try Self.residentKiB(daemon.pid)
        print("hostile-http-client: rss_before_kib=\(before) rss_after_kib=\(after)")
        #expect(after - before < 48 * 1024, "RSS grew from \(before) KiB to \(after) KiB")
        withExtendedLifetime(client) {}
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// Thousands of pipelined requests queued behind one answered later (`GET /status`, read
    /// off the event loop) are answered one by one, not by a chain of nested calls as deep as
    /// the queue, which would overflow the event loop's stack.
    @Test func thousandsOfPipelinedRequestsBehindASlowOneAreAllAnswered() async throws {
        let dir = try TestDirectory()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", DaemonProcessTests.nowhere], environment: ["TRACKQ_TOKEN": "t"])
        let client = try UnixClient(path: dir.socket)
        let count = 8000
        let burst = "GET /status HTTP/1.1\r\nHost: x\r\n\r\n" + String(repeating: "GET /n HTTP/1.1\r\n\r\n", count: count)
        let writer = Thread { try? client.write(burst) }
        writer.start()
        let statuses = try await onOwnThread { try (0...count).map { _ in try client.readReply(timeout: .seconds(30)).status } }
        #expect(statuses.first == 200)
        #expect(statuses.dropFirst().allSatisfy { $0 == 404 })
        #expect(statuses.count == count + 1)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    static func residentKiB(_ pid: Int32, field: String = "VmRSS:") throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix(field) } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// 1024 connections that never write cannot lock apps out: once they have been quiet
    /// for 10 s, a new app takes the place of the longest-quiet one.
    @Test func idleConnectionsMakeRoomForAnAppAtTheLimit() async throws {
        let dir = try TestDirectory()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", DaemonProcessTests.nowhere], environment: ["TRACKQ_TOKEN": "t"])
        let idle = try (0..<1024).map { _ in try UnixClient(path: dir.socket) }
        let start = ContinuousClock.now
        // At the limit, a newcomer is told so while the others are fresh.
        try await waitUntil("the limit reached") {
            let extra = try UnixClient(path: dir.socket)
            guard let line = try? extra.nextLine(timeout: .seconds(2)) else { return false }
            return line.contains("too many connections")
        }
        try await waitUntil(timeout: .seconds(30), "ten quiet seconds") { ContinuousClock.now - start >= .milliseconds(10_500) }
        let app = try UnixClient(path: dir.socket)
        try app.write(Self.event + "\n")
        #expect(try Answer(app.readLine()).ok)
        withExtendedLifetime(idle) {}
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// At the limit, the connection that arrived last is the one refused, never an app that
    /// connected before it. Rounds of `limit + 1` back-to-back connections: each round's last
    /// one is told "too many connections", and every earlier one is kept.
    @Test func atTheLimitTheLastArrivalIsRefusedNotAnEarlierOne() async throws {
        let limit = 256
        for round in 0..<10 {
            let dir = try TestDirectory()
            let daemon = try await InProcessDaemon(directory: dir) { $0.maxConnections = limit }
            let socket = daemon.socket
            let (kept, last) = try await onOwnThread {
                let clients = try (0...limit).map { _ in try UnixClient(path: socket) }
                let refusal = try? clients[limit].nextLine(timeout: .seconds(5))
                // The earlier ones: open and unanswered (a refusal would have come by now).
                let refusedEarly = clients[..<limit].filter { client in
                    var poller = pollfd(fd: client.fd, events: Int16(POLLIN), revents: 0)
                    return poll(&poller, 1, 0) > 0
                }
                return (limit - refusedEarly.count, refusal)
            }
            #expect(last?.contains("too many connections") == true, "round \(round): the last arrival got \(String(describing: last))")
            #expect(kept == limit, "round \(round): an earlier connection was refused")
            try await daemon.stop()
        }
    }
}
