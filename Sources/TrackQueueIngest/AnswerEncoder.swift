import NIOCore
import TrackQueueEvent
import TrackQueueSupport

/// Writes answer lines: `{"ok":true,"accepted":N,...}` or `{"ok":false,"error":...}`.
package enum AnswerEncoder {
    /// The longest acceptance without warnings: three numbers of at most 20 characters.
    package static let maxAcceptedBytes = 112

    /// One answer line for each of `answers`, in order, with the warnings of the lines that
    /// have some (by index, in order).
    package static func write(
        _ answers: [LineAnswer], warnings: [(line: Int, warnings: ParseWarnings)], to buffer: inout ByteBuffer
    ) {
        guard !warnings.isEmpty else {
            for answer in answers { write(answer, to: &buffer) }
            return
        }
        var next = warnings[...]
        for (i, answer) in answers.enumerated() {
            var found: ParseWarnings?
            if let first = next.first, first.line == i {
                found = first.warnings
                next = next.dropFirst()
            }
            write(answer, warnings: found, to: &buffer)
        }
    }

    /// - Parameter warnings: the line's, added to an acceptance as `"warnings":[...]`.
    package static func write(_ answer: LineAnswer, warnings: ParseWarnings? = nil, to buffer: inout ByteBuffer) {
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
