import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import TrackQueue

/// The HTTP face's connection as a plain value: events in, actions out.
@Suite struct HTTPConnectionTests {
    private static let options = HTTPConnection.Options(
        maxBodyBytes: 100, requestTimeout: .seconds(30), idleTimeout: .seconds(60), lingerTime: .seconds(5), lingerBytes: 1000)

    private func post(length: Int?, expect: Bool = false, keepAlive: Bool = true) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        if let length { headers.add(name: "Content-Length", value: String(length)) }
        if expect { headers.add(name: "Expect", value: "100-continue") }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        return HTTPRequestHead(version: .http1_1, method: .POST, uri: "/api/track", headers: headers)
    }

    private func written(_ actions: [HTTPConnection.Action]) -> (status: HTTPResponseStatus, closes: Bool)? {
        for case .write(let answer, _, let closes) in actions { return (answer.status, closes) }
        return nil
    }

    @Test func aPostIsReadOnceTheBudgetHasRoomAndAnsweredAfterItsCommit() {
        var c = HTTPConnection(options: Self.options)
        #expect(c.opened() == [.arm(.seconds(60))])
        #expect(c.head(post(length: 10, expect: true), route: .track(reserve: 10)) == [.arm(.seconds(30)), .reserve(10)])
        #expect(c.readRequested() == [], "no read while the body has no room")
        #expect(c.budgetGranted(10) == [.sendContinue(.http1_1), .read])
        #expect(c.bodyPart(bytes: 10) == [.keepBody])
        #expect(c.end() == [.cancelTimer, .submit])
        let answered = c.answerReady(.failure(.ok, code: "x", message: "y"))
        #expect(answered.first == .release(10))
        #expect(answered.contains(.arm(.seconds(60))))
        #expect(written(answered)! == (.ok, false))
        #expect(c.isIdle)
    }

    @Test func aBodyThatEndsWhileWaitingForRoomIsSubmittedWhenRoomComes() {
        var c = HTTPConnection(options: Self.options)
        _ = c.head(post(length: 0), route: .track(reserve: 0))
        #expect(c.end() == [.cancelTimer])
        #expect(c.budgetGranted(0) == [.submit])
    }

    @Test func aBodyOverTheLimitIsAnsweredAtOnceThenTheRestIsReadBeforeTheClose() {
        var c = HTTPConnection(options: Self.options)
        _ = c.head(post(length: nil), route: .track(reserve: 100))
        _ = c.budgetGranted(100)
        #expect(c.bodyPart(bytes: 60) == [.keepBody])
        let refused = c.bodyPart(bytes: 60)
        #expect(refused.first == .release(100))
        #expect(refused.contains(.arm(.seconds(5))))
        #expect(written(refused)! == (.payloadTooLarge, true))
        #expect(!refused.contains(.close), "the client is still sending: it would be reset")
        #expect(c.isLingering)
        #expect(c.readRequested() == [.read], "lingering reads whatever the budget")
        #expect(c.bodyPart(bytes: 500) == [])
        #expect(c.end() == [.cancelTimer, .close], "all of it read: now the close is clean")
    }

    @Test func aRefusalOnTheHeadLingersAndTheLingerIsBoundedInBytesAndTime() {
        var c = HTTPConnection(options: Self.options)
        let actions = c.head(post(length: 5000), route: .answer(.bodyTooLarge(limit: 100)))
        #expect(written(actions)! == (.payloadTooLarge, true))
        #expect(c.isLingering)
        #expect(c.bodyPart(bytes: 1000) == [])
        #expect(c.bodyPart(bytes: 1) == [.cancelTimer, .close], "past lingerBytes")

        var timed = HTTPConnection(options: Self.options)
        _ = timed.head(post(length: 5000), route: .answer(.bodyTooLarge(limit: 100)))
        #expect(timed.timedOut() == [.cancelTimer, .close], "past lingerTime")
    }

    @Test func bytesThatDoNotParseGetOne400OrNoneAfterAnAnswer() {
        var idle = HTTPConnection(options: Self.options)
        let refused = idle.malformed()
        #expect(written(refused)! == (.badRequest, true))
        #expect(refused.last == .close)

        // A client that half-closes before sending the body it declared: NIO's decoder fails at
        // the EOF, after the 413 went out. A second answer would confuse it: only the close.
        var lingering = HTTPConnection(options: Self.options)
        _ = lingering.head(post(length: 5000), route: .answer(.bodyTooLarge(limit: 100)))
        #expect(lingering.malformed() == [.cancelTimer, .close])
    }

    @Test func aStalledRequestIsAnswered408AndClosedWithoutLingering() {
        var c = HTTPConnection(options: Self.options)
        _ = c.head(post(length: 50), route: .track(reserve: 50))
        _ = c.budgetGranted(50)
        let actions = c.timedOut()
        #expect(written(actions)! == (.requestTimeout, true))
        #expect(actions.first == .release(50))
        #expect(actions.last == .close)
    }

    @Test func anAnswerWaitsForAPeerThatDoesNotReadThenGoesOut() {
        var c = HTTPConnection(options: Self.options)
        _ = c.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/status"), route: .status)
        #expect(c.end() == [.cancelTimer, .serve(.status)])
        #expect(c.writabilityChanged(to: false) == [])
        #expect(c.answerReady(.failure(.ok, code: "x", message: "y")) == [.arm(.seconds(60))], "parked")
        #expect(written(c.writabilityChanged(to: true))! == (.ok, false))
    }

    /// Writing an answer's end hands NIO's pipelining handler the next request at once, inside
    /// the write: whether a held read goes on is decided after it, by the state it left.
    @Test func aHeldReadIsDecidedAfterTheWriteNotBefore() {
        var c = HTTPConnection(options: Self.options)
        _ = c.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/status"), route: .status)
        _ = c.end()
        _ = c.writabilityChanged(to: false)
        #expect(c.readRequested() == [], "held: the peer is not reading")
        _ = c.answerReady(.failure(.ok, code: "x", message: "y"))
        let written = c.writabilityChanged(to: true)
        #expect(!written.contains(.read))
        #expect(written.last == .readIfAllowed)
        // The write handed over a pipelined POST whose body has no room yet.
        _ = c.head(post(length: 10), route: .track(reserve: 10))
        #expect(c.readsAfterWrite() == [], "no read past the budget")
        #expect(c.budgetGranted(10) == [.read])
    }

    @Test func aDrainClosesAnIdleConnectionAndTheNextAnswerOfABusyOne() {
        var idle = HTTPConnection(options: Self.options)
        #expect(idle.inputEnded() == [.cancelTimer, .close])

        var busy = HTTPConnection(options: Self.options)
        _ = busy.head(post(length: 1), route: .track(reserve: 1))
        _ = busy.budgetGranted(1)
        _ = busy.bodyPart(bytes: 1)
        _ = busy.end()
        #expect(busy.inputEnded() == [])
        let answered = busy.answerReady(.failure(.ok, code: "x", message: "y"))
        #expect(written(answered)! == (.ok, true))
        #expect(answered.last == .close)
    }

    @Test func roomGrantedAfterTheConnectionWentAwayIsGivenBack() {
        var c = HTTPConnection(options: Self.options)
        _ = c.head(post(length: 10), route: .track(reserve: 10))
        #expect(c.inactive() == [.cancelTimer])
        #expect(c.budgetGranted(10) == [.release(10)])

        var reading = HTTPConnection(options: Self.options)
        _ = reading.head(post(length: 10), route: .track(reserve: 10))
        _ = reading.budgetGranted(10)
        #expect(reading.inactive() == [.cancelTimer, .release(10)])
    }

    @Test func routesAreDecidedFromTheHeadAlone() {
        var options = HTTPFace.Options()
        options.connection.maxBodyBytes = 100
        #expect(options.route(post(length: 10)) == .track(reserve: 10))
        #expect(options.route(post(length: nil)) == .track(reserve: 100), "chunked: room for the largest body")
        #expect(options.route(post(length: 101)) == .answer(.bodyTooLarge(limit: 100)))
        let get = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api/track")
        #expect(options.route(get) == .answer(.methodNotAllowed(allow: "POST")))
        #expect(options.route(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/metrics?x=1")) == .metrics)
        #expect(options.route(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/nope")) == .answer(.notFound(path: "/nope")))
        options.bearerToken = BearerToken("secret")
        #expect(options.route(post(length: 10)) == .answer(.unauthorized))
    }
}

/// ``HTTPIngestHandler`` behind NIO's HTTP server pipeline in an `EmbeddedChannel`: bytes in,
/// bytes out, a ``ScriptedWriter`` for the commit.
@Suite struct HTTPIngestHandlerTests {
    private func channel(_ writer: ScriptedWriter, maxBody: Int = 2_000_000) throws -> EmbeddedChannel {
        var options = HTTPFace.Options()
        options.connection.maxBodyBytes = maxBody
        let setup = HTTPFace.Setup(
            options: options, status: { $0.makeSucceededFuture(#"{"ok":1}"#) }, prometheus: { $0.makeSucceededFuture("") })
        let face = HTTPFace(
            setup, writer: writer, parser: EventParser(maxEventBytes: 65536), budget: IngestBudget(), metrics: nil)
        let channel = EmbeddedChannel()
        try face.configure(channel.pipeline.syncOperations)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    private func output(_ channel: EmbeddedChannel) throws -> String {
        channel.embeddedEventLoop.run()
        var text = ""
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { text += buffer.readString(length: buffer.readableBytes) ?? "" }
        return text
    }

    @Test func aPostIsAnsweredAfterItsCommitAndTheConnectionStaysOpen() throws {
        let writer = ScriptedWriter()
        let channel = try channel(writer)
        let event = #"{"event_name":"e","user_id":"u"}"#
        try channel.writeInbound(
            channel.allocator.buffer(string: "POST /api/track HTTP/1.1\r\nContent-Length: \(event.utf8.count)\r\n\r\n\(event)"))
        #expect(try output(channel).isEmpty, "nothing before the commit")
        writer.commitOldest()
        let answer = try output(channel)
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
        #expect(answer.contains(#""accepted":1"#) && answer.contains("Connection: keep-alive"))
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    @Test func pipelinedPostsAreAnsweredInOrderEachAfterItsCommit() throws {
        let writer = ScriptedWriter()
        let channel = try channel(writer)
        let event = #"{"event_name":"e","user_id":"u"}"#
        let request = "POST /track HTTP/1.1\r\nContent-Length: \(event.utf8.count)\r\n\r\n\(event)"
        try channel.writeInbound(channel.allocator.buffer(string: request + request))
        #expect(writer.waiting == 1, "the second waits for the first's answer")
        writer.commitOldest(firstID: 1)
        #expect(try output(channel).contains("HTTP/1.1 200 OK"))
        channel.embeddedEventLoop.run()
        #expect(writer.waiting == 1)
        writer.commitOldest(firstID: 2)
        #expect(try output(channel).contains("HTTP/1.1 200 OK"))
        _ = try channel.finish()
    }

    @Test func statusAndUnknownPathsAndMethodsAreAnsweredWithoutTheWriter() throws {
        let writer = ScriptedWriter()
        let channel = try channel(writer)
        try channel.writeInbound(channel.allocator.buffer(string: "GET /status HTTP/1.1\r\n\r\n"))
        let status = try output(channel)
        #expect(status.hasPrefix("HTTP/1.1 200 OK\r\n") && status.hasSuffix(#"{"ok":1}"#), "\(status)")
        try channel.writeInbound(channel.allocator.buffer(string: "GET /nope HTTP/1.1\r\n\r\n"))
        #expect(try output(channel).hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        try channel.writeInbound(channel.allocator.buffer(string: "GET /api/track HTTP/1.1\r\n\r\n"))
        let refused = try output(channel)
        #expect(refused.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n") && refused.contains("Allow: POST"), "\(refused)")
        #expect(writer.waiting == 0)
        #expect(channel.isActive, "keep-alive throughout")
        _ = try channel.finish()
    }

    @Test func aHalfCloseWhileIdleClosesAndADrainClosesAfterTheAnswerUnderWay() throws {
        let writer = ScriptedWriter()
        let idle = try channel(writer)
        idle.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        idle.embeddedEventLoop.run()
        #expect(!idle.isActive)

        let busy = try channel(writer)
        let event = #"{"event_name":"e","user_id":"u"}"#
        try busy.writeInbound(
            busy.allocator.buffer(string: "POST /api/track HTTP/1.1\r\nContent-Length: \(event.utf8.count)\r\n\r\n\(event)"))
        busy.pipeline.fireUserInboundEventTriggered(IngestHandler.Drain())
        #expect(busy.isActive, "the request under way is answered first")
        writer.commitOldest()
        let answer = try output(busy)
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n") && answer.contains("Connection: close"), "\(answer)")
        busy.embeddedEventLoop.run()
        #expect(!busy.isActive)
    }

    @Test func anOversizeBodyIsAnsweredAtOnceAndTheConnectionClosesOnlyAfterTheBodyIsRead() throws {
        let writer = ScriptedWriter()
        let channel = try channel(writer, maxBody: 100)
        try channel.writeInbound(channel.allocator.buffer(string: "POST /api/track HTTP/1.1\r\nContent-Length: 500\r\n\r\n"))
        let answer = try output(channel)
        #expect(answer.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"), "\(answer)")
        #expect(channel.isActive, "still reading what the client sends")
        try channel.writeInbound(channel.allocator.buffer(string: String(repeating: "x", count: 300)))
        #expect(channel.isActive)
        try channel.writeInbound(channel.allocator.buffer(string: String(repeating: "x", count: 200)))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive, "the whole body was read: closed")
        #expect(writer.waiting == 0)
    }
}
