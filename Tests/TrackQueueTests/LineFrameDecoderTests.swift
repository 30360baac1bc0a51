import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import TrackQueue

@Suite struct LineFrameDecoderTests {
    private func line(_ text: String) -> LineFrame { .line(ByteBuffer(string: text)) }

    /// Feeds `input` through an embedded channel `chunk` bytes at a time, then EOF.
    private func frames(_ input: String, chunk: Int, max: Int = 2_000_000) throws -> [LineFrame] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(LineFrameDecoder(maxLineBytes: max)))
        let bytes = Array(input.utf8)
        var offset = 0
        while offset < bytes.count {
            let end = Swift.min(offset + chunk, bytes.count)
            try channel.writeInbound(ByteBuffer(bytes: bytes[offset..<end]))
            offset = end
        }
        _ = try channel.finish()  // EOF: decodeLast
        var out: [LineFrame] = []
        while let frame = try channel.readInbound(as: LineFrame.self) { out.append(frame) }
        return out
    }

    @Test func verifierAcceptsEveryWayOfSplittingTheInput() throws {
        // ByteToMessageDecoderVerifier feeds the input whole, byte by byte and in random
        // chunks, and checks the same frames come out each time.
        let cases: [(String, [LineFrame])] = [
            ("a\nb\n", [line("a"), line("b")]),
            ("a\r\nb\r\n", [line("a"), line("b")]),
            ("\n\n  \n\t\r\nx\n", [line("x")]),
            ("{\"k\":\"v\"}\n[1]\n", [line("{\"k\":\"v\"}"), line("[1]")]),
        ]
        for (input, expected) in cases {
            try ByteToMessageDecoderVerifier.verifyDecoder(
                inputOutputPairs: [(ByteBuffer(string: input), expected)],
                decoderFactory: { LineFrameDecoder(maxLineBytes: 100) })
        }
    }

    @Test(arguments: [1, 2, 3, 7, 64, 1 << 20])
    func sameFramesWhateverTheChunkSize(chunk: Int) throws {
        let input = "first\r\n\n  \nsecond\nthird line with spaces \r\nlast without newline"
        #expect(
            try frames(input, chunk: chunk) == [
                line("first"), line("second"), line("third line with spaces "), line("last without newline"),
            ])
    }

    @Test(arguments: [1, 5, 1000])
    func overLongLineIsReportedOnceAndSkippedToTheNextNewline(chunk: Int) throws {
        let long = String(repeating: "x", count: 50)
        let input = "ok1\n\(long)\nok2\n\(long)"
        #expect(try frames(input, chunk: chunk, max: 20) == [line("ok1"), .tooLong, line("ok2"), .tooLong])
    }

    @Test func lineOfExactlyTheLimitPassesOneMoreIsTooLong() throws {
        let atLimit = String(repeating: "a", count: 20)
        #expect(try frames(atLimit + "\r\n" + atLimit + "b\n", chunk: 3, max: 20) == [line(atLimit), .tooLong])
        #expect(try frames(atLimit, chunk: 1, max: 20) == [line(atLimit)])
        #expect(try frames(atLimit + "b", chunk: 1, max: 20) == [.tooLong])
    }

    @Test func overLongLineIsNeverBufferedWhole() throws {
        // 10 MB without a newline against a 1 KiB limit: what the decoder keeps never
        // exceeds the limit plus one read.
        var decoder = LineFrameDecoder(maxLineBytes: 1024)
        var buffer = ByteBuffer()
        var frames: [LineFrame] = []
        var largestHeld = 0
        for _ in 0..<2560 {
            buffer.writeRepeatingByte(UInt8(ascii: "z"), count: 4096)
            while let frame = decoder.nextFrame(&buffer) { frames.append(frame) }
            largestHeld = Swift.max(largestHeld, buffer.readableBytes)
        }
        buffer.writeString("\nafter\n")
        while let frame = decoder.nextFrame(&buffer) { frames.append(frame) }
        #expect(frames == [.tooLong, line("after")])
        #expect(largestHeld <= 1024 + 1)
    }
}
