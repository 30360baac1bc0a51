import NIOCore
import TrackQueueClock
import TrackQueueEvent

/// The bytes a line connection has read and not submitted yet: framing, parsing, and the
/// buffers of the next submission. One per connection, owned by ``IngestHandler``; no I/O.
///
/// Bytes read but not framed yet wait in one buffer of their size. Bytes left over after
/// framing move into a buffer of this builder's own, so the channel's pool reuses its read
/// buffer and nothing stays grown between reads.
package struct LineSubmissionBuilder {
    /// What one framing step found.
    package enum Framed {
        /// A line was parsed into the submission.
        case line
        /// No whole line is held: more bytes (or the end of input) are needed.
        case needsMoreData
    }

    /// A submission's contents, cut from the builder.
    package struct Cut {
        package var batch: EventBatch
        package var lines: [LineEntry]
        /// Lines accepted with warnings, by index.
        package var warnings: [(line: Int, warnings: ParseWarnings)]
        package var readAt: (wall: Int64, boot: Int64)
    }

    private var framer: LineFrameDecoder
    private let parser: EventParser
    private let clock: HostClock
    private let limits: LineLimits
    /// Bytes read and not framed yet.
    private var received: ByteBuffer?
    /// `received` is a buffer of this builder's, not a read's buffer from the channel's pool.
    private var receivedIsOwn = false
    private var batch = EventBatch()
    /// Capacity for the next submission's buffers: the size of the last one.
    private var nextSizes = (bytes: 0, lines: 0, events: 0)
    private var lines: [LineEntry] = []
    /// Lines of the coming submission accepted with warnings (rare: empty, no allocation).
    private var warnings: [(line: Int, warnings: ParseWarnings)] = []
    private var readAt: (wall: Int64, boot: Int64)?
    /// Bytes framed since the last cut (its lines, blank lines, newlines): they leave the
    /// budget with its answers.
    private var framedBytes = 0
    /// Of those, bytes already counted in the budget (it is told once per pass, not per line).
    private var countedBytes = 0

    package init(parser: EventParser, limits: LineLimits, clock: HostClock) {
        self.parser = parser
        self.limits = limits
        self.clock = clock
        self.framer = LineFrameDecoder(maxLineBytes: limits.maxLineBytes)
    }

    /// The submission is as large as one may be: cut it.
    package var isFull: Bool { lines.count >= limits.maxSubmissionLines || batch.bytes.count >= limits.maxSubmissionBytes }

    package mutating func append(_ incoming: ByteBuffer) {
        if received == nil {
            received = incoming
            receivedIsOwn = false
        } else {
            var incoming = incoming
            received!.writeBuffer(&incoming)  // it is ours (see `settle`); it doubles as a line grows
        }
    }

    /// Frames and parses the next line, if a whole one is held.
    ///
    /// - Parameters:
    ///   - lastLineNeedsNoNewline: the input has ended, so what is left is the last line.
    ///   - extraComing: what the read under way may still bring (a burst's room): with what
    ///     is held, the most a new submission can get, so it reserves no more.
    package mutating func frameNext(lastLineNeedsNoNewline: Bool, extraComing: Int) -> Framed {
        guard received != nil else { return .needsMoreData }
        let unframed = received!.readableBytes
        let frame = framer.nextFrame(&received!) ?? (lastLineNeedsNoNewline ? framer.lastFrame(&received!) : nil)
        framedBytes += unframed - received!.readableBytes
        guard let frame else { return .needsMoreData }
        take(frame, coming: unframed + extraComing)
        return .line
    }

    /// After a framing pass: drops a buffer used up, or keeps what is left in a buffer of its
    /// own, sized for it. Returns whether nothing is left unframed.
    ///
    /// A read's buffer belongs to the channel's pool, which reuses it for the next read only
    /// once nobody else holds it: kept here, the pool would allocate another, and a buffer
    /// grown for a burst would stay grown while the connection waits. (A buffer is copied only
    /// when it is four times too large, so a long line that grows read by read is not copied
    /// again each time.)
    package mutating func settle(allocator: ByteBufferAllocator) -> Bool {
        guard var buffer = received else { return true }
        if buffer.readableBytes == 0 {
            received = nil
            return true
        }
        if !receivedIsOwn || buffer.capacity >= 4 * max(buffer.readableBytes, 1024) {
            received = nil  // so the copy below does not share storage with it
            var own = allocator.buffer(capacity: buffer.readableBytes)
            own.writeBuffer(&buffer)
            received = own
            receivedIsOwn = true
        }
        return false
    }

    /// Bytes framed and not yet counted in the budget; they count from now.
    ///
    /// Bytes count against the budget from when they are framed, not from when they are read:
    /// what a connection holds unframed is the start of a line its client has not finished,
    /// or what it read before its client stopped reading answers. Counted, a few such clients
    /// could spend the budget and stop every other app; uncounted, they are bounded by each
    /// connection's line limit and one burst.
    package mutating func takeUncountedBytes() -> Int {
        let uncounted = framedBytes - countedBytes
        countedBytes = framedBytes
        return uncounted
    }

    /// Cuts the next submission: the bytes framed since the last cut (they leave the budget
    /// with its answers, or at once when `cut` is nil: no lines, only blank ones or the rest
    /// of a line too long), and its lines, if it has any.
    package mutating func cut() -> (framed: Int, cut: Cut?) {
        let framed = framedBytes
        framedBytes = 0
        countedBytes = 0
        guard !lines.isEmpty, let readAt else { return (framed, nil) }
        let cut = Cut(batch: batch, lines: lines, warnings: warnings, readAt: readAt)
        // The submission owns these buffers now (reusing them would copy them). The next
        // ones are sized like this one when its first line comes; an idle connection holds none.
        nextSizes = (
            min(batch.bytes.count, limits.maxSubmissionBytes), min(lines.count, limits.maxSubmissionLines),
            min(batch.count, 4096)
        )
        batch = EventBatch()
        lines = []
        warnings = []
        self.readAt = nil
        return (framed, cut)
    }

    private mutating func take(_ frame: LineFrame, coming: Int) {
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
}
