import TrackQueueEvent
import TrackQueueSupport

/// Writes a stored event as delivery sends it: with its repaired `timestamp`, and with
/// `context.trackq = {"event_id":…,"clock":…,"accepted_at":…,"sent_at":…}` (the id with
/// `--event-ids`, the rest with `--clock-annotation`; no note when both are off).
///
/// The stored text is the parser's normalized output, so the shapes are known: a time
/// trackq stamped is the event's last member, `"timestamp":"<24 bytes>"}`; `context`, when
/// present, is an object. Anything else (which would be a bug, or a file changed by hand) is
/// sent as stored rather than guessed at.
///
/// On the delivery path for every event: it walks the event's members once, up to its
/// `context`, and copies it into the request body in at most three pieces, with no
/// allocation of its own. The walk does not validate: the text was validated when it was
/// accepted, and the walk only finds where members begin and end, within bounds, so a text
/// damaged on disk is at worst sent as it is and refused by the API.
package enum EventRewriter {
    /// Appends `event` as it is sent to `out`.
    package static func append(
        _ event: UnsafeRawBufferPointer, fix: EventTimeFix, sentAtMillis: Int64, annotate: Bool, eventID: EventUUID? = nil,
        to out: inout [UInt8]
    ) {
        var times = TimeTexts()
        append(event, fix: fix, sentAtMillis: sentAtMillis, annotate: annotate, eventID: eventID, to: &out, times: &times)
    }

    /// ``append(_:fix:sentAtMillis:annotate:to:)``, reusing the texts of times already
    /// written for earlier events of the same request (they share `sent_at`, and the events
    /// of one segment their `accepted_at`).
    package static func append(
        _ event: UnsafeRawBufferPointer, fix: EventTimeFix, sentAtMillis: Int64, annotate: Bool, eventID: EventUUID? = nil,
        to out: inout [UInt8], times: inout TimeTexts
    ) {
        let n = event.count
        var stamp: Range<Int>?
        if fix.timestampMillis != nil, hasStampAtEnd(event) { stamp = (n - 26)..<(n - 2) }
        var note: (at: Range<Int>, lead: StaticString, trail: StaticString)?
        if annotate || eventID != nil {
            switch locateNote(in: event) {
            case .replace(let range): note = (range, "", "")
            case .intoContext(let open, let empty): note = (open..<open, #""trackq":"#, empty ? "" : ",")
            case .newContext(let only): note = ((n - 1)..<(n - 1), only ? #""context":{"trackq":"# : #","context":{"trackq":"#, "}")
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
            switch (eventID, annotate) {
            case (let id?, true):
                out.append(#"{"event_id":""#)
                id.appendText(to: &out)
                out.append(#"","#)
                appendNote(fix, sentAtMillis: sentAtMillis, to: &out, times: &times, opened: true)
            case (let id?, false):
                out.append(#"{"event_id":""#)
                id.appendText(to: &out)
                out.append(#""}"#)
            case (nil, _):
                appendNote(fix, sentAtMillis: sentAtMillis, to: &out, times: &times)
            }
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
    package static let maxNoteBytes = 128

    /// What `"event_id":"<36>",` adds to the note (`{"event_id":"<36>"}` alone is shorter).
    package static let eventIDBytes = 50

    /// The most the note adds to an event, as the settings have it.
    package static func noteBytes(annotate: Bool, eventIDs: Bool) -> Int {
        (annotate ? maxNoteBytes : eventIDs ? 21 + 2 : 0) + (eventIDs ? eventIDBytes : 0)
    }

    /// `"timestamp":"` + 24 bytes + `"}`.
    private static let stampKey: StaticString = #""timestamp":""#

    /// Whether the event ends with a stamp as the parser writes it.
    package static func hasStampAtEnd(_ event: UnsafeRawBufferPointer) -> Bool {
        let n = event.count
        let keyCount = stampKey.utf8CodeUnitCount
        guard n >= keyCount + 26 + 1, event[n - 1] == UInt8(ascii: "}"), event[n - 2] == UInt8(ascii: "\"") else {
            return false
        }
        let key = UnsafeRawBufferPointer(start: stampKey.utf8Start, count: keyCount)
        return event[(n - 26 - keyCount)..<(n - 26)].elementsEqual(key)
    }

    /// `{"clock":"…","accepted_at":"…","sent_at":"…"}`; `opened`: the `{` is written already.
    package static func appendNote(
        _ fix: EventTimeFix, sentAtMillis: Int64, to out: inout [UInt8], times: inout TimeTexts, opened: Bool = false
    ) {
        out.append(opened ? #""clock":""# : #"{"clock":""#)
        out.append(contentsOf: fix.word.rawValue.utf8)
        out.append(#"","accepted_at":""#)
        times.accepted.append(fix.acceptedAtMillis, to: &out)
        out.append(#"","sent_at":""#)
        times.sent.append(sentAtMillis, to: &out)
        out.append(#""}"#)
    }

    /// The RFC 3339 texts of the last `accepted_at` and `sent_at` written, so that the events
    /// of one request do not format the same instant again and again.
    package struct TimeTexts {
        package var accepted = TimeText()
        package var sent = TimeText()
    }

    /// One instant and its RFC 3339 text, formatted again only when the instant changes.
    package struct TimeText {
        private var millis: Int64?
        private var text: [UInt8] = []

        package mutating func append(_ value: Int64, to out: inout [UInt8]) {
            if millis != value {
                text.removeAll(keepingCapacity: true)
                RFC3339.appendTimestamp(millis: value, to: &text)
                millis = value
            }
            out.append(contentsOf: text)
        }
    }

    /// Where `context.trackq` goes in an event.
    package enum NotePlace: Equatable {
        /// Over the value of the `trackq` the app put in its `context`.
        case replace(Range<Int>)
        /// Just after the `{` of the event's `context` at `open`; `empty` when it has no member.
        case intoContext(open: Int, empty: Bool)
        /// A new `context` member, before the event's closing `}`; `only` when the event has
        /// no other member (no comma before it).
        case newContext(only: Bool)
        /// Not an object where one was expected: sent as it is.
        case nowhere
    }

    package static func locateNote(in event: UnsafeRawBufferPointer) -> NotePlace {
        guard event.last == UInt8(ascii: "}") else { return .nowhere }
        switch member(named: "context", inObjectAt: 0, of: event) {
        case .malformed:
            return .nowhere
        case .absent:
            return .newContext(only: hasNoMembers(event[...]))
        case .found(let context):
            guard event[context.lowerBound] == UInt8(ascii: "{") else { return .nowhere }
            switch member(named: "trackq", inObjectAt: context.lowerBound, of: event) {
            case .found(let trackq): return .replace(trackq)
            case .absent: return .intoContext(open: context.lowerBound + 1, empty: hasNoMembers(event[context]))
            case .malformed: return .nowhere
            }
        }
    }

    /// Whether the object `object` (its braces included) holds nothing but whitespace.
    private static func hasNoMembers(_ object: Slice<UnsafeRawBufferPointer>) -> Bool {
        object.dropFirst().dropLast().allSatisfy(isSpace)
    }

    fileprivate static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }

    package enum Lookup: Equatable {
        case found(Range<Int>)
        case absent
        case malformed
    }

    /// The value range of the member `name` of the object at `offset` in `bytes`.
    ///
    /// A walk, not a validation (see the type's comment): strings are skipped to their
    /// closing quote, containers by counting brackets outside strings, other values up to the
    /// next delimiter. Every read is bounds-checked; what does not look like an object's
    /// members is `malformed`.
    package static func member(named name: StaticString, inObjectAt offset: Int, of bytes: UnsafeRawBufferPointer) -> Lookup {
        var walk = StoredJSONWalk(bytes: bytes, position: offset)
        guard walk.peek() == UInt8(ascii: "{") else { return .malformed }
        walk.position += 1
        walk.skipWhitespace()
        if walk.peek() == UInt8(ascii: "}") { return .absent }
        let wanted = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        while true {
            guard walk.peek() == UInt8(ascii: "\""), let (keyEnd, keyEscaped) = walk.skipString() else { return .malformed }
            let key = UnsafeRawBufferPointer(rebasing: bytes[(walk.position + 1)..<(keyEnd - 1)])
            walk.position = keyEnd
            walk.skipWhitespace()
            guard walk.peek() == UInt8(ascii: ":") else { return .malformed }
            walk.position += 1
            walk.skipWhitespace()
            let valueStart = walk.position
            guard walk.skipValue() else { return .malformed }
            let matches = keyEscaped ? JSONScanner.decodeString(key).elementsEqual(wanted) : key.elementsEqual(wanted)
            if matches { return .found(valueStart..<walk.position) }
            walk.skipWhitespace()
            switch walk.peek() {
            case UInt8(ascii: ","):
                walk.position += 1
                walk.skipWhitespace()
            case UInt8(ascii: "}"):
                return .absent
            default:
                return .malformed
            }
        }
    }
}

/// Steps over the values of JSON text that was validated before it was stored.
///
/// Inside a string only a quote or a backslash matters, and inside a container only a quote
/// or a bracket: it tests eight bytes at once for those (SWAR) and looks at single bytes only
/// where one is, which takes the walk over a typical event from about 400 to 250 ns.
private struct StoredJSONWalk {
    package let bytes: UnsafeRawBufferPointer
    package var position: Int

    package func peek() -> UInt8 { position < bytes.count ? bytes[position] : 0 }

    package mutating func skipWhitespace() {
        while position < bytes.count && EventRewriter.isSpace(bytes[position]) { position += 1 }
    }

    /// The end (past the closing quote) of the string at `position`, and whether it holds an
    /// escape; nil if it does not end.
    package func skipString() -> (end: Int, escaped: Bool)? {
        var i = position + 1
        var escaped = false
        let n = bytes.count
        while i < n {
            i = SWAR.skip(bytes, from: i) { SWAR.matches($0, UInt8(ascii: "\"")) | SWAR.matches($0, UInt8(ascii: "\\")) }
            guard i < n else { break }
            switch bytes[i] {
            case UInt8(ascii: "\""): return (i + 1, escaped)
            case UInt8(ascii: "\\"):
                escaped = true
                i += 2
            default: i += 1
            }
        }
        return nil
    }

    /// Moves past the value at `position`; false if it does not end where a value should.
    package mutating func skipValue() -> Bool {
        switch peek() {
        case UInt8(ascii: "\""):
            guard let (end, _) = skipString() else { return false }
            position = end
            return true
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            let n = bytes.count
            while position < n {
                // Only quotes and brackets matter here: `{` and `[` (and `}` and `]`) differ
                // by 0x20 alone.
                position = SWAR.skip(bytes, from: position) { word in
                    let folded = word | (SWAR.ones &* 0x20)
                    return SWAR.matches(word, UInt8(ascii: "\"")) | SWAR.matches(folded, UInt8(ascii: "{"))
                        | SWAR.matches(folded, UInt8(ascii: "}"))
                }
                guard position < n else { break }
                switch bytes[position] {
                case UInt8(ascii: "\""):
                    guard let (end, _) = skipString() else { return false }
                    position = end
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 {
                        position += 1
                        return true
                    }
                default: break
                }
                position += 1
            }
            return false
        case 0, UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: ":"):
            return false
        default:
            // A number or a literal: up to the next delimiter.
            while position < bytes.count {
                switch bytes[position] {
                case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0A, 0x0D, 0x09: return true
                default: position += 1
                }
            }
            return true
        }
    }
}

extension [UInt8] {
    /// Appends the bytes of a static string.
    fileprivate mutating func append(_ text: StaticString) {
        append(contentsOf: UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }
}
