import NIOCore

/// Frames a connection's bytes into lines, hands them to the writer as submissions, and
/// writes the answers back, one per non-blank line, in order.
///
/// The writer completes submissions in order, so answers need no reordering.
///
/// What a connection may cost is bounded, however its client behaves: it frames and parses
/// only while fewer than `maxOutstanding` of its submissions await their commit and while
/// its peer reads its answers (the channel is writable); a submission holds at most
/// `maxSubmissionLines` lines or about `maxSubmissionBytes` of events; bytes read but not
/// yet framed wait in one buffer of their size, and no more is read until they are used. So
/// a client that writes without reading stalls on its own socket buffer, and the daemon's
/// memory does not grow with it.
///
/// Across connections, an ``IngestBudget`` counts every byte framed until it is answered,
/// and a connection reads only while the budget has room. A read is one buffer of `readBytes`,
/// or `readsPerBurst` of them when the budget has room for that beside the other long reads:
/// so when many connections are woken at once, each brings at most one short read.
final class IngestHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Never
    typealias OutboundOut = ByteBuffer

    /// Sent down a connection's pipeline to stop reading and close once every line read
    /// has been answered.
    struct Drain: Sendable {}

    struct Limits: Sendable {
        var maxLineBytes = 2_000_000
        /// The largest buffer one read fills (NIO's adaptive allocator sizes it up to this).
        var readBytes = 16 << 10
        /// Reads in one go when the budget has room for them; 1 otherwise.
        var readsPerBurst: UInt = 16
        var maxOutstanding = 16
        var maxSubmissionLines = 1024
        var maxSubmissionBytes = 1 << 20
    }

    private let writer: StoreWriter
    private let parser: EventParser
    private let limits: Limits
    private let clock: HostClock
    private let connections: ConnectionTracker?
    private let budget: IngestBudget?
    private let metrics: DaemonMetrics?
    /// The budget was spent when a read was to start: reading waits for its wake.
    private var waitingForBudget = false
    /// Bytes framed since the last submission (its lines, blank lines, newlines): they leave
    /// the budget with its answers.
    private var framedBytes = 0
    /// Of those, bytes counted in the budget (it is told once per `consume`, not per line).
    private var countedBytes = 0
    /// Room reserved in the budget for a burst of reads (`readsPerBurst`) instead of one.
    private var reservedBurst = false
    /// The last read filled its buffer: the client has more to send, and the next read may be
    /// a burst. A connection whose client went quiet reads (and reserves) no burst.
    private var lastReadFilled = false
    /// The channel's `maxMessagesPerRead` as this handler last set it.
    private var readsPerBurst: UInt

    private var framer: LineFrameDecoder
    /// Bytes read and not framed yet.
    private var received: ByteBuffer?
    /// `received` is a buffer of this handler's, not a read's buffer from the channel's pool.
    private var receivedIsOwn = false
    /// The framer needs more bytes than `received` holds (a line is incomplete).
    private var needsMoreData = true
    private var batch = EventBatch()
    /// Capacity for the next submission's buffers: the size of the last one.
    private var nextSizes = (bytes: 0, lines: 0, events: 0)
    private var lines: [LineEntry] = []
    /// Lines of the coming submission accepted with warnings, by index (rare: empty, no allocation).
    private var warnings: [(line: Int, warnings: ParseWarnings)] = []
    private var readAt: (wall: Int64, boot: Int64)?
    private var outstanding = 0
    /// The last answer written: the connection closes only once it has gone out.
    private var lastWrite: EventLoopFuture<Void>?
    private var readPending = false
    /// The client sent EOF (or went away): a last line without a newline still counts.
    private var inputClosed = false
    private var draining = false

    init(
        writer: StoreWriter, parser: EventParser, limits: Limits = Limits(), connections: ConnectionTracker? = nil,
        budget: IngestBudget? = nil, metrics: DaemonMetrics? = nil, clock: HostClock = .system
    ) {
        self.clock = clock
        self.writer = writer
        self.budget = budget
        self.metrics = metrics
        self.parser = parser
        self.limits = limits
        self.connections = connections
        self.framer = LineFrameDecoder(maxLineBytes: limits.maxLineBytes)
        precondition(limits.readsPerBurst >= 1)
        self.readsPerBurst = 1  // as the server sets it; and no read has filled a buffer yet
    }

    /// The room a burst of reads needs beyond one read.
    private var burstBytes: Int { Int(limits.readsPerBurst - 1) * limits.readBytes }

    func handlerRemoved(context: ChannelHandlerContext) {
        // The read reserved for will not come. (Bytes read are all framed and submitted even
        // after a close, so they leave the budget with their answers.)
        if reservedBurst { budget?.release(burstBytes) }
        reservedBurst = false
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let incoming = Self.unwrapInboundIn(data)
        connections?.touch(context.channel)
        // As NIO decides whether to read again at once: the read filled its buffer.
        lastReadFilled = incoming.writableBytes == 0
        if received == nil {
            received = incoming
            receivedIsOwn = false
        } else {
            var incoming = incoming
            received!.writeBuffer(&incoming)  // it is ours (see `consume`); it doubles as a line grows
        }
        needsMoreData = false
        consume(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if reservedBurst {
            reservedBurst = false
            budget?.release(burstBytes)
        }
        submit(context: context)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent {
            // The client closed its side (e.g. `socat` at the end of stdin): answer what it
            // sent, then close ours.
            inputClosed = true
            needsMoreData = false  // the last line needs no newline now
            consume(context: context)
            submit(context: context)
            closeIfDone(context: context)
        } else if event is Drain {
            draining = true
            consume(context: context)
            submit(context: context)
            closeIfDone(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client went away. Whatever it sent is committed all the same: nobody will
        // read the answers, but the app may rely on "written is queued".
        inputClosed = true
        needsMoreData = false
        consume(context: context)
        submit(context: context)
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resume(context: context)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset or a read error ends this connection only; lines read so far are committed
        // by channelInactive.
        context.close(promise: nil)
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        readPending = true
        readIfRoom(context: context)
    }

    // MARK: Framing, submitting and answering

    /// Whether this connection may have more work in flight now. A connection nobody reads
    /// from any more (inactive) still gets its lines committed, at the same pace.
    private func hasRoom(context: ChannelHandlerContext) -> Bool {
        outstanding < limits.maxOutstanding && (context.channel.isWritable || !context.channel.isActive)
    }

    private func canRead(context: ChannelHandlerContext) -> Bool {
        !draining && !inputClosed && needsMoreData && !waitingForBudget && hasRoom(context: context)
    }

    /// Frames and parses the bytes received while there is room, cutting submissions as they fill.
    private func consume(context: ChannelHandlerContext) {
        guard received != nil else { return }
        while !needsMoreData && hasRoom(context: context) {
            let unframed = received!.readableBytes
            let frame = framer.nextFrame(&received!) ?? (inputClosed ? framer.lastFrame(&received!) : nil)
            framedBytes += unframed - received!.readableBytes
            guard let frame else {
                needsMoreData = true
                break
            }
            take(frame, coming: unframed + (reservedBurst ? burstBytes : 0))
            if lines.count >= limits.maxSubmissionLines || batch.bytes.count >= limits.maxSubmissionBytes {
                submit(context: context)
            }
        }
        countFramedBytes()
        if received!.readableBytes == 0 {
            received = nil
            needsMoreData = true
        } else if !receivedIsOwn || received!.capacity >= 4 * max(received!.readableBytes, 1024) {
            keepOwnCopy(of: &received!, allocator: context.channel.allocator)
        }
    }

    /// Moves what is left of `received` (usually part of one line) into a buffer of its own,
    /// sized for it (to the next power of two).
    ///
    /// A read's buffer belongs to the channel's pool, which reuses it for the next read only
    /// once nobody else holds it: kept here, the pool would allocate another, and a buffer
    /// grown for a burst would stay grown while the connection waits. So what a connection
    /// holds between reads is about what it has not framed yet, however many connections
    /// there are. (A buffer is copied only when it is four times too large, so a long line
    /// that grows read by read is not copied again each time.)
    private func keepOwnCopy(of buffer: inout ByteBuffer, allocator: ByteBufferAllocator) {
        var own = allocator.buffer(capacity: buffer.readableBytes)
        own.writeBuffer(&buffer)
        buffer = own
        receivedIsOwn = true
    }

    /// - Parameter coming: the most bytes this submission can still get before it is submitted
    ///   (what is held, and what the read under way may bring).
    private func take(_ frame: LineFrame, coming: Int) {
        if readAt == nil { readAt = (clock.wallMillis(), clock.boottimeMillis()) }
        if lines.isEmpty && lines.capacity == 0 {
            // Sized like the last submission, but no larger than this one can get: a connection
            // woken for one short read would otherwise hold room for a long burst.
            let bytes = min(nextSizes.bytes, coming)
            let last = nextSizes
            func scaled(_ count: Int) -> Int { bytes == last.bytes ? count : min(count, count * bytes / last.bytes + 1) }
            lines.reserveCapacity(scaled(last.lines))
            batch.reserveCapacity(bytes: bytes, events: scaled(last.events))
        }
        switch frame {
        case .tooLong:
            lines.append(.refused(IngestError(.tooLarge, "line exceeds \(limits.maxLineBytes) bytes; it was skipped")))
        case .line(let line):
            var found = ParseWarnings()
            lines.append(LineEntry(parsing: line, with: parser, stampMillis: readAt!.wall, into: &batch, warnings: &found))
            if !found.isEmpty { warnings.append((lines.count - 1, found)) }
        }
    }

    /// Resumes this connection on its loop once the budget has room again.
    private func budgetWaker(context: ChannelHandlerContext) -> @Sendable () -> Void {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        return {
            loopBound.eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.waitingForBudget = false
                handler.resume(context: context)
                handler.closeIfDone(context: context)
            }
        }
    }

    /// More room: frame what was waiting, then read again if everything was used.
    private func resume(context: ChannelHandlerContext) {
        consume(context: context)
        submit(context: context)
        readIfRoom(context: context)
    }

    /// Passes a read on once there is room for what it brings, the shared budget's included:
    /// a read while the budget is spent would hold its bytes, unframed, until the budget had
    /// room again, and so would every other connection.
    private func readIfRoom(context: ChannelHandlerContext) {
        guard readPending, canRead(context: context) else { return }
        if let budget {
            // The waker is built only when the budget is spent, not for every read.
            if !budget.admits, budget.waitForRoom(budgetWaker(context: context)) {
                waitingForBudget = true
                return
            }
            // Reserved only for a client with more to send: an idle connection holding a
            // reservation would keep the room from the busy ones.
            if !reservedBurst && lastReadFilled { reservedBurst = budget.tryReserve(burstBytes) }
            setReadsPerBurst(reservedBurst ? limits.readsPerBurst : 1, context: context)
        }
        readPending = false
        context.read()
    }

    private func setReadsPerBurst(_ reads: UInt, context: ChannelHandlerContext) {
        guard reads != readsPerBurst else { return }
        readsPerBurst = reads
        try? context.channel.syncOptions?.setOption(.maxMessagesPerRead, value: reads)
    }

    /// Bytes count against the budget from when they are framed, not from when they are read:
    /// what a connection holds unframed is the start of a line its client has not finished, or
    /// what it read before its client stopped reading answers. Counted, a few such clients
    /// could spend the budget and stop every other app; uncounted, they cost each connection
    /// at most one read burst and one line.
    private func countFramedBytes() {
        guard framedBytes > countedBytes else { return }
        budget?.take(framedBytes - countedBytes)
        countedBytes = framedBytes
    }

    private func submit(context: ChannelHandlerContext) {
        countFramedBytes()
        // The bytes framed so far leave the budget with the answers to their lines, or now if
        // they held none (blank lines, the rest of a line too long).
        let framed = framedBytes
        framedBytes = 0
        countedBytes = 0
        guard !lines.isEmpty, let readAt else {
            if framed > 0 { budget?.give(framed) }
            return
        }
        let bytes = batch.bytes.count
        let warnings = self.warnings
        let submission = IngestSubmission(
            batch: batch,
            lines: lines,
            readAtMillis: readAt.wall,
            readAtBoottimeMillis: readAt.boot,
            completion: { [loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)] answers in
                loopBound.eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.budget?.give(framed)
                    handler.answer(answers, warnings: warnings, context: context)
                }
            })
        // The submission owns these buffers now (reusing them would copy them). The next
        // ones are sized like this one when its first line comes; an idle connection holds none.
        nextSizes = (min(bytes, limits.maxSubmissionBytes), min(lines.count, limits.maxSubmissionLines), min(batch.count, 4096))
        batch = EventBatch()
        lines = []
        self.warnings = []
        self.readAt = nil
        outstanding += 1
        writer.submit(submission)
    }

    private func answer(
        _ answers: [LineAnswer], warnings: [(line: Int, warnings: ParseWarnings)], context: ChannelHandlerContext
    ) {
        outstanding -= 1
        for (line, found) in warnings {
            if case .accepted = answers[line] { metrics?.uncheckedTimestamps.increment(by: found.uncheckedTimestamps) }
        }
        if context.channel.isActive {
            var buffer = context.channel.allocator.buffer(capacity: answers.count * 48)
            if warnings.isEmpty {
                for answer in answers { AnswerEncoder.write(answer, to: &buffer) }
            } else {
                var next = warnings[...]
                for (i, answer) in answers.enumerated() {
                    var found: ParseWarnings?
                    if let first = next.first, first.line == i {
                        found = first.warnings
                        next = next.dropFirst()
                    }
                    AnswerEncoder.write(answer, warnings: found, to: &buffer)
                }
            }
            lastWrite = context.writeAndFlush(Self.wrapOutboundOut(buffer))
        }
        resume(context: context)
        closeIfDone(context: context)
    }

    private func closeIfDone(context: ChannelHandlerContext) {
        guard inputClosed || draining, outstanding == 0, lines.isEmpty, needsMoreData || received == nil,
            context.channel.isActive
        else { return }
        // NIO's close fails writes still pending: a client that half-closed and reads slowly
        // would lose the tail of its answers. Close once the last answer has been written.
        let channel = context.channel
        if let lastWrite {
            lastWrite.whenComplete { _ in channel.close(promise: nil) }
        } else {
            channel.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension IngestHandler: Sendable {}

/// Writes answer lines: `{"ok":true,"accepted":N,...}` or `{"ok":false,"error":...}`.
enum AnswerEncoder {
    /// The longest acceptance without warnings: three numbers of at most 20 characters.
    static let maxAcceptedBytes = 112

    /// - Parameter warnings: the line's, added to an acceptance as `"warnings":[...]`.
    static func write(_ answer: LineAnswer, warnings: ParseWarnings? = nil, to buffer: inout ByteBuffer) {
        switch answer {
        case .accepted(let count, let first, let last):
            // Formatted in place, not a write (and an integer's String) for each part; without
            // warnings (the answer to almost every line) in one access to the buffer.
            let warned = warnings.map { !$0.isEmpty } ?? false
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: maxAcceptedBytes) { out in
                let end = writeAccepted(count: count, first: first, last: last, to: out)
                return warned ? end : put("}\n", to: out, at: end)
            }
            guard warned, let warnings else { return }  // the line's newline is written
            buffer.writeStaticString(#","warnings":"#)
            buffer.writeString(JSONText.array(warnings.messages))
            buffer.writeStaticString("}")
        case .refused(let error):
            buffer.writeStaticString(#"{"ok":false,"error":""#)
            buffer.writeString(error.code.description)
            buffer.writeStaticString(#"","message":"#)
            buffer.writeString(JSONText.quoted(error.message))
            buffer.writeStaticString("}")
        }
        buffer.writeStaticString("\n")
    }

    /// Writes `{"ok":true,"accepted":C,"first_id":F,"last_id":L` (or `{"ok":true,"accepted":0`
    /// for none), without the closing brace, at the start of `out`, which holds at least
    /// ``maxAcceptedBytes``; returns the bytes written.
    private static func writeAccepted(count: Int, first: Int64, last: Int64, to out: UnsafeMutableRawBufferPointer) -> Int {
        precondition(out.count >= maxAcceptedBytes)
        var end = put(#"{"ok":true,"accepted":"#, to: out, at: 0)
        end = decimal(Int64(count), to: out, at: end)
        if count != 0 {
            end = put(#","first_id":"#, to: out, at: end)
            end = decimal(first, to: out, at: end)
            end = put(#","last_id":"#, to: out, at: end)
            end = decimal(last, to: out, at: end)
        }
        return end
    }

    private static func put(_ text: StaticString, to out: UnsafeMutableRawBufferPointer, at start: Int) -> Int {
        (out.baseAddress! + start).copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
        return start + text.utf8CodeUnitCount
    }

    /// `value` in decimal: at most 20 characters.
    private static func decimal(_ value: Int64, to out: UnsafeMutableRawBufferPointer, at start: Int) -> Int {
        var at = start
        if value < 0 {
            out[at] = UInt8(ascii: "-")
            at += 1
        }
        var magnitude = value.magnitude
        var length = 1
        var rest = magnitude / 10
        while rest > 0 {
            length += 1
            rest /= 10
        }
        var index = at + length
        while index > at {
            index -= 1
            out[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
            magnitude /= 10
        }
        return at + length
    }
}
