/// Writes a stored event as delivery sends it: with its repaired `timestamp`, and with
/// `context.trackq = {"clock":…,"accepted_at":…,"sent_at":…}`.
///
/// The stored text is the parser's normalized output, so the shapes are known: a time
/// trackq stamped is the event's last member, `"timestamp":"<24 bytes>"}`; `context`, when
/// present, is an object. Anything else (which would be a bug, or a file changed by hand) is
/// sent as stored rather than guessed at.
enum EventRewriter {
    /// Appends `event` as it is sent to `out`.
    static func append(
        _ event: UnsafeRawBufferPointer, fix: EventTimeFix, sentAtMillis: Int64, annotate: Bool, to out: inout [UInt8]
    ) {
        let start = out.count
        out.append(contentsOf: event)
        if let millis = fix.timestampMillis { replaceStamp(in: &out, from: start, with: millis) }
        guard annotate else { return }
        var note: [UInt8] = []
        note.reserveCapacity(112)
        appendNote(fix, sentAtMillis: sentAtMillis, to: &note)
        annotateContext(in: &out, from: start, with: note)
    }

    private static let stampKey = Array(#""timestamp":""#.utf8)
    /// `"timestamp":"` + 24 bytes + `"}`.
    private static let stampTailCount = stampKey.count + 24 + 2

    /// Writes `millis` over the stamp at the end of the event that starts at `start`.
    static func replaceStamp(in out: inout [UInt8], from start: Int, with millis: Int64) {
        let end = out.count
        guard end - start >= stampTailCount + 1, out[end - 1] == UInt8(ascii: "}"), out[end - 2] == UInt8(ascii: "\""),
            out[(end - stampTailCount)..<(end - 26)].elementsEqual(stampKey)
        else { return }
        var stamp: [UInt8] = []
        stamp.reserveCapacity(24)
        RFC3339.appendTimestamp(millis: millis, to: &stamp)
        out.replaceSubrange((end - 26)..<(end - 2), with: stamp)
    }

    /// `{"clock":"…","accepted_at":"…","sent_at":"…"}`
    static func appendNote(_ fix: EventTimeFix, sentAtMillis: Int64, to note: inout [UInt8]) {
        note.append(contentsOf: #"{"clock":""#.utf8)
        note.append(contentsOf: fix.word.rawValue.utf8)
        note.append(contentsOf: #"","accepted_at":""#.utf8)
        RFC3339.appendTimestamp(millis: fix.acceptedAtMillis, to: &note)
        note.append(contentsOf: #"","sent_at":""#.utf8)
        RFC3339.appendTimestamp(millis: sentAtMillis, to: &note)
        note.append(contentsOf: #""}"#.utf8)
    }

    /// Puts `note` at `context.trackq` of the event that starts at `start`: in the event's
    /// `context` (replacing a `trackq` the app put there), or in a new `context`.
    static func annotateContext(in out: inout [UInt8], from start: Int, with note: [UInt8]) {
        let found: (context: Range<Int>?, trackq: Range<Int>?)? = out.withUnsafeBytes { all in
            let event = UnsafeRawBufferPointer(rebasing: all[start...])
            guard let context = member(named: "context", inObjectAt: 0, of: event, level: 1) else { return (nil, nil) }
            guard event[context.lowerBound] == UInt8(ascii: "{") else { return nil }
            return (context, member(named: "trackq", inObjectAt: context.lowerBound, of: event, level: 2))
        }
        guard let found else { return }
        switch found {
        case (_, let trackq?):
            out.replaceSubrange((start + trackq.lowerBound)..<(start + trackq.upperBound), with: note)
        case (let context?, nil):
            let open = start + context.lowerBound + 1
            // The parser copies values as they came: "{ }" is empty too.
            let isEmpty = out[open..<(start + context.upperBound - 1)].allSatisfy(Self.isSpace)
            var insert = Array(#""trackq":"#.utf8) + note
            if !isEmpty { insert.append(UInt8(ascii: ",")) }
            out.insert(contentsOf: insert, at: open)
        case (nil, nil):
            guard out.last == UInt8(ascii: "}") else { return }
            out.insert(contentsOf: Array(#","context":{"trackq":"#.utf8) + note + [UInt8(ascii: "}")], at: out.count - 1)
        }
    }

    private static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }

    /// The value range of the member `name` of the object at `offset` in `bytes`, if any;
    /// nil too when the text there is not a well-formed object.
    static func member(
        named name: String, inObjectAt offset: Int, of bytes: UnsafeRawBufferPointer, level: Int
    ) -> Range<Int>? {
        var s = JSONScanner(bytes)
        s.position = offset
        guard s.peek() == UInt8(ascii: "{") else { return nil }
        s.position += 1
        s.skipWhitespace()
        if s.peek() == UInt8(ascii: "}") { return nil }
        let wanted = Array(name.utf8)
        do throws(JSONSyntaxError) {
            while true {
                guard s.peek() == UInt8(ascii: "\"") else { return nil }
                let keyStart = s.position + 1
                let escaped = try s.scanString()
                let key = UnsafeRawBufferPointer(rebasing: bytes[keyStart..<(s.position - 1)])
                s.skipWhitespace()
                guard s.peek() == UInt8(ascii: ":") else { return nil }
                s.position += 1
                s.skipWhitespace()
                let valueStart = s.position
                try s.scanValue(level: level + 1)
                let matches = escaped ? JSONScanner.decodeString(key) == wanted : key.elementsEqual(wanted)
                if matches { return valueStart..<s.position }
                s.skipWhitespace()
                guard s.peek() == UInt8(ascii: ",") else { return nil }
                s.position += 1
                s.skipWhitespace()
            }
        } catch {
            return nil
        }
    }
}
