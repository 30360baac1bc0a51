/// Writes a stored event as delivery sends it: with its repaired `timestamp`, and with
/// `context.trackq = {"clock":…,"accepted_at":…,"sent_at":…}`.
///
/// The stored text is the parser's normalized output, so the shapes are known: a time
/// trackq stamped is the event's last member, `"timestamp":"<24 bytes>"}`; `context`, when
/// present, is an object. Anything else (which would be a bug, or a file changed by hand) is
/// sent as stored rather than guessed at.
///
/// On the delivery path for every event: it scans the event once, up to its `context`, and
/// copies it into the request body in at most three pieces, with no allocation of its own.
enum EventRewriter {
    /// Appends `event` as it is sent to `out`.
    static func append(
        _ event: UnsafeRawBufferPointer, fix: EventTimeFix, sentAtMillis: Int64, annotate: Bool, to out: inout [UInt8]
    ) {
        let n = event.count
        var stamp: Range<Int>?
        if fix.timestampMillis != nil, hasStampAtEnd(event) { stamp = (n - 26)..<(n - 2) }
        var note: (at: Range<Int>, lead: StaticString, trail: StaticString)?
        if annotate {
            switch locateNote(in: event) {
            case .replace(let range): note = (range, "", "")
            case .intoContext(let open, let empty): note = (open..<open, #""trackq":"#, empty ? "" : ",")
            case .newContext: note = ((n - 1)..<(n - 1), #","context":{"trackq":"#, "}")
            case .nowhere: note = nil
            }
        }

        var cursor = 0
        func copy(upTo end: Int) {
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: event[cursor..<end]))
            cursor = end
        }
        func writeStamp() {
            guard let stamp, let millis = fix.timestampMillis else { return }
            copy(upTo: stamp.lowerBound)
            RFC3339.appendTimestamp(millis: millis, to: &out)
            cursor = stamp.upperBound
        }
        func writeNote() {
            guard let note else { return }
            copy(upTo: note.at.lowerBound)
            out.append(note.lead)
            appendNote(fix, sentAtMillis: sentAtMillis, to: &out)
            out.append(note.trail)
            cursor = note.at.upperBound
        }
        if let at = note?.at.lowerBound, let stamp, stamp.lowerBound < at {
            writeStamp()
            writeNote()
        } else {
            writeNote()
            writeStamp()
        }
        copy(upTo: n)
    }

    /// The most the note adds to an event: `,"context":{"trackq":` and `}` around
    /// `{"clock":"estimated","accepted_at":"<24>","sent_at":"<24>"}` (a repaired stamp keeps
    /// its length). Batches and `--max-event-bytes` count it, so a request is never larger
    /// than the limits say.
    static let maxNoteBytes = 128

    /// `"timestamp":"` + 24 bytes + `"}`.
    private static let stampKey: StaticString = #""timestamp":""#

    /// Whether the event ends with a stamp as the parser writes it.
    static func hasStampAtEnd(_ event: UnsafeRawBufferPointer) -> Bool {
        let n = event.count
        let keyCount = stampKey.utf8CodeUnitCount
        guard n >= keyCount + 26 + 1, event[n - 1] == UInt8(ascii: "}"), event[n - 2] == UInt8(ascii: "\"") else {
            return false
        }
        let key = UnsafeRawBufferPointer(start: stampKey.utf8Start, count: keyCount)
        return event[(n - 26 - keyCount)..<(n - 26)].elementsEqual(key)
    }

    /// `{"clock":"…","accepted_at":"…","sent_at":"…"}`
    static func appendNote(_ fix: EventTimeFix, sentAtMillis: Int64, to out: inout [UInt8]) {
        out.append(#"{"clock":""#)
        out.append(contentsOf: fix.word.rawValue.utf8)
        out.append(#"","accepted_at":""#)
        RFC3339.appendTimestamp(millis: fix.acceptedAtMillis, to: &out)
        out.append(#"","sent_at":""#)
        RFC3339.appendTimestamp(millis: sentAtMillis, to: &out)
        out.append(#""}"#)
    }

    /// Where `context.trackq` goes in an event.
    enum NotePlace: Equatable {
        /// Over the value of the `trackq` the app put in its `context`.
        case replace(Range<Int>)
        /// Just after the `{` of the event's `context` at `open`; `empty` when it has no member.
        case intoContext(open: Int, empty: Bool)
        /// A new `context` member, before the event's closing `}`.
        case newContext
        /// Not an object where one was expected: sent as it is.
        case nowhere
    }

    static func locateNote(in event: UnsafeRawBufferPointer) -> NotePlace {
        guard event.last == UInt8(ascii: "}") else { return .nowhere }
        switch member(named: "context", inObjectAt: 0, of: event, level: 1) {
        case .malformed:
            return .nowhere
        case .absent:
            return .newContext
        case .found(let context):
            guard event[context.lowerBound] == UInt8(ascii: "{") else { return .nowhere }
            switch member(named: "trackq", inObjectAt: context.lowerBound, of: event, level: 2) {
            case .found(let trackq): return .replace(trackq)
            case .absent:
                let inside = event[(context.lowerBound + 1)..<(context.upperBound - 1)]
                return .intoContext(open: context.lowerBound + 1, empty: inside.allSatisfy(isSpace))
            case .malformed: return .nowhere
            }
        }
    }

    private static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }

    enum Lookup: Equatable {
        case found(Range<Int>)
        case absent
        case malformed
    }

    /// The value range of the member `name` of the object at `offset` in `bytes`.
    static func member(named name: StaticString, inObjectAt offset: Int, of bytes: UnsafeRawBufferPointer, level: Int) -> Lookup {
        var s = JSONScanner(bytes)
        s.position = offset
        guard s.peek() == UInt8(ascii: "{") else { return .malformed }
        s.position += 1
        s.skipWhitespace()
        if s.peek() == UInt8(ascii: "}") { return .absent }
        let wanted = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        do throws(JSONSyntaxError) {
            while true {
                let (member, isLast) = try s.scanMember(level: level)
                let key = member.keyContent(in: bytes)
                let matches = member.keyEscaped ? JSONScanner.decodeString(key).elementsEqual(wanted) : key.elementsEqual(wanted)
                if matches { return .found(member.value) }
                if isLast { return .absent }
            }
        } catch {
            return .malformed
        }
    }
}

extension [UInt8] {
    /// Appends the bytes of a static string.
    fileprivate mutating func append(_ text: StaticString) {
        append(contentsOf: UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }
}
