import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One request line as the framing layer sees it.
public enum LineFrame: Equatable, Sendable {
    /// A non-blank line, without its `\n` or `\r\n`.
    case line(ByteBuffer)
    /// A line longer than the limit. Its bytes were dropped as they arrived; the framer
    /// skips to the next newline.
    case tooLong
}

/// Splits a byte stream into lines: `\n` or `\r\n`, blank lines ignored, a last line without
/// a newline still counts at EOF.
///
/// Memory is bounded by the line limit: a line that grows past `maxLineBytes` is reported
/// once as ``LineFrame/tooLong`` and the rest of it is discarded as it arrives, never
/// buffered.
public struct LineFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = LineFrame

    public let maxLineBytes: Int
    /// Bytes of the current (unterminated) line already searched for a newline.
    private var scanned = 0
    /// True while discarding the rest of an over-long line.
    private var skipping = false

    public init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = nextFrame(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        if let frame = nextFrame(&buffer) ?? lastFrame(&buffer) {
            context.fireChannelRead(Self.wrapInboundOut(frame))
            return .continue
        }
        return .needMoreData
    }

    /// At EOF, once ``nextFrame(_:)`` found nothing more: what is left is a last line without
    /// a newline (unless it is being skipped). Consumes everything.
    package mutating func lastFrame(_ buffer: inout ByteBuffer) -> LineFrame? {
        defer {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            scanned = 0
            skipping = false
        }
        guard !skipping, let line = Self.trimmed(buffer.readableBytesView[...]) else { return nil }
        return line.count > maxLineBytes ? .tooLong : .line(buffer.getSlice(at: line.lowerBound, length: line.count)!)
    }

    /// The offset (from the reader index) of the first `\n` at or after `start`: `memchr`,
    /// which looks at a word at a time.
    private static func firstNewline(in buffer: ByteBuffer, from start: Int) -> Int? {
        buffer.withUnsafeReadableBytes { raw in
            guard start < raw.count, let base = raw.baseAddress,
                let found = memchr(base + start, Int32(UInt8(ascii: "\n")), raw.count - start)
            else { return nil }
            return base.distance(to: UnsafeRawPointer(found))
        }
    }

    /// The next frame in `buffer`, consuming its bytes; nil when more data is needed.
    package mutating func nextFrame(_ buffer: inout ByteBuffer) -> LineFrame? {
        while true {
            let view = buffer.readableBytesView
            guard let newline = Self.firstNewline(in: buffer, from: scanned).map({ view.startIndex + $0 }) else {
                if skipping {
                    buffer.moveReaderIndex(to: buffer.writerIndex)
                    scanned = 0
                    return nil
                }
                if view.count > maxLineBytes + 1 {  // + 1: room for a `\r`
                    // Report once, drop what we hold, and skip the rest when it comes.
                    buffer.moveReaderIndex(to: buffer.writerIndex)
                    scanned = 0
                    skipping = true
                    return .tooLong
                }
                scanned = view.count
                return nil
            }
            let lineLength = newline - view.startIndex
            let line = Self.trimmed(view[view.startIndex..<newline])
            let frame: LineFrame?
            if skipping {
                skipping = false
                frame = nil
            } else if let line, line.count > maxLineBytes {
                frame = .tooLong
            } else if let line {
                // Slice before moving the reader index: slices must lie in readable bytes.
                frame = .line(buffer.getSlice(at: line.lowerBound, length: line.count)!)
            } else {
                frame = nil  // blank
            }
            buffer.moveReaderIndex(forwardBy: lineLength + 1)
            scanned = 0
            if let frame { return frame }
        }
    }

    /// The range of `bytes` without a trailing `\r`; nil when the line is blank
    /// (only spaces, tabs and `\r`).
    private static func trimmed(_ bytes: ByteBufferView.SubSequence) -> Range<Int>? {
        var end = bytes.endIndex
        if end > bytes.startIndex && bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        guard !isBlank(bytes[bytes.startIndex..<end]) else { return nil }
        return bytes.startIndex..<end
    }

    /// Whether `line` is blank: only spaces, tabs, `\r` (and the `\n` that ends it). The
    /// daemon skips a blank line and owes it no answer; `trackq send` counts answers by it.
    public static func isBlank(_ line: some Sequence<UInt8>) -> Bool {
        line.allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") }
    }
}
