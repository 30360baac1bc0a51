import NIOCore
import NIOHTTP1
import TrackQueueEvent

/// Serves one HTTP connection of the ``HTTPFace``: it tells its ``HTTPConnection`` what
/// happened and performs the actions it returns (the rules are written there). It keeps the
/// body being read, and the one timer.
package final class HTTPIngestHandler: ChannelDuplexHandler {
    package typealias InboundIn = HTTPServerRequestPart
    package typealias OutboundIn = Never
    package typealias OutboundOut = HTTPServerResponsePart

    private let face: HTTPFace
    private var connection: HTTPConnection
    private var body: ByteBuffer?
    private var timer: Scheduled<Void>?
    private var lastWrite: EventLoopFuture<Void>?

    package init(face: HTTPFace) {
        self.face = face
        self.connection = HTTPConnection(options: face.options.connection)
    }

    package func handlerAdded(context: ChannelHandlerContext) { perform(connection.opened(), context) }

    package func handlerRemoved(context: ChannelHandlerContext) { timer?.cancel() }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            face.connections?.touch(context.channel)
            perform(connection.head(head, route: face.options.route(head)), context)
        case .body(var part):
            face.connections?.touch(context.channel)
            let actions = connection.bodyPart(bytes: part.readableBytes)
            guard actions == [.keepBody] else { return perform(actions, context) }
            if body == nil { body = part } else { body!.writeBuffer(&part) }
        case .end:
            perform(connection.end(), context)
        }
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // A drain, or the client closed its side (NIO passes that on once the requests before
        // it are answered).
        if event is IngestHandler.Drain || (event as? ChannelEvent) == .inputClosed {
            perform(connection.inputEnded(), context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    package func channelInactive(context: ChannelHandlerContext) {
        perform(connection.inactive(), context)
        context.fireChannelInactive()
    }

    /// A request that does not parse is the connection's to answer; anything else (a reset)
    /// closes, after an answer still going out.
    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        perform(error is HTTPParserError ? connection.malformed() : [.cancelTimer, .close], context)
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        perform(connection.writabilityChanged(to: context.channel.isWritable), context)
        context.fireChannelWritabilityChanged()
    }

    package func read(context: ChannelHandlerContext) { perform(connection.readRequested(), context) }

    // MARK: Performing

    private func perform(_ actions: [HTTPConnection.Action], _ context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .arm(let timeout):
                timer?.cancel()
                timer = context.eventLoop.scheduleTask(in: timeout, onLoop(context) { $0.perform($0.connection.timedOut(), $1) })
            case .cancelTimer: timer?.cancel()
            case .reserve(let bytes): reserve(bytes, context)
            case .release(let bytes): face.budget.give(bytes)
            case .sendContinue(let version):
                context.writeAndFlush(Self.wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .continue))), promise: nil)
            case .keepBody: break  // kept by channelRead
            case .submit: submit(context)
            case .serve(let route): serve(route, context)
            case .answerNextTick(let answer):
                context.eventLoop.execute(onLoop(context) { $0.perform($0.connection.answerReady(answer), $1) })
            case .write(let answer, let version, let closes):
                body = nil
                context.write(Self.wrapOutboundOut(.head(answer.head(version: version, closes: closes))), promise: nil)
                let text = context.channel.allocator.buffer(string: answer.body)
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(text))), promise: nil)
                lastWrite = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
            case .read: context.read()
            case .readIfAllowed: perform(connection.readsAfterWrite(), context)
            case .close:
                body = nil
                let channel = context.channel
                channel.close(after: lastWrite)
                // A peer that never reads would hold the connection open: it gets a few seconds.
                context.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
            }
        }
    }

    /// Takes room for the body, or waits (reading nothing more) until there is some.
    private func reserve(_ bytes: Int, _ context: ChannelHandlerContext) {
        if face.budget.tryTake(bytes) { return perform(connection.budgetGranted(bytes), context) }
        if !face.budget.waitForRoom(onLoop(context) { $0.reserve(bytes, $1) }) { reserve(bytes, context) }
    }

    private func submit(_ context: ChannelHandlerContext) {
        let received = body ?? context.channel.allocator.buffer(capacity: 0)
        body = nil
        var batch = EventBatch()
        batch.reserveCapacity(bytes: received.readableBytes + 64, events: 1)
        var warnings = ParseWarnings()
        let now = face.clock.wallMillis()
        let entry = LineEntry(parsing: received, with: face.parser, stampMillis: now, into: &batch, warnings: &warnings)
        let found = warnings
        let committed = onLoop(context, with: [LineAnswer].self) { handler, context, answers in
            if case .accepted(let count, _, _) = answers.first, count > 0, !found.isEmpty {
                handler.face.metrics?.uncheckedTimestamps.increment(by: found.uncheckedTimestamps)
            }
            handler.perform(handler.connection.answerReady(HTTPAnswer.committed(answers.first, warnings: found)), context)
        }
        // Refusals go through the writer too, so they are counted with the line protocol's.
        face.writer.submit(
            IngestSubmission(
                batch: batch, lines: [entry], readAtMillis: now, readAtBoottimeMillis: face.clock.boottimeMillis(),
                completion: committed))
    }

    private func serve(_ route: HTTPConnection.Route, _ context: ChannelHandlerContext) {
        let (source, contentType) =
            route == .status
            ? (face.status, "application/json") : (face.prometheus, "text/plain; version=0.0.4; charset=utf-8")
        let served = onLoop(context, with: Result<String, any Error>.self) { handler, context, result in
            handler.perform(handler.connection.answerReady(.served(result, contentType: contentType)), context)
        }
        source(context.eventLoop).whenComplete(served)
    }
}

@available(*, unavailable)
extension HTTPIngestHandler: Sendable {}
