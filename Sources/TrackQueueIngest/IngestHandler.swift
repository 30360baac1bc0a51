import NIOCore
import TrackQueueClock
import TrackQueueEvent
import TrackQueueMetrics

/// One line-protocol connection on a channel: it tells its ``LineConnection`` what happened
/// and performs what that decides (the rules are written there). Framing and parsing are the
/// ``LineSubmissionBuilder``'s; answers are written one per non-blank line, in order.
package final class IngestHandler: ChannelDuplexHandler {
    package typealias InboundIn = ByteBuffer
    package typealias OutboundIn = Never
    package typealias OutboundOut = ByteBuffer

    /// Sent down a connection's pipeline to stop reading, and close once all is answered.
    package struct Drain: Sendable {
        package init() {}
    }

    private let writer: any IngestWriter
    private let limits: LineLimits
    private let connections: ConnectionTracker?
    private let budget: IngestBudget?
    private let metrics: DaemonMetrics?
    private var connection: LineConnection
    private var pending: LineSubmissionBuilder
    /// The channel's `maxMessagesPerRead`, as last set (the server sets 1).
    private var channelReadsPerBurst: UInt = 1
    /// The last answer written: the connection closes only once it has gone out.
    private var lastWrite: EventLoopFuture<Void>?

    package init(
        writer: any IngestWriter, parser: EventParser, limits: LineLimits = LineLimits(),
        connections: ConnectionTracker? = nil, budget: IngestBudget? = nil, metrics: DaemonMetrics? = nil,
        clock: HostClock = .system
    ) {
        (self.writer, self.limits, self.connections, self.budget, self.metrics) = (writer, limits, connections, budget, metrics)
        self.connection = LineConnection(maxOutstanding: limits.maxOutstanding, readsPerBurst: limits.readsPerBurst)
        self.pending = LineSubmissionBuilder(parser: parser, limits: limits, clock: clock)
    }

    package func handlerRemoved(context: ChannelHandlerContext) { perform(connection.removed(), context) }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let incoming = Self.unwrapInboundIn(data)
        connections?.touch(context.channel)
        pending.append(incoming)
        perform(connection.bytesRead(filledBuffer: incoming.writableBytes == 0), context)
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        perform(connection.readComplete(), context)
        context.fireChannelReadComplete()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent {
            perform(connection.inputEnded(), context)
        } else if event is Drain {
            perform(connection.drain(), context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    package func channelInactive(context: ChannelHandlerContext) {
        perform(connection.inactive(), context)
        context.fireChannelInactive()
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        perform(connection.writabilityChanged(to: context.channel.isWritable), context)
        context.fireChannelWritabilityChanged()
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    package func read(context: ChannelHandlerContext) { perform(connection.readRequested(), context) }

    private func perform(_ steps: LineConnection.Steps, _ context: ChannelHandlerContext) {
        if steps.contains(.releaseBurst) { budget?.release(limits.burstBytes) }
        if steps.contains(.frame) { frame(context) }
        if steps.contains(.submit) { submit(context) }
        if steps.contains(.read) { readIfRoom(context) }
        if steps.contains(.closeIfDone), connection.isDone { context.channel.close(after: lastWrite) }
    }

    private func frame(_ context: ChannelHandlerContext) {
        while connection.mayFrame {
            let extra = connection.burstReserved ? limits.burstBytes : 0
            switch pending.frameNext(lastLineNeedsNoNewline: connection.lastLineNeedsNoNewline, extraComing: extra) {
            case .needsMoreData: connection.framerNeedsMoreData()
            case .line:
                connection.lineTaken()
                if pending.isFull { submit(context) }
            }
        }
        budget?.take(pending.takeUncountedBytes())
        if pending.settle(allocator: context.channel.allocator) { connection.framerNeedsMoreData() }
    }

    /// Passes a read on once there is room for what it brings, the shared budget's included.
    private func readIfRoom(_ context: ChannelHandlerContext) {
        guard connection.mayRead else { return }
        if let budget {
            let waker = { self.onLoop(context) { $0.perform($0.connection.budgetGranted(), $1) } }
            guard budget.admitRead(&connection, burstBytes: limits.burstBytes, waker: waker) else { return }
            if connection.readsPerRead != channelReadsPerBurst {
                channelReadsPerBurst = connection.readsPerRead
                try? context.channel.syncOptions?.setOption(.maxMessagesPerRead, value: channelReadsPerBurst)
            }
        }
        connection.readPassed()
        context.read()
    }

    private func submit(_ context: ChannelHandlerContext) {
        budget?.take(pending.takeUncountedBytes())
        let (framed, cut) = pending.cut()
        guard let cut else {
            if framed > 0 { budget?.give(framed) }
            return connection.nothingSubmitted()
        }
        let answered = onLoop(context, with: [LineAnswer].self) { handler, context, answers in
            handler.budget?.give(framed)
            handler.answer(answers, warnings: cut.warnings, context: context)
        }
        connection.submitted()
        writer.submit(
            IngestSubmission(
                batch: cut.batch, lines: cut.lines, readAtMillis: cut.readAt.wall, readAtBoottimeMillis: cut.readAt.boot,
                completion: answered))
    }

    private func answer(_ answers: [LineAnswer], warnings: [(line: Int, warnings: ParseWarnings)], context: ChannelHandlerContext) {
        for (line, found) in warnings {
            if case .accepted = answers[line] { metrics?.uncheckedTimestamps.increment(by: found.uncheckedTimestamps) }
        }
        if context.channel.isActive {
            var buffer = context.channel.allocator.buffer(capacity: answers.count * 48)
            AnswerEncoder.write(answers, warnings: warnings, to: &buffer)
            lastWrite = context.writeAndFlush(Self.wrapOutboundOut(buffer))
        }
        perform(connection.answered(), context)
    }
}

@available(*, unavailable)
extension IngestHandler: Sendable {}
