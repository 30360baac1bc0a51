import NIOCore
import Testing

@testable import TrackQueue

/// The answer to an accepted line is formatted in place; it must read exactly as the
/// protocol's text built the plain way.
@Suite struct AnswerEncoderTests {
    private func written(_ answer: LineAnswer, warnings: ParseWarnings? = nil) -> String {
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        AnswerEncoder.write(answer, warnings: warnings, to: &buffer)
        return String(buffer: buffer)
    }

    @Test func acceptancesReadAsTheProtocolSays() {
        var random = SplitMix64(seed: 11)
        var values: [Int64] = [0, 1, 9, 10, 99, 100, 1_000_000, .max, .min, -1, -10]
        for _ in 0..<2000 { values.append(Int64(bitPattern: random.next()) >> (random.next() % 64)) }
        for (i, first) in values.enumerated() {
            let last = values[(i + 1) % values.count]
            let count = Int(truncatingIfNeeded: values[(i + 2) % values.count] % 5000)
            let expected =
                count == 0
                ? #"{"ok":true,"accepted":0}"# + "\n"
                : #"{"ok":true,"accepted":\#(count),"first_id":\#(first),"last_id":\#(last)}"# + "\n"
            #expect(written(.accepted(count: count, firstID: first, lastID: last)) == expected)
        }
    }

    @Test func theLongestAcceptanceFits() {
        let answer = written(.accepted(count: .min, firstID: .min, lastID: .min))
        #expect(answer.utf8.count <= AnswerEncoder.maxAcceptedBytes)
        #expect(answer == #"{"ok":true,"accepted":\#(Int64.min),"first_id":\#(Int64.min),"last_id":\#(Int64.min)}"# + "\n")
    }

    @Test func warningsAndRefusalsAreWrittenAsBefore() {
        var warnings = ParseWarnings()
        warnings.uncheckedTimestamps = 1
        let accepted = written(.accepted(count: 1, firstID: 7, lastID: 7), warnings: warnings)
        #expect(accepted.hasPrefix(#"{"ok":true,"accepted":1,"first_id":7,"last_id":7,"warnings":["#))
        #expect(accepted.hasSuffix("]}\n"))
        #expect(
            written(.refused(IngestError(.invalidJSON, "bad \"x\"")))
                == #"{"ok":false,"error":"invalid_json","message":"bad \"x\""}"# + "\n")
    }
}
