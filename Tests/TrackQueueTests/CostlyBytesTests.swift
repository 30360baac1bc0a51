import CZlib
import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import TrackQueue

/// zlib's own inflate, for the gzip-decoding sink: the daemon's bodies are read back by
/// zlib, not by our code.
func gunzip(_ input: [UInt8]) -> [UInt8]? {
    var stream = z_stream()
    guard czlib_inflate_init_gzip(&stream) == Z_OK else { return nil }
    defer { inflateEnd(&stream) }
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 << 10)
    var input = input
    return input.withUnsafeMutableBufferPointer { source -> [UInt8]? in
        stream.next_in = source.baseAddress
        stream.avail_in = uInt(source.count)
        while true {
            let result = chunk.withUnsafeMutableBufferPointer { target -> Int32 in
                stream.next_out = target.baseAddress
                stream.avail_out = uInt(target.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            output += chunk[0..<(chunk.count - Int(stream.avail_out))]
            if result == Z_STREAM_END { return stream.avail_in == 0 ? output : nil }
            if result != Z_OK { return nil }
        }
    }
}

/// Costly bytes (issue 23): `--compression gzip` and its fall back, `--max-send-rate`, and
/// `--send-window`'s ranges. Whole processes against real HTTP servers on 127.0.0.1.
@Suite(.serialized) struct CostlyBytesTests {
    private func startDaemon(_ dir: borrowing TestDirectory, _ arguments: [String], name: String = "daemon") async throws
        -> TrackqProcess
    {
        try await TrackqProcess.startDaemon(
            dir, ["--retry-initial", "50ms", "--retry-max", "1s"] + arguments, environment: ["TRACKQ_TOKEN": "t"], logName: name)
    }

    /// The events a sink received, decoding gzip bodies, in order; nil for a body it could not read.
    private static func seqs(_ request: ReceivedRequest) -> [Int]? {
        var body = request.body
        if request.header("content-encoding") == "gzip" {
            guard let plain = gunzip(body) else { return nil }
            body = plain
        }
        guard let array = (try? JSONSerialization.jsonObject(with: Data(body))) as? [[String: Any]] else { return nil }
        return array.compactMap { $0["seq"] as? Int }
    }

    @Test func gzipBodiesReachAGzipDecodingSinkSmallerAndWhole() async throws {
        let dir = try TestDirectory()
        let server = try await TestHTTPServer.start { request, _ in
            request.header("content-encoding") == "gzip" && gunzip(request.body) != nil ? .ok() : .status(415)
        }
        let daemon = try await startDaemon(dir, ["--endpoint", server.url, "--compression", "gzip", "--batch-max-events", "100"])
        try DeliveryTests.enqueue(500, socket: dir.socket) { i in #","properties":{"page":"/products/\#(i % 7)","plan":"pro"}"# }
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        let requests = server.requests
        #expect(requests.allSatisfy { $0.header("content-encoding") == "gzip" })
        #expect(requests.flatMap { Self.seqs($0) ?? [-1] } == Array(0..<500))
        let wire = requests.map(\.body.count).reduce(0, +)
        let plain = requests.map { gunzip($0.body)?.count ?? 0 }.reduce(0, +)
        #expect(wire * 5 < plain, "gzip \(wire) bytes for \(plain) plain")
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        try await server.stop()
    }

    @Test func anAPIThatRefusesGzipWith415GetsTheSameBodyPlainAtOnceAndPlainFromThenOn() async throws {
        let dir = try TestDirectory()
        let server = try await TestHTTPServer.start { request, _ in
            request.header("content-encoding") == nil ? .ok() : .status(415, body: "unsupported media type")
        }
        let daemon = try await startDaemon(dir, ["--endpoint", server.url, "--compression", "gzip", "--batch-max-events", "10"])
        try DeliveryTests.enqueue(30, socket: dir.socket)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        let requests = server.requests
        #expect(requests.first?.header("content-encoding") == "gzip")
        #expect(requests.dropFirst().allSatisfy { $0.header("content-encoding") == nil })
        // The refused body was sent again plain, once: every event arrived once, in order.
        #expect(requests.dropFirst().flatMap { Self.seqs($0) ?? [-1] } == Array(0..<30))
        #expect(try probe.scalar("SELECT count(*) FROM dead_letters") == 0)
        #expect(daemon.stderr.components(separatedBy: "does not take gzip request bodies").count == 2)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        try await server.stop()
    }

    @Test func anAPIThatAnswers400ToGzipOnlyFallsBackButABadEventStillGoesToTheDeadLetters() async throws {
        let dir = try TestDirectory()
        // Refuses every gzip body with 400; plain, refuses only the event marked "poison" (not a
        // hex word: an event id, in hex, could hold "bad").
        let server = try await TestHTTPServer.start { request, _ in
            if request.header("content-encoding") != nil { return .status(400, body: "cannot parse") }
            return request.bodyText.contains("poison") ? .status(400, body: "bad event") : .ok()
        }
        let daemon = try await startDaemon(dir, ["--endpoint", server.url, "--compression", "gzip", "--batch-max-events", "8"])
        try DeliveryTests.enqueue(8, socket: dir.socket) { i in i == 5 ? #","note":"poison""# : "" }
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        #expect(try probe.scalar("SELECT count(*) FROM dead_letters") == 1)
        let requests = server.requests
        // The first body went gzip (400), then plain (400 too: an event, not gzip), so gzip
        // stayed on; the halves' gzip bodies got 400, were sent plain and taken: off from then.
        #expect(requests[0].header("content-encoding") == "gzip")
        #expect(requests[1].header("content-encoding") == nil && Self.seqs(requests[1]) == Array(0..<8))
        let lastGzip = try #require(requests.lastIndex { $0.header("content-encoding") == "gzip" })
        #expect(requests[(lastGzip + 1)...].allSatisfy { $0.header("content-encoding") == nil })
        let delivered = requests.filter { $0.header("content-encoding") == nil && !$0.bodyText.contains("poison") }
        #expect(Set(delivered.flatMap { Self.seqs($0) ?? [] }) == Set([0, 1, 2, 3, 4, 6, 7]))
        #expect(daemon.stderr.components(separatedBy: "does not take gzip request bodies").count == 2)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        try await server.stop()
    }

    /// The cap measured over 30 s: bytes of bodies after the first (the bucket's burst) over
    /// the time from the first's arrival to the last's.
    @Test func maxSendRateHoldsTheBytesOnTheWireWithinTenPercentOverThirtySeconds() async throws {
        let dir = try TestDirectory()
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let rate = 20_000
        let daemon = try await startDaemon(
            dir,
            [
                "--endpoint", server.url, "--max-send-rate", "\(rate)", "--batch-max-bytes", "10000", "--max-event-bytes", "4096",
                "--batch-linger", "0s",
            ])
        // About 900 KB of events: more than 30 s at the cap.
        try DeliveryTests.enqueue(6000, socket: dir.socket) { _ in #","properties":{"padding":"\#(String(repeating: "x", count: 80))"}"# }
        try await waitUntil(timeout: .seconds(60), "30 s of requests") {
            let requests = server.requests
            guard let first = requests.first?.receivedAt, let last = requests.last?.receivedAt else { return false }
            return first.duration(to: last) >= .seconds(30)
        }
        let requests = server.requests
        let span = requests.first!.receivedAt.duration(to: requests.last!.receivedAt)
        let bytes = requests.dropFirst().map(\.body.count).reduce(0, +)
        let seconds = Double(span.components.seconds) + Double(span.components.attoseconds) / 1e18
        let measured = Double(bytes) / seconds
        #expect(abs(measured - Double(rate)) <= 0.1 * Double(rate), "measured \(Int(measured)) bytes/s over \(seconds) s")
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        try await server.stop()
    }
}

/// The decisions: pure values.
@Suite struct CostlyBytesDecisionTests {
    @Test func gzipCompressesAndZlibReadsItBack() throws {
        let text = Array(String(repeating: #"{"event_name":"page_viewed","user_id":"u-1"},"#, count: 200).utf8)
        let compressed = try #require(Gzip.compress(text))
        #expect(compressed.count * 10 < text.count)
        #expect(compressed.prefix(2) == [0x1f, 0x8b])
        #expect(gunzip(compressed) == text)
        #expect(gunzip(try #require(Gzip.compress([]))) == [])
    }

    @Test func compressionFallsBackOnlyWhenTheAPIRefusesGzip() {
        var policy = CompressionPolicy(compressing: true)
        #expect(policy.compresses)
        // A 400 before gzip was proven: try plain; a 400 plain too is an event's fault.
        var next = policy.compressedAnswered(400)
        #expect(next == .resendPlain(fellBack: false))
        var fellBack = policy.plainAnswered(400)
        #expect(!fellBack && policy.compresses)
        // A 400 then a plain 2xx: the API cannot read gzip.
        next = policy.compressedAnswered(400)
        #expect(next == .resendPlain(fellBack: false))
        fellBack = policy.plainAnswered(200)
        #expect(fellBack && !policy.compresses && policy.state == .refused)

        var proven = CompressionPolicy(compressing: true)
        // After a 2xx, a 400 or a 503 is about the events or the API: the answer stands.
        let answers = [200, 400, 503].map { proven.compressedAnswered($0) }
        #expect(answers == [.done, .done, .done])
        next = proven.compressedAnswered(415)
        #expect(next == .resendPlain(fellBack: true) && !proven.compresses)

        #expect(!CompressionPolicy(compressing: false).compresses)
    }

    @Test func theRateBucketHoldsOneBatchAndFillsAtTheRate() {
        var bucket = SendRate<ManualInstant>(bytesPerSecond: 1000, burst: 5000)
        let start = ManualInstant(offset: .zero)
        #expect(bucket.wait(for: 5000, now: start) == nil)  // full: a batch goes at once
        bucket.spend(5000, now: start)
        #expect(bucket.wait(for: 2000, now: start) == .seconds(2))
        #expect(bucket.wait(for: 2000, now: start.advanced(by: .milliseconds(1500))) == .milliseconds(500))
        #expect(bucket.wait(for: 2000, now: start.advanced(by: .seconds(2))) == nil)
        // Never more than one batch held, however long it was quiet.
        #expect(bucket.wait(for: 5001, now: start.advanced(by: .seconds(3600))) == nil)
        bucket.spend(5000, now: start.advanced(by: .seconds(3600)))
        #expect(bucket.wait(for: 1, now: start.advanced(by: .seconds(3600))) == .milliseconds(1))
        // A body larger than the bucket waits for a full bucket and takes it below zero.
        var big = SendRate<ManualInstant>(bytesPerSecond: 100, burst: 1000)
        big.spend(3000, now: start)
        #expect(big.wait(for: 1, now: start.advanced(by: .seconds(20))) == .milliseconds(10))
    }

    @Test func sendWindowsAreReadAndTellWhenTheyOpen() throws {
        let night = try SendWindow.parse("22:00-06:00").get()
        #expect(night.isOpen(secondOfDay: 23 * 3600) && night.isOpen(secondOfDay: 5 * 3600 + 3599))
        #expect(!night.isOpen(secondOfDay: 6 * 3600) && !night.isOpen(secondOfDay: 12 * 3600))
        #expect(night.secondsUntilOpen(secondOfDay: 21 * 3600 + 1800) == 1800)
        let two = try SendWindow.parse("12:00-13:00, 01:30-02:00").get()
        #expect(two.secondsUntilOpen(secondOfDay: 3600) == 1800)
        #expect(two.secondsUntilOpen(secondOfDay: 13 * 3600) == 12 * 3600 + 1800)
        #expect(two.description == "12:00-13:00,01:30-02:00")
        #expect(try SendWindow.parse("00:00-24:00").get().isOpen(secondOfDay: 86_399))
        for bad in ["", "22-06", "25:00-01:00", "10:00-10:00", "10:60-11:00", "24:00-01:00", "1:00-2:00", "10:00-11:00,"] {
            #expect(throws: SendWindow.ParseError.self, "\(bad)") { try SendWindow.parse(bad).get() }
        }
    }
}
