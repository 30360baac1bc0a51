/// Validates and normalizes request lines into events.
///
/// A line holding a JSON object is one event; a line holding a JSON array of
/// objects (at most ``maxBatchEvents``) is a batch, accepted or refused as a
/// whole. Each event is rebuilt without whitespace between its top-level
/// tokens, `event` renamed to `event_name`, and a `timestamp` appended when
/// absent. Nested values are copied verbatim.
public struct EventParser: Sendable {
    /// The largest event, in bytes, as it is sent.
    public var maxEventBytes: Int
    /// What delivery adds to each event (`context.trackq`): counted against ``maxEventBytes``,
    /// so an event the API's own size limit would refuse is refused here, not dead-lettered.
    public var sendOverheadBytes: Int
    /// The most events one array line may hold.
    public static let maxBatchEvents = 1000

    /// Creates a parser refusing events longer than `maxEventBytes` once normalized and sent
    /// with `sendOverheadBytes` more.
    public init(maxEventBytes: Int, sendOverheadBytes: Int = 0) {
        self.maxEventBytes = maxEventBytes
        self.sendOverheadBytes = max(0, sendOverheadBytes)
    }

    /// Parses one request line, appending its normalized events to `batch`.
    ///
    /// - Parameters:
    ///   - line: the line without its terminator; surrounding whitespace is allowed.
    ///   - stampMillis: the read time (ms since the Unix epoch), used as the
    ///     `timestamp` of events that have none.
    ///   - batch: receives the normalized events.
    /// - Returns: the number of events appended (0 for `[]`).
    /// - Throws: ``IngestError``; on error `batch` is left exactly as it was.
    ///   Syntax errors (`invalid_json`) take precedence over event rule errors.
    public func parse(
        _ line: UnsafeRawBufferPointer, stampMillis: Int64, into batch: inout EventBatch
    ) throws(IngestError) -> Int {
        var warnings = ParseWarnings()
        return try parse(line, stampMillis: stampMillis, into: &batch, warnings: &warnings)
    }

    /// Parses one request line, appending its normalized events to `batch` and what the app
    /// should hear about them to `warnings` (left as it was when the line is refused).
    public func parse(
        _ line: UnsafeRawBufferPointer, stampMillis: Int64, into batch: inout EventBatch,
        warnings: inout ParseWarnings
    ) throws(IngestError) -> Int {
        let mark = batch.mark
        var unchecked = 0
        var scanner = JSONScanner(line)
        var fault: IngestError? = nil
        do throws(JSONSyntaxError) {
            scanner.skipWhitespace()
            switch scanner.peek() {
            case UInt8(ascii: "{"):
                try parseEvent(
                    &scanner, level: 1, index: nil, stampMillis: stampMillis, batch: &batch, fault: &fault,
                    unchecked: &unchecked)
            case UInt8(ascii: "["):
                try parseArray(&scanner, stampMillis: stampMillis, batch: &batch, fault: &fault, unchecked: &unchecked)
            default:
                try scanner.scanValue(level: 1)
                fault = IngestError(.invalidEvent, "top-level value must be a JSON object or an array of objects")
            }
            scanner.skipWhitespace()
            guard scanner.isAtEnd else { throw scanner.fail("unexpected data after the JSON value") }
        } catch {
            batch.rollBack(to: mark)
            throw IngestError(.invalidJSON, "invalid JSON at byte \(error.offset): \(error.reason)")
        }
        if let fault {
            batch.rollBack(to: mark)
            throw fault
        }
        warnings.uncheckedTimestamps += unchecked
        return batch.count - mark.eventCount
    }

    /// Parses one request line given as bytes. See ``parse(_:stampMillis:into:)-(UnsafeRawBufferPointer,_,_)``.
    public func parse(_ line: [UInt8], stampMillis: Int64, into batch: inout EventBatch) throws(IngestError) -> Int {
        let result = line.withUnsafeBytes { raw in
            Result { () throws(IngestError) -> Int in
                try parse(raw, stampMillis: stampMillis, into: &batch)
            }
        }
        return try result.get()
    }

    /// Parses one request line given as text. See ``parse(_:stampMillis:into:)-(UnsafeRawBufferPointer,_,_)``.
    public func parse(_ line: some StringProtocol, stampMillis: Int64, into batch: inout EventBatch) throws(IngestError) -> Int {
        var warnings = ParseWarnings()
        return try parse(line, stampMillis: stampMillis, into: &batch, warnings: &warnings)
    }

    /// Parses one request line given as text, with its warnings.
    public func parse(
        _ line: some StringProtocol, stampMillis: Int64, into batch: inout EventBatch, warnings: inout ParseWarnings
    ) throws(IngestError) -> Int {
        var text = String(line)
        let result = text.withUTF8 { utf8 in
            Result { () throws(IngestError) -> Int in
                try parse(UnsafeRawBufferPointer(utf8), stampMillis: stampMillis, into: &batch, warnings: &warnings)
            }
        }
        return try result.get()
    }

    // MARK: - Batches

    private func parseArray(
        _ s: inout JSONScanner, stampMillis: Int64, batch: inout EventBatch, fault: inout IngestError?,
        unchecked: inout Int
    ) throws(JSONSyntaxError) {
        s.position += 1
        s.skipWhitespace()
        if s.peek() == UInt8(ascii: "]") {
            s.position += 1
            return
        }
        var index = 0
        while true {
            if s.peek() == UInt8(ascii: "{") && fault == nil {
                try parseEvent(
                    &s, level: 2, index: index, stampMillis: stampMillis, batch: &batch, fault: &fault,
                    unchecked: &unchecked)
            } else if s.peek() == UInt8(ascii: "{") {
                // The line is refused already: only its syntax still matters, so the rest is
                // scanned, not normalized (an array of a million events costs no copy).
                try s.scanValue(level: 2)
            } else {
                try s.scanValue(level: 2)
                if fault == nil {
                    fault = IngestError(.invalidEvent, "[\(index)]: must be a JSON object")
                }
            }
            index += 1
            if index > Self.maxBatchEvents, fault == nil {
                fault = IngestError(.tooLarge, "batch has more than \(Self.maxBatchEvents) events")
            }
            s.skipWhitespace()
            switch s.peek() {
            case UInt8(ascii: ","):
                s.position += 1
                s.skipWhitespace()
            case UInt8(ascii: "]"):
                s.position += 1
                return
            default:
                throw s.fail("expected ',' or ']'")
            }
        }
    }

    // MARK: - Events

    /// Parses the object at the scanner's position as one event and writes its
    /// normalized text to `batch`. Rule violations go to `fault` (first one wins,
    /// scanning continues so that syntax errors still take precedence).
    private func parseEvent(
        _ s: inout JSONScanner, level: Int, index: Int?, stampMillis: Int64,
        batch: inout EventBatch, fault: inout IngestError?, unchecked: inout Int
    ) throws(JSONSyntaxError) {
        try s.checkDepth(level)
        let start = batch.bytesWritten
        var state = EventParseState(index: index)
        s.position += 1
        batch.appendByte(UInt8(ascii: "{"))
        s.skipWhitespace()
        if s.peek() == UInt8(ascii: "}") {
            s.position += 1
        } else {
            var isLast = false
            while !isLast {
                let member: JSONMember
                (member, isLast) = try s.scanMember(level: level)
                let known = EventKnownKey(member.keyContent(in: s.bytes), escaped: member.keyEscaped)
                if known == .other {
                    write(member, from: s.bytes, to: &batch)
                } else {
                    handle(known, member, from: s.bytes, state: &state, batch: &batch, fault: &fault, unchecked: &unchecked)
                }
            }
        }
        finish(start: start, state: state, stampMillis: stampMillis, batch: &batch, fault: &fault)
    }

    /// Checks required fields, stamps, closes the event and checks its size.
    private func finish(
        start: Int, state: EventParseState, stampMillis: Int64, batch: inout EventBatch, fault: inout IngestError?
    ) {
        if !state.seen(.eventName), !state.seen(.event) {
            state.report(.eventName, "missing (must be a non-empty string)", into: &fault)
        }
        if !state.seen(.userID) {
            state.report(.userID, "missing (must be a non-empty string)", into: &fault)
        }
        // The stamp is always the last member: delivery finds it there to repair it
        // (EventRewriter).
        let stamp = !state.seen(.timestamp)
        if stamp {
            batch.appendRaw(UnsafeRawBufferPointer(Self.stampPrefix))
            batch.appendTimestamp(millis: stampMillis)
            batch.appendByte(UInt8(ascii: "\""))
            batch.appendByte(UInt8(ascii: ","))
        }
        batch.closeEvent(stamped: stamp)
        if batch.bytesWritten - start > maxEventBytes - sendOverheadBytes, fault == nil {
            let sent = sendOverheadBytes > 0 ? " as sent (context.trackq adds \(sendOverheadBytes) bytes)" : ""
            fault = IngestError(.tooLarge, state.prefix + "event exceeds max-event-bytes (\(maxEventBytes))" + sent)
        }
    }

    private static let stampPrefix: StaticString = "\"timestamp\":\""
    private static let eventNameKey: StaticString = "\"event_name\""

    /// Writes `key:value,` with the key's and value's raw source text.
    @inline(__always)
    private func write(_ member: JSONMember, from source: UnsafeRawBufferPointer, to batch: inout EventBatch) {
        if member.key.upperBound + 1 == member.value.lowerBound {
            // `"key":value` is contiguous in the source: one copy.
            batch.appendRaw(UnsafeRawBufferPointer(rebasing: source[member.key.lowerBound..<member.value.upperBound]))
        } else {
            batch.appendRaw(UnsafeRawBufferPointer(rebasing: source[member.key]))
            batch.appendByte(UInt8(ascii: ":"))
            batch.appendRaw(UnsafeRawBufferPointer(rebasing: source[member.value]))
        }
        batch.appendByte(UInt8(ascii: ","))
    }

    /// Writes `"event_name":value,`.
    private func writeRenamed(_ member: JSONMember, from source: UnsafeRawBufferPointer, to batch: inout EventBatch) {
        batch.appendRaw(UnsafeRawBufferPointer(Self.eventNameKey))
        batch.appendByte(UInt8(ascii: ":"))
        batch.appendRaw(UnsafeRawBufferPointer(rebasing: source[member.value]))
        batch.appendByte(UInt8(ascii: ","))
    }

    /// Applies the rule of one of the six known keys and writes the member; a timestamp
    /// forwarded unchecked adds one to `unchecked`.
    private func handle(
        _ key: EventKnownKey, _ member: JSONMember, from source: UnsafeRawBufferPointer,
        state: inout EventParseState, batch: inout EventBatch, fault: inout IngestError?, unchecked: inout Int
    ) {
        if state.seen(key) {
            state.report("duplicate field \"\(key.name)\"", into: &fault)
            write(member, from: source, to: &batch)
            return
        }
        state.insert(key)
        switch key {
        case .eventName:
            guard member.isNonEmptyString(in: source) else {
                state.report(key, "must be a non-empty string", into: &fault)
                break
            }
            if let alias = state.alias {
                guard Self.sameString(alias.member, member, in: source) else {
                    state.report(key, "differs from its alias \"event\"", into: &fault)
                    break
                }
                // Keep `event_name`, drop the `event` member written before.
                batch.removeBytes(alias.output)
            } else {
                state.eventName = member
            }
        case .event:
            guard member.isNonEmptyString(in: source) else {
                state.report(key, "must be a non-empty string", into: &fault)
                break
            }
            if let name = state.eventName {
                if !Self.sameString(name, member, in: source) {
                    state.report(key, "differs from \"event_name\"", into: &fault)
                }
                return  // equal: drop `event`, `event_name` is already written
            }
            let outputStart = batch.bytesWritten
            writeRenamed(member, from: source, to: &batch)
            state.alias = (member, outputStart..<batch.bytesWritten)
            return
        case .userID:
            if !member.isNonEmptyString(in: source) {
                state.report(key, "must be a non-empty string", into: &fault)
            }
        case .timestamp:
            switch source[member.value.lowerBound] {
            case UInt8(ascii: "\""):
                if !member.isDateTime(in: source) { unchecked += 1 }
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                unchecked += 1
            default:
                state.report(key, "must be a string or a number (best: an RFC 3339 date-time with a time zone)", into: &fault)
            }
        case .properties, .context:
            if source[member.value.lowerBound] != UInt8(ascii: "{") {
                state.report(key, "must be a JSON object", into: &fault)
            }
        case .other:
            break
        }
        write(member, from: source, to: &batch)
    }

    /// Whether two string members hold the same decoded text.
    private static func sameString(_ a: JSONMember, _ b: JSONMember, in source: UnsafeRawBufferPointer) -> Bool {
        let ca = a.valueContent(in: source)
        let cb = b.valueContent(in: source)
        if !a.valueEscaped, !b.valueEscaped {
            return ca.elementsEqual(cb)
        }
        return JSONScanner.decodeString(ca) == JSONScanner.decodeString(cb)
    }
}

/// What a parsed line carries that the app should hear about, though it was accepted.
public struct ParseWarnings: Sendable, Equatable {
    /// Events whose `timestamp` is a string or number but not RFC 3339: forwarded unchanged.
    public var uncheckedTimestamps = 0

    public init() {}

    /// The warning for ``uncheckedTimestamps``, as acks carry it.
    public static let uncheckedTimestampText = "timestamp: not RFC 3339; forwarded unchanged"

    public var isEmpty: Bool { uncheckedTimestamps == 0 }

    /// The texts of the ack's `warnings` array (one per kind, however many events).
    public var messages: [String] { uncheckedTimestamps > 0 ? [Self.uncheckedTimestampText] : [] }
}

// MARK: - Helpers

/// One top-level member of an event: source ranges of its key and value
/// (strings include their quotes).
extension JSONMember {
    /// The bytes between the quotes of a string value.
    package func valueContent(in source: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: source[(value.lowerBound + 1)..<(value.upperBound - 1)])
    }

    package func isNonEmptyString(in source: UnsafeRawBufferPointer) -> Bool {
        // Any escape decodes to at least one character, so raw length decides.
        source[value.lowerBound] == UInt8(ascii: "\"") && value.count > 2
    }

    package func isDateTime(in source: UnsafeRawBufferPointer) -> Bool {
        guard source[value.lowerBound] == UInt8(ascii: "\"") else { return false }
        let content = valueContent(in: source)
        guard valueEscaped else { return RFC3339.isValidDateTime(content) }
        return JSONScanner.decodeString(content).withUnsafeBytes { RFC3339.isValidDateTime($0) }
    }
}

/// The six top-level keys with rules.
private enum EventKnownKey: UInt8 {
    case eventName, event, userID, timestamp, properties, context, other

    package var name: String {
        switch self {
        case .eventName: "event_name"
        case .event: "event"
        case .userID: "user_id"
        case .timestamp: "timestamp"
        case .properties: "properties"
        case .context: "context"
        case .other: "?"
        }
    }

    /// Identifies a key from its raw content. Plain keys are compared byte by
    /// byte; only keys with a backslash escape are decoded (into a small array).
    package init(_ content: UnsafeRawBufferPointer, escaped: Bool) {
        if escaped {
            self = JSONScanner.decodeString(content).withUnsafeBytes { EventKnownKey(plain: $0) }
        } else {
            self.init(plain: content)
        }
    }

    private init(plain k: UnsafeRawBufferPointer) {
        switch k.count {
        case 5 where Self.equal(k, "event"): self = .event
        case 7 where Self.equal(k, "user_id"): self = .userID
        case 7 where Self.equal(k, "context"): self = .context
        case 9 where Self.equal(k, "timestamp"): self = .timestamp
        case 10 where Self.equal(k, "event_name"): self = .eventName
        case 10 where Self.equal(k, "properties"): self = .properties
        default: self = .other
        }
    }

    @inline(__always)
    private static func equal(_ k: UnsafeRawBufferPointer, _ s: StaticString) -> Bool {
        let p = s.utf8Start
        for i in 0..<k.count where k[i] != p[i] { return false }
        return true
    }
}

/// What one event has seen so far.
private struct EventParseState {
    package var index: Int?
    package var seenBits: UInt8 = 0
    /// The `event_name` member, once seen and valid.
    package var eventName: JSONMember?
    /// The `event` alias member and where its renamed copy was written.
    package var alias: (member: JSONMember, output: Range<Int>)?

    package init(index: Int?) {
        self.index = index
    }

    package func seen(_ key: EventKnownKey) -> Bool { seenBits & (1 << key.rawValue) != 0 }
    package mutating func insert(_ key: EventKnownKey) { seenBits |= 1 << key.rawValue }

    /// `[3]: ` in a batch, empty otherwise.
    package var prefix: String { index.map { "[\($0)]: " } ?? "" }

    /// Records `text` (or `[i]: text`) unless a fault is already recorded.
    package func report(_ text: String, into fault: inout IngestError?) {
        guard fault == nil else { return }
        fault = IngestError(.invalidEvent, prefix + text)
    }

    /// Records `field: text` (or `[i].field: text`) unless a fault is already recorded.
    package func report(_ key: EventKnownKey, _ text: String, into fault: inout IngestError?) {
        guard fault == nil else { return }
        let field = index.map { "[\($0)].\(key.name)" } ?? key.name
        fault = IngestError(.invalidEvent, "\(field): \(text)")
    }
}

extension UnsafeRawBufferPointer {
    /// The bytes of a static string.
    fileprivate init(_ s: StaticString) {
        self.init(start: s.utf8Start, count: s.utf8CodeUnitCount)
    }
}
