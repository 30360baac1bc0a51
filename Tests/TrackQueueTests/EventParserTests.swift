import Foundation
import Testing

@testable import TrackQueue

@Suite struct EventParserTests {
    // MARK: Helpers

    let stamp: Int64 = 1_764_219_600_123
    let parser = EventParser(maxEventBytes: 65536)
    let stampText = "2025-11-27T05:00:00.123Z"

    /// Parses `line` (text) into a fresh batch and returns the events as strings.
    func parse(_ line: String, maxEventBytes: Int = 65536) -> Result<[String], IngestError> {
        parseBytes(Array(line.utf8), maxEventBytes: maxEventBytes)
    }

    func parseBytes(_ line: [UInt8], maxEventBytes: Int = 65536) -> Result<[String], IngestError> {
        var batch = EventBatch()
        let parser = EventParser(maxEventBytes: maxEventBytes)
        do {
            let n = try parser.parse(line, stampMillis: stamp, into: &batch)
            #expect(n == batch.count)
            return .success((0..<batch.count).map { String(decoding: batch[$0], as: UTF8.self) })
        } catch {
            #expect(batch.isEmpty)
            return .failure(error)
        }
    }

    /// Expects exactly one normalized event equal to `expected`.
    func expectEvent(
        _ line: String, _ expected: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        switch parse(line) {
        case .success(let events):
            #expect(events == [expected], sourceLocation: sourceLocation)
            if let first = events.first { expectValidJSON(first, sourceLocation: sourceLocation) }
        case .failure(let error):
            Issue.record("unexpected error \(error) for \(line)", sourceLocation: sourceLocation)
        }
    }

    /// Expects an error with `code` whose message contains `fragment`.
    func expectError(
        _ line: String, _ code: IngestError.Code, _ fragment: String, maxEventBytes: Int = 65536,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        expectError(bytes: Array(line.utf8), code, fragment, maxEventBytes: maxEventBytes, sourceLocation: sourceLocation)
    }

    func expectError(
        bytes: [UInt8], _ code: IngestError.Code, _ fragment: String, maxEventBytes: Int = 65536,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        switch parseBytes(bytes, maxEventBytes: maxEventBytes) {
        case .success(let events):
            Issue.record("expected \(code) but got \(events)", sourceLocation: sourceLocation)
        case .failure(let error):
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            #expect(error.message.contains(fragment), "message: \(error.message)", sourceLocation: sourceLocation)
        }
    }

    func expectValidJSON(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let object = try? JSONSerialization.jsonObject(with: Data(text.utf8))
        #expect(object is [String: Any], "not valid JSON: \(text)", sourceLocation: sourceLocation)
    }

    let base = #""event_name":"e","user_id":"u""#

    // MARK: Normalization

    @Test func normalizesWhitespaceAliasAndStamp() {
        expectEvent(
            "  { \"event\":\"a\" , \"user_id\" : \"u\"}\t",
            #"{"event_name":"a","user_id":"u","timestamp":"2025-11-27T05:00:00.123Z"}"#)
    }

    @Test func keepsGivenTimestampAndOrder() {
        expectEvent(
            #"{"user_id":"u","timestamp":"2026-11-27T05:00:00Z","event_name":"e"}"#,
            #"{"user_id":"u","timestamp":"2026-11-27T05:00:00Z","event_name":"e"}"#)
    }

    @Test func forwardsUnknownFieldsVerbatimInOrder() {
        let line = """
            {"z": 1.5e+3 ,"event_name":"e", "a" : [ 1, {"x" : null} ], "user_id":"u", "p":{ "k" : "v\\u00e9\\n" }, "b":true,"c":false,"d":null,"s":"caf\u{e9} \\"q\\""}
            """
        let expected = """
            {"z":1.5e+3,"event_name":"e","a":[ 1, {"x" : null} ],"user_id":"u","p":{ "k" : "v\\u00e9\\n" },"b":true,"c":false,"d":null,"s":"caf\u{e9} \\"q\\"","timestamp":"\(stampText)"}
            """
        expectEvent(line, expected)
    }

    @Test func forwardsUnknownDuplicateKeys() {
        expectEvent(
            #"{\#(base),"x":1,"x":2}"#,
            #"{\#(base),"x":1,"x":2,"timestamp":"\#(stampText)"}"#)
    }

    @Test func keepsNestedWhitespaceAndPropertiesContext() {
        expectEvent(
            "{\(base),\"properties\":{ \"a\" :\n [1, 2] },\"context\":{}}",
            "{\(base),\"properties\":{ \"a\" :\n [1, 2] },\"context\":{},\"timestamp\":\"\(stampText)\"}")
    }

    @Test func allowsJSONWhitespaceAroundLine() {
        expectEvent("\t \r\n{\(base)}\r\n \t", "{\(base),\"timestamp\":\"\(stampText)\"}")
    }

    @Test func aliasAndEventNameEqualKeepsOne() {
        expectEvent(
            #"{"event":"a","user_id":"u","event_name":"a"}"#,
            #"{"user_id":"u","event_name":"a","timestamp":"\#(stampText)"}"#)
        expectEvent(
            #"{"event_name":"a","event":"a","user_id":"u"}"#,
            #"{"event_name":"a","user_id":"u","timestamp":"\#(stampText)"}"#)
        // Equal after decoding escapes; the event_name member is kept as written.
        expectEvent(
            #"{"event_name":"\u0061b","user_id":"u","event":"a\u0062"}"#,
            #"{"event_name":"\u0061b","user_id":"u","timestamp":"\#(stampText)"}"#)
    }

    @Test func aliasConflictIsInvalid() {
        expectError(#"{"event":"a","event_name":"b","user_id":"u"}"#, .invalidEvent, "event_name: differs")
        expectError(#"{"event_name":"a","event":"b","user_id":"u"}"#, .invalidEvent, "event: differs")
        expectError(#"{"event_name":"a","event":"A","user_id":"u"}"#, .invalidEvent, "event")
    }

    @Test func escapedKeysAreRecognized() {
        // Escaped alias key is replaced by "event_name"; other escaped keys keep their text.
        expectEvent(
            #"{"ev\u0065nt":"a","user\u005fid":"u","x\u0079":1}"#,
            #"{"event_name":"a","user\u005fid":"u","x\u0079":1,"timestamp":"\#(stampText)"}"#)
        expectError(#"{"event_name":"a","user_id":"u","user\u005fid":"v"}"#, .invalidEvent, "duplicate field \"user_id\"")
        expectError(#"{"event_name":"a","user\u005fid":""}"#, .invalidEvent, "user_id: must be a non-empty string")
        expectError(#"{\#(base),"time\u0073tamp":true}"#, .invalidEvent, "timestamp:")
    }

    @Test func stampedTimestampIsAppendedLast() {
        expectEvent(#"{\#(base),"x":{}}"#, #"{\#(base),"x":{},"timestamp":"\#(stampText)"}"#)
    }

    @Test func validTimestampForms() {
        for ts in ["2026-11-27T05:00:00Z", "2026-11-27T05:00:00.123+01:00", "2024-02-29t23:59:60.5z", "2026-11-27T05:00:00\\u002e1Z"] {
            expectEvent(#"{\#(base),"timestamp":"\#(ts)"}"#, #"{\#(base),"timestamp":"\#(ts)"}"#)
        }
    }

    // MARK: Event rules

    @Test func eventNameRules() {
        expectError(#"{"user_id":"u"}"#, .invalidEvent, "event_name: missing")
        expectError(#"{"event_name":"","user_id":"u"}"#, .invalidEvent, "event_name: must be a non-empty string")
        expectError(#"{"event_name":1,"user_id":"u"}"#, .invalidEvent, "event_name: must be a non-empty string")
        expectError(#"{"event_name":null,"user_id":"u"}"#, .invalidEvent, "event_name:")
        expectError(#"{"event":"","user_id":"u"}"#, .invalidEvent, "event: must be a non-empty string")
        expectError(#"{"event":["a"],"user_id":"u"}"#, .invalidEvent, "event: must be a non-empty string")
    }

    @Test func userIDRules() {
        expectError(#"{"event_name":"e"}"#, .invalidEvent, "user_id: missing")
        expectError(#"{"event_name":"e","user_id":""}"#, .invalidEvent, "user_id: must be a non-empty string")
        expectError(#"{"event_name":"e","user_id":42}"#, .invalidEvent, "user_id: must be a non-empty string")
        expectError(#"{"event_name":"e","user_id":{}}"#, .invalidEvent, "user_id: must be a non-empty string")
    }

    @Test func timestampsThatAreNotRFC3339AreForwardedUnchangedWithAWarning() throws {
        for unchecked in [
            #""2026-11-27 05:00:00Z""#, #""2026-11-27T05:00:00""#, #""2025-02-29T00:00:00Z""#,
            #""2026-11-27T24:00:00Z""#, #""2026-11-27T05:00:00+0100""#, "1764219600", "-1.5e3", #""""#,
            #""20-11-23T22:28:55.111Z""#, #""yesterday \u00e9""#,
        ] {
            let line = #"{\#(base),"timestamp":\#(unchecked)}"#
            expectEvent(line, line)
            var batch = EventBatch()
            var warnings = ParseWarnings()
            #expect(try parser.parse(line, stampMillis: stamp, into: &batch, warnings: &warnings) == 1)
            #expect(warnings.uncheckedTimestamps == 1, "\(unchecked)")
            #expect(warnings.messages == ["timestamp: not RFC 3339; forwarded unchanged"])
        }
        // An RFC 3339 timestamp warns of nothing; a batch counts each unchecked event.
        var batch = EventBatch()
        var warnings = ParseWarnings()
        _ = try parser.parse(#"{\#(base),"timestamp":"2026-11-27T05:00:00Z"}"#, stampMillis: stamp, into: &batch, warnings: &warnings)
        #expect(warnings.isEmpty)
        let mixed = #"[{\#(base),"timestamp":1},{\#(base)},{\#(base),"timestamp":"x"}]"#
        #expect(try parser.parse(mixed, stampMillis: stamp, into: &batch, warnings: &warnings) == 3)
        #expect(warnings.uncheckedTimestamps == 2)
        // A refused line adds no warning.
        #expect(throws: IngestError.self) {
            try parser.parse(#"[{\#(base),"timestamp":1},{"event_name":"e"}]"#, stampMillis: stamp, into: &batch, warnings: &warnings)
        }
        #expect(warnings.uncheckedTimestamps == 2)
    }

    @Test func timestampsOfOtherTypesAreRefused() {
        for bad in ["null", "true", "false", "{}", #"["2026-11-27T05:00:00Z"]"#] {
            expectError(#"{\#(base),"timestamp":\#(bad)}"#, .invalidEvent, "timestamp: must be a string or a number")
        }
    }

    @Test func propertiesAndContextMustBeObjects() {
        for field in ["properties", "context"] {
            for bad in ["null", "[]", "\"x\"", "1", "true"] {
                expectError(#"{\#(base),"\#(field)":\#(bad)}"#, .invalidEvent, "\(field): must be a JSON object")
            }
        }
    }

    @Test func duplicateKnownFields() {
        for (field, value) in [
            ("event_name", #""e""#), ("event", #""e""#), ("user_id", #""u""#),
            ("timestamp", #""2026-11-27T05:00:00Z""#), ("properties", "{}"), ("context", "{}"),
        ] {
            let line =
                field == "event_name" || field == "user_id"
                ? #"{\#(base),"\#(field)":\#(value)}"#
                : #"{\#(base),"\#(field)":\#(value),"\#(field)":\#(value)}"#
            expectError(line, .invalidEvent, "duplicate field \"\(field)\"")
        }
    }

    @Test func topLevelScalarsAreInvalidEvents() {
        for line in ["1", "\"x\"", "null", "true", "-0.5e3"] {
            expectError(line, .invalidEvent, "top-level value must be a JSON object or an array")
        }
    }

    @Test func maxEventBytesBoundary() throws {
        let line = #"{\#(base),"timestamp":"2026-11-27T05:00:00Z","pad":"xxxx"}"#
        let size = line.utf8.count
        #expect(try parse(line, maxEventBytes: size).get().count == 1)
        expectError(line, .tooLarge, "event exceeds max-event-bytes (\(size - 1))", maxEventBytes: size - 1)
        // The limit applies to the normalized text (whitespace removed, stamp added).
        let spaced = #"{ "event_name" : "e" , "user_id" : "u" }"#
        let normalized = "{\(base),\"timestamp\":\"\(stampText)\"}".utf8.count
        #expect(try parse(spaced, maxEventBytes: normalized).get().count == 1)
        expectError(spaced, .tooLarge, "max-event-bytes", maxEventBytes: normalized - 1)
    }

    @Test func maxEventBytesCountsWhatDeliveryAddsWhenItAddsSomething() throws {
        let line = #"{\#(base),"timestamp":"2026-11-27T05:00:00Z","pad":"xxxx"}"#
        let size = line.utf8.count
        let sending = EventParser(maxEventBytes: size + 128, sendOverheadBytes: 128)
        var batch = EventBatch()
        #expect(try sending.parse(line, stampMillis: 0, into: &batch) == 1)
        let tight = EventParser(maxEventBytes: size + 127, sendOverheadBytes: 128)
        #expect(throws: IngestError.self) { try tight.parse(line, stampMillis: 0, into: &batch) }
        do {
            _ = try tight.parse(line, stampMillis: 0, into: &batch)
        } catch {
            #expect(error.message.hasSuffix("event exceeds max-event-bytes (\(size + 127)) as sent (context.trackq adds 128 bytes)"))
        }
    }

    @Test func syntaxErrorsWinOverEventErrors() {
        expectError(#"{"user_id":1,"x":}"#, .invalidJSON, "invalid JSON at byte 17")
        expectError(#"[1, {"#, .invalidJSON, "invalid JSON")
    }

    // MARK: Batches

    @Test func batchOfEvents() throws {
        let events = try parse(#"[ {\#(base)} , {"event":"b","user_id":"v","timestamp":"2026-11-27T05:00:00Z"} ]"#).get()
        #expect(
            events == [
                #"{\#(base),"timestamp":"\#(stampText)"}"#,
                #"{"event_name":"b","user_id":"v","timestamp":"2026-11-27T05:00:00Z"}"#,
            ])
    }

    @Test func emptyBatch() throws {
        #expect(try parse("[]").get().isEmpty)
        #expect(try parse(" [ \t ] ").get().isEmpty)
    }

    @Test func batchErrorsNameTheElement() {
        expectError(#"[{\#(base)},{"event_name":"e"}]"#, .invalidEvent, "[1].user_id: missing")
        expectError(#"[{\#(base)},{\#(base)},{"event_name":"e","user_id":""}]"#, .invalidEvent, "[2].user_id: must be a non-empty string")
        expectError(#"[{\#(base)},2]"#, .invalidEvent, "[1]: must be a JSON object")
        expectError(#"[{\#(base)},[]]"#, .invalidEvent, "[1]: must be a JSON object")
        expectError(
            #"[{\#(base),"pad":"\#(String(repeating: "x", count: 100))"}]"#, .tooLarge, "[0]: event exceeds max-event-bytes (100)",
            maxEventBytes: 100)
        expectError(#"[{\#(base),"context":1}]"#, .invalidEvent, "[0].context: must be a JSON object")
        expectError(#"[{\#(base),"user_id":"x"}]"#, .invalidEvent, "[0]: duplicate field \"user_id\"")
    }

    @Test func batchIsAtomic() throws {
        let parser = EventParser(maxEventBytes: 65536)
        var batch = EventBatch()
        #expect(try parser.parse("{\(base)}", stampMillis: stamp, into: &batch) == 1)
        let before = batch.bytes
        let beforeEnds = batch.ends
        let line = #"[{\#(base)},{\#(base)},{"event_name":"e","user_id":5},{\#(base)}]"#
        #expect(throws: IngestError.self) { try parser.parse(line, stampMillis: stamp, into: &batch) }
        #expect(batch.count == 1)
        #expect(batch.bytes == before)
        #expect(batch.ends == beforeEnds)
        // A syntax error late in the array also leaves the batch untouched.
        #expect(throws: IngestError.self) { try parser.parse(#"[{\#(base)},{\#(base)},{"#, stampMillis: stamp, into: &batch) }
        #expect(batch.bytes == before && batch.ends == beforeEnds)
        // Alias removal inside a failing batch rolls back as well.
        #expect(throws: IngestError.self) {
            try parser.parse(#"[{"event":"a","event_name":"a","user_id":"u"},{}]"#, stampMillis: stamp, into: &batch)
        }
        #expect(batch.bytes == before && batch.ends == beforeEnds)
        #expect(try parser.parse("[{\(base)},{\(base)}]", stampMillis: stamp, into: &batch) == 2)
        #expect(batch.count == 3)
    }

    @Test func batchSizeLimit() throws {
        let element = "{\(base)}"
        let full = "[" + Array(repeating: element, count: 1000).joined(separator: ",") + "]"
        #expect(try parse(full).get().count == EventParser.maxBatchEvents)
        let over = "[" + Array(repeating: element, count: 1001).joined(separator: ",") + "]"
        expectError(over, .tooLarge, "batch has more than 1000 events")
    }

    // MARK: JSON syntax

    @Test func syntaxErrorsAreInvalidJSON() {
        expectError(#"{"event_name" "e"}"#, .invalidJSON, "invalid JSON at byte 14: expected ':'")
        expectError(#"{\#(base)} x"#, .invalidJSON, "unexpected data after the JSON value")
        expectError(#"{\#(base)}{}"#, .invalidJSON, "unexpected data")
        expectError(#"{\#(base),}"#, .invalidJSON, "expected a string key")
        expectError(#"{\#(base),"x":[1,]}"#, .invalidJSON, "expected a JSON value")
        expectError(#"{\#(base),"x":{"a":1,}}"#, .invalidJSON, "expected a string key")
        expectError(#"{\#(base)"#, .invalidJSON, "unexpected end of input")
        expectError(#"[{\#(base)},]"#, .invalidJSON, "expected a JSON value")
        expectError(#"[{\#(base)} {\#(base)}]"#, .invalidJSON, "expected ',' or ']'")
        expectError(#"{'event_name':"e"}"#, .invalidJSON, "expected a string key")
        expectError(#"{\#(base),"x":tru}"#, .invalidJSON, "invalid literal")
        expectError(#"{\#(base),"x":"abc}"#, .invalidJSON, "unterminated string")
        expectError("", .invalidJSON, "invalid JSON at byte 0")
    }

    @Test func invalidUTF8IsInvalidJSON() {
        let prefix = Array(#"{\#(base),"x":""#.utf8)
        let suffix = Array(#""}"#.utf8)
        let cases: [[UInt8]] = [
            [0xC3, 0x28], [0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xE0, 0x80, 0xAF],
            [0xF4, 0x90, 0x80, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xE2, 0x82],
            [0xF0, 0x9F, 0x98],
        ]
        for bad in cases {
            expectError(bytes: prefix + bad + suffix, .invalidJSON, "invalid UTF-8")
        }
        // Outside strings too.
        expectError(bytes: Array("{\(base)}".utf8) + [0xC3, 0xA9], .invalidJSON, "invalid JSON")
        expectError(bytes: [0xEF, 0xBB, 0xBF] + Array("{\(base)}".utf8), .invalidJSON, "invalid JSON at byte 0")
        // Valid multi-byte sequences pass through unchanged.
        expectEvent(
            "{\(base),\"x\":\"é€😀\u{10FFFF}\"}",
            "{\(base),\"x\":\"é€😀\u{10FFFF}\",\"timestamp\":\"\(stampText)\"}")
    }

    @Test func controlCharactersAndEscapes() {
        for c: UInt8 in [0x00, 0x01, 0x09, 0x0A, 0x0D, 0x1F] {
            expectError(bytes: Array(#"{\#(base),"x":"a"#.utf8) + [c] + Array(#"b"}"#.utf8), .invalidJSON, "control character")
        }
        expectEvent(#"{\#(base),"x":"a\u007f"}"#, #"{\#(base),"x":"a\u007f","timestamp":"\#(stampText)"}"#)
        for bad in [#"\x41"#, #"\u12"#, #"\u12G4"#, #"\'"#, #"\U0041"#, #"\a"#] {
            expectError(#"{\#(base),"x":"\#(bad)"}"#, .invalidJSON, "escape")
        }
        for bad in [#"\uD800"#, #"\uDC00"#, #"\uD800\u0041"#, #"\uD800x"#] {
            expectError(#"{\#(base),"x":"\#(bad)"}"#, .invalidJSON, "surrogate")
        }
        let good = #"\"\\\/\b\f\n\r\t\u0000\uD83D\uDE00"#
        expectEvent(#"{\#(base),"x":"\#(good)"}"#, #"{\#(base),"x":"\#(good)","timestamp":"\#(stampText)"}"#)
    }

    @Test func numberGrammar() {
        for good in ["0", "-0", "1", "-1", "10", "1.5", "-0.0", "0e0", "1E+2", "1e-2", "123.456e78", "-9007199254740993"] {
            expectEvent(#"{\#(base),"n":\#(good)}"#, #"{\#(base),"n":\#(good),"timestamp":"\#(stampText)"}"#)
        }
        for bad in ["01", "-01", "+1", ".5", "1.", "1.e2", "1e", "1e+", "-", "--1", "NaN", "Infinity", "-Infinity", "0x10", "1_000", "00"] {
            expectError(#"{\#(base),"n":\#(bad)}"#, .invalidJSON, "invalid JSON")
        }
    }

    @Test func nestingDepthLimit() throws {
        // The event object is level 1, so 63 more levels are allowed inside it.
        func nested(_ levels: Int) -> String {
            "{\(base),\"x\":" + String(repeating: "[", count: levels) + String(repeating: "]", count: levels) + "}"
        }
        #expect(try parse(nested(63)).get().count == 1)
        expectError(nested(64), .invalidJSON, "nesting deeper than 64")
        // In a batch, the array is one level more.
        #expect(try parse("[" + nested(62) + "]").get().count == 1)
        expectError("[" + nested(63) + "]", .invalidJSON, "nesting deeper than 64")
        // Objects count too.
        let objects = String(repeating: #"{"a":"#, count: 63) + "1" + String(repeating: "}", count: 63)
        #expect(try parse(#"{\#(base),"x":\#(objects)}"#).get().count == 1)
        let deeper = String(repeating: #"{"a":"#, count: 64) + "1" + String(repeating: "}", count: 64)
        expectError(#"{\#(base),"x":\#(deeper)}"#, .invalidJSON, "nesting deeper than 64")
        // Deep top-level garbage must not crash.
        expectError(String(repeating: "[", count: 100_000), .invalidJSON, "nesting deeper than 64")
    }

    // MARK: Output validity

    @Test func outputRoundTripsThroughJSONSerialization() throws {
        let lines = [
            #"{"event":"a","user_id":"u","properties":{"n":[1,2.5,-3e2,null,true]},"context":{"k":"\u00e9\n"}}"#,
            #" { "event_name" : "x" , "user_id" : "\ud83d\ude00" , "extra" : [ ] } "#,
            #"[{"event_name":"a","user_id":"u"},{"event":"b","user_id":"v","timestamp":"2026-11-27T05:00:00.5-03:30"}]"#,
        ]
        for line in lines {
            let events = try parse(line).get()
            for event in events {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any])
                #expect(object["event_name"] is String)
                #expect(object["user_id"] is String)
                #expect(object["timestamp"] is String)
                #expect(object["event"] == nil)
            }
        }
    }

    // MARK: API

    @Test func eventBatchBasics() {
        var batch = EventBatch()
        #expect(batch.isEmpty)
        batch.append(Array("{\"a\":1}".utf8))
        batch.append("{}".utf8)
        #expect(batch.count == 2)
        #expect(Array(batch[0]) == Array("{\"a\":1}".utf8))
        #expect(Array(batch[1]) == Array("{}".utf8))
        #expect(batch.ends == [7, 9])
        batch.removeAll(keepingCapacity: true)
        #expect(batch.isEmpty && batch.bytes.isEmpty)
    }

    @Test func parseOverloadsAgree() throws {
        let parser = EventParser(maxEventBytes: 1000)
        let line = "{\(base)}"
        var a = EventBatch()
        var b = EventBatch()
        var c = EventBatch()
        _ = try parser.parse(line, stampMillis: stamp, into: &a)
        _ = try parser.parse(line.dropFirst(0), stampMillis: stamp, into: &b)
        _ = try Array(line.utf8).withUnsafeBytes { raw throws(IngestError) in
            try parser.parse(raw, stampMillis: stamp, into: &c)
        }
        #expect(a.bytes == b.bytes && b.bytes == c.bytes)
    }

    @Test func errorCodes() {
        #expect(IngestError.Code.invalidJSON.description == "invalid_json")
        #expect(IngestError.Code.invalidEvent.description == "invalid_event")
        #expect(IngestError.Code.tooLarge.description == "too_large")
        #expect(IngestError.Code.queueFull.description == "queue_full")
        #expect(IngestError.Code.unavailable.description == "unavailable")
        let error = IngestError(.invalidEvent, "user_id: must be a non-empty string")
        #expect(error.description == "invalid_event: user_id: must be a non-empty string")
        #expect(error == IngestError(.invalidEvent, "user_id: must be a non-empty string"))
    }

    // MARK: Differential check against JSONSerialization

    /// Values whose strict-JSON verdict is clear; each is wrapped as `"value"` of an event.
    /// Left out on purpose, because JSONSerialization is lenient or stricter than the grammar:
    /// trailing commas (`[1,]`, `{"a":1,}` are accepted by it), numbers out of Double range
    /// (`1e789` is rejected by it), unpaired surrogate escapes and deep nesting.
    static let differentialCases: [String] = [
        // valid
        "0", "-0", "1", "-1", "12345678901234567890", "1.5", "-1.5", "1e5", "1E5", "1e+5", "1e-5", "1.25e-3",
        "0.0", "-0.0e0", "true", "false", "null", #""""#, #""abc""#, #""\"""#, #""\\""#, #""\/""#,
        #""\b\f\n\r\t""#, #""\u0041""#, #""\u00e9""#, #""\uD83D\uDE00""#, #""é""#, #""日本語""#, #""😀""#,
        "[]", "{}", "[1,2,3]", "[ 1 , 2 ]", #"{"a":1}"#, #"{ "a" : 1 , "b" : [ ] }"#, #"[[[]]]"#,
        #"{"a":{"b":{"c":null}}}"#, #"[true,false,null,"x",1.0,{}]"#, "\t[\n1\r\n]\t", #"{"":""}"#,
        #"{"a":1,"a":2}"#, #""\u0000""#, #""a\u001fb""#, #"[-1e-0]"#, #"["\u20AC"]"#,
        // invalid
        "", " ", "01", "-01", "+1", ".5", "1.", "-", "1e", "1e+", "1.e1", "0x1", "NaN", "Infinity", "-Infinity",
        "tru", "True", "nul", "NULL", "fals", "'a'", #""abc"#, #""\x""#, #""\u12""#, #""\uZZZZ""#, #""\U0041""#,
        "[", "]", "[,1]", "[1 2]", "{", "}", #"{"a"}"#, #"{"a":}"#, #"{"a" 1}"#, #"{a:1}"#,
        #"{,"a":1}"#, #"{"a":1 "b":2}"#, "[1]]", "{}}", "[1,,2]", #"{"a"::1}"#, "1 2",
        #"["a" "b"]"#, "/*c*/1", "1//c", "\u{00A0}1", "[01]", "[1.]", "[-]", "[.1]", "[1e]", "[+1]", "undefined",
        #"{"a":1}x"#, #"[1]x"#, "\"a\u{0001}b\"", "\"a\nb\"", "\"a\tb\"", #"["\"]"#, "[\"\\\"]",
    ]

    @Test(arguments: differentialCases)
    func verdictMatchesJSONSerialization(value: String) {
        let line = #"{"event_name":"e","user_id":"u","value":\#(value)}"#
        let foundationAccepts = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil
        let ours = parse(line)
        switch ours {
        case .success:
            #expect(foundationAccepts, "we accept, Foundation rejects: \(value)")
        case .failure(let error):
            #expect(!foundationAccepts, "we reject (\(error)), Foundation accepts: \(value)")
            #expect(error.code == .invalidJSON)
        }
    }

    @Test func differentialInvalidUTF8() {
        let cases: [[UInt8]] = [[0xC3, 0x28], [0xFF], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80]]
        for bad in cases {
            let line = Array(#"{"event_name":"e","user_id":"u","value":""#.utf8) + bad + Array(#""}"#.utf8)
            let foundationAccepts = (try? JSONSerialization.jsonObject(with: Data(line))) != nil
            #expect(!foundationAccepts)
            if case .success = parseBytes(line) { Issue.record("accepted invalid UTF-8 \(bad)") }
        }
    }
}

@Suite struct JSONScannerWordTests {
    /// The lowest byte `SWAR.matches` and `SWAR.below` mark is the first byte that matches,
    /// for every byte value at every position, whatever the bytes after it (a borrow may mark
    /// those, never one before).
    @Test func theLowestMarkIsTheFirstMatch() {
        var generator = SplitMix64(seed: 8)
        func first(_ bytes: [UInt8], _ test: (UInt8) -> Bool) -> Int { bytes.firstIndex(where: test) ?? 8 }
        func lowest(_ marks: UInt64) -> Int { marks.trailingZeroBitCount / 8 }
        for position in 0..<8 {
            for value in 0...255 {
                for _ in 0..<4 {
                    var bytes = (0..<8).map { _ in UInt8.random(in: 0...255, using: &generator) }
                    bytes[position] = UInt8(value)
                    let word = bytes.withUnsafeBytes { SWAR.word($0, at: 0) }
                    for target in [UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "{"), 0, 0xFF, UInt8(value)] {
                        #expect(lowest(SWAR.matches(word, target)) == first(bytes) { $0 == target }, "\(bytes) \(target)")
                    }
                    for limit in [UInt8(0x20), 0x80, 1] {
                        #expect(lowest(SWAR.below(word, limit)) == first(bytes) { $0 < limit }, "\(bytes) \(limit)")
                    }
                }
            }
        }
    }

    /// The eight-byte test of a string's plain run agrees with a byte-by-byte check, for
    /// every byte value at every position among plain neighbours.
    @Test func aWordIsPlainExactlyWhenEachOfItsBytesIs() {
        func plain(_ b: UInt8) -> Bool { b >= 0x20 && b < 0x80 && b != UInt8(ascii: "\"") && b != UInt8(ascii: "\\") }
        var generator = SystemRandomNumberGenerator()
        for position in 0..<8 {
            for value in 0...255 {
                for _ in 0..<4 {
                    var bytes = (0..<8).map { _ in UInt8.random(in: 0x20...0x7E, using: &generator) }
                        .map { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") ? UInt8(ascii: "a") : $0 }
                    bytes[position] = UInt8(value)
                    let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                    #expect((JSONScanner.stringStops(word) == 0) == bytes.allSatisfy(plain), "\(bytes)")
                }
            }
        }
    }

    /// Strings longer than a word are still checked byte by byte where it matters: a control
    /// character, a bad escape or bad UTF-8 after a plain run is refused, at its offset.
    @Test func aFaultAfterAPlainRunIsStillFound() {
        for (text, offset) in [
            ("\"abcdefghijklmnop\u{01}q\"", 17), ("\"abcdefghijklmnop\\xq\"", 17), ("\"abcdefghijklmnopq", 18),
        ] {
            Array(text.utf8).withUnsafeBytes { raw in
                var scanner = JSONScanner(raw)
                do throws(JSONSyntaxError) {
                    _ = try scanner.scanString()
                    Issue.record("accepted \(text)")
                } catch {
                    #expect(error.offset == offset, "\(text)")
                }
            }
        }
        Array("\"abcdefghijklmnop\\\"qrstuvwxyz0123\"".utf8).withUnsafeBytes { raw in
            var scanner = JSONScanner(raw)
            #expect((try? scanner.scanString()) == true)
            #expect(scanner.position == raw.count)
        }
    }
}
