import NIOCore

/// Turns a connection's lines into submissions for the writer and writes the answers back,
/// one per non-blank line, in order.
///
/// Lines read in one go (one `channelRead…channelReadComplete` burst) become one submission;
/// the writer completes submissions in order, so answers need no reordering.
///
/// Back-pressure: while `maxOutstanding` submissions of this connection await their commit,
/// or while the peer is not reading its answers (the channel is not writable), `read()` is
/// held back, so the kernel's socket buffer fills and the client blocks. Nothing is
/// buffered without bound.
final class IngestHandler: ChannelDuplexHandler {
    typealias InboundIn = LineFrame
    typealias OutboundIn = Never
    typealias OutboundOut = ByteBuffer

    /// Sent down a connection's pipeline to stop reading and close once every line read
    /// has been answered.
    struct Drain: Sendable {}

    private let writer: StoreWriter
    private let parser: EventParser
    private let maxLineBytes: Int
    private let maxOutstanding: Int
    /// A burst is cut into submissions of about this many bytes, to bound memory.
    private let maxSubmissionBytes = 1 << 20

    private var batch = EventBatch()
    private var lines: [LineEntry] = []
    private var readAt: (wall: Int64, boot: Int64)?
    private var outstanding = 0
    private var readPending = false
    private var inputClosed = false
    private var draining = false

    init(writer: StoreWriter, parser: EventParser, maxLineBytes: Int, maxOutstanding: Int = 4) {
        self.writer = writer
        self.parser = parser
        self.maxLineBytes = maxLineBytes
        self.maxOutstanding = maxOutstanding
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if readAt == nil { readAt = (SystemClock.wallMillis(), SystemClock.boottimeMillis()) }
        switch Self.unwrapInboundIn(data) {
        case .tooLong:
            lines.append(.refused(IngestError(.tooLarge, "line exceeds \(maxLineBytes) bytes; it was skipped")))
        case .line(let line):
            let stamp = readAt!.wall
            let entry: LineEntry = line.withUnsafeReadableBytes { bytes in
                do throws(IngestError) {
                    return .events(count: try parser.parse(bytes, stampMillis: stamp, into: &batch))
                } catch {
                    return .refused(error)
                }
            }
            lines.append(entry)
        }
        if batch.bytes.count >= maxSubmissionBytes {
            submit(context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        submit(context: context)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent {
            // The client closed its side (e.g. `socat` at the end of stdin): answer what it
            // sent, then close ours.
            inputClosed = true
            submit(context: context)
            closeIfDone(context: context)
        } else if event is Drain {
            draining = true
            submit(context: context)
            closeIfDone(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client went away. Whatever it sent is committed all the same: nobody will
        // read the answers, but the app may rely on "written is queued".
        submit(context: context)
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReadingIfPossible(context: context)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset or a read error ends this connection only; lines read so far are committed
        // by channelInactive.
        context.close(promise: nil)
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if canRead(context: context) {
            context.read()
        } else {
            readPending = true
        }
    }

    // MARK: Submitting and answering

    private func canRead(context: ChannelHandlerContext) -> Bool {
        !draining && !inputClosed && outstanding < maxOutstanding && context.channel.isWritable
    }

    private func resumeReadingIfPossible(context: ChannelHandlerContext) {
        if readPending && canRead(context: context) {
            readPending = false
            context.read()
        }
    }

    private func submit(context: ChannelHandlerContext) {
        guard !lines.isEmpty, let readAt else { return }
        let submission = IngestSubmission(
            batch: batch,
            lines: lines,
            readAtMillis: readAt.wall,
            readAtBoottimeMillis: readAt.boot,
            completion: { [loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)] answers in
                loopBound.eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.answer(answers, context: context)
                }
            })
        batch.removeAll(keepingCapacity: true)
        lines.removeAll(keepingCapacity: true)
        self.readAt = nil
        outstanding += 1
        writer.submit(submission)
    }

    private func answer(_ answers: [LineAnswer], context: ChannelHandlerContext) {
        outstanding -= 1
        if context.channel.isActive {
            var buffer = context.channel.allocator.buffer(capacity: answers.count * 48)
            for answer in answers { AnswerEncoder.write(answer, to: &buffer) }
            context.writeAndFlush(Self.wrapOutboundOut(buffer), promise: nil)
        }
        resumeReadingIfPossible(context: context)
        closeIfDone(context: context)
    }

    private func closeIfDone(context: ChannelHandlerContext) {
        guard inputClosed || draining, outstanding == 0, lines.isEmpty else { return }
        if context.channel.isActive { context.close(promise: nil) }
    }
}

@available(*, unavailable)
extension IngestHandler: Sendable {}

/// Writes answer lines: `{"ok":true,"accepted":N,...}` or `{"ok":false,"error":...}`.
enum AnswerEncoder {
    static func write(_ answer: LineAnswer, to buffer: inout ByteBuffer) {
        switch answer {
        case .accepted(let count, let first, let last):
            if count == 0 {
                buffer.writeStaticString(#"{"ok":true,"accepted":0}"#)
            } else {
                buffer.writeStaticString(#"{"ok":true,"accepted":"#)
                buffer.writeString(String(count))
                buffer.writeStaticString(#","first_id":"#)
                buffer.writeString(String(first))
                buffer.writeStaticString(#","last_id":"#)
                buffer.writeString(String(last))
                buffer.writeStaticString("}")
            }
        case .refused(let error):
            buffer.writeStaticString(#"{"ok":false,"error":""#)
            buffer.writeString(error.code.description)
            buffer.writeStaticString(#"","message":"#)
            buffer.writeString(JSONText.quoted(error.message))
            buffer.writeStaticString("}")
        }
        buffer.writeStaticString("\n")
    }
}
