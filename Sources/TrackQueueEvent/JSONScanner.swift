import TrackQueueSupport

/// A strict RFC 8259 syntax error: the byte offset and what went wrong.
package struct JSONSyntaxError: Error {
    /// Zero-based byte offset into the scanned buffer.
    package var offset: Int
    package var reason: String
}

/// One member of a JSON object, as ranges into the scanned buffer.
package struct JSONMember {
    /// The key, quotes included.
    package var key: Range<Int>
    package var keyEscaped: Bool
    package var value: Range<Int>
    /// For a string value: whether it holds a backslash escape.
    package var valueEscaped: Bool

    /// The key between its quotes.
    package func keyContent(in source: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: source[(key.lowerBound + 1)..<(key.upperBound - 1)])
    }
}

/// A single-pass, validating, byte-level JSON scanner over one buffer.
///
/// It never builds values: it only checks the grammar (including UTF-8 and
/// escapes) and moves `position` past each token, so callers can slice the
/// raw source text of keys and values.
package struct JSONScanner {
    /// The deepest nesting of objects and arrays accepted.
    package static let maxDepth = 64

    package let bytes: UnsafeRawBufferPointer
    /// Offset of the next byte to read.
    package var position: Int

    package init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        self.position = 0
    }

    package var isAtEnd: Bool { position >= bytes.count }

    /// The byte at `position`, or 0 at the end (0 is never valid there).
    @inline(__always)
    package func peek() -> UInt8 {
        position < bytes.count ? bytes[position] : 0
    }

    @inline(__always)
    package func byte(at offset: Int) -> UInt8 {
        offset < bytes.count ? bytes[offset] : 0
    }

    /// An error at the current position.
    package func fail(_ reason: String) -> JSONSyntaxError {
        if isAtEnd {
            return JSONSyntaxError(offset: position, reason: "unexpected end of input (\(reason))")
        }
        return JSONSyntaxError(offset: position, reason: reason)
    }

    @inline(__always)
    package mutating func skipWhitespace() {
        var i = position
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { break }
            i += 1
        }
        position = i
    }

    // MARK: Values

    /// Scans any JSON value starting at `position`. `level` is the nesting
    /// level a container starting here would have (the outermost is 1).
    package mutating func scanValue(level: Int) throws(JSONSyntaxError) {
        switch peek() {
        case UInt8(ascii: "\""):
            _ = try scanString()
        case UInt8(ascii: "{"):
            try scanObject(level: level)
        case UInt8(ascii: "["):
            try scanArray(level: level)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try scanNumber()
        case UInt8(ascii: "t"):
            try scanLiteral("true")
        case UInt8(ascii: "f"):
            try scanLiteral("false")
        case UInt8(ascii: "n"):
            try scanLiteral("null")
        default:
            throw fail("expected a JSON value")
        }
    }

    /// Checks the nesting level of a container about to be opened.
    package func checkDepth(_ level: Int) throws(JSONSyntaxError) {
        guard level <= Self.maxDepth else {
            throw fail("nesting deeper than \(Self.maxDepth)")
        }
    }

    package mutating func scanObject(level: Int) throws(JSONSyntaxError) {
        try checkDepth(level)
        position += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            position += 1
            return
        }
        while try !scanMember(level: level).isLast {}
    }

    /// Scans one member of the object of nesting `level`, starting at its key, and the `,`
    /// after it (with the white space that follows) or the object's closing `}`.
    ///
    /// The one validating walk of an object's members: ``scanObject(level:)`` and the event
    /// parser step through members with it. (Delivery's rewriter walks text validated before
    /// it was stored, without this cost: `StoredJSONWalk`.)
    /// - Returns: the member, and whether it was the object's last (its `}` is consumed).
    @inline(__always)
    package mutating func scanMember(level: Int) throws(JSONSyntaxError) -> (member: JSONMember, isLast: Bool) {
        guard peek() == UInt8(ascii: "\"") else { throw fail("expected a string key") }
        let keyStart = position
        let keyEscaped = try scanString()
        let keyEnd = position
        skipWhitespace()
        guard peek() == UInt8(ascii: ":") else { throw fail("expected ':'") }
        position += 1
        skipWhitespace()
        let valueStart = position
        var valueEscaped = false
        if peek() == UInt8(ascii: "\"") {
            valueEscaped = try scanString()
        } else {
            try scanValue(level: level + 1)
        }
        let member = JSONMember(
            key: keyStart..<keyEnd, keyEscaped: keyEscaped, value: valueStart..<position, valueEscaped: valueEscaped)
        skipWhitespace()
        switch peek() {
        case UInt8(ascii: ","):
            position += 1
            skipWhitespace()
            return (member, false)
        case UInt8(ascii: "}"):
            position += 1
            return (member, true)
        default:
            throw fail("expected ',' or '}'")
        }
    }

    package mutating func scanArray(level: Int) throws(JSONSyntaxError) {
        try checkDepth(level)
        position += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            position += 1
            return
        }
        while true {
            try scanValue(level: level + 1)
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","):
                position += 1
                skipWhitespace()
            case UInt8(ascii: "]"):
                position += 1
                return
            default:
                throw fail("expected ',' or ']'")
            }
        }
    }

    package mutating func scanLiteral(_ literal: StaticString) throws(JSONSyntaxError) {
        let count = literal.utf8CodeUnitCount
        let start = literal.utf8Start
        for k in 0..<count where byte(at: position + k) != start[k] {
            position += k
            throw fail("invalid literal, expected '\(literal)'")
        }
        position += count
    }

    @inline(__always)
    private static func isDigit(_ b: UInt8) -> Bool {
        b &- UInt8(ascii: "0") < 10
    }

    @inline(__always)
    private mutating func skipDigits() {
        var i = position
        let n = bytes.count
        while i < n, Self.isDigit(bytes[i]) { i += 1 }
        position = i
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    package mutating func scanNumber() throws(JSONSyntaxError) {
        if peek() == UInt8(ascii: "-") { position += 1 }
        let first = peek()
        if first == UInt8(ascii: "0") {
            position += 1
            if Self.isDigit(peek()) { throw fail("leading zeros are not allowed in numbers") }
        } else if Self.isDigit(first) {
            position += 1
            skipDigits()
        } else {
            throw fail("expected a digit")
        }
        if peek() == UInt8(ascii: ".") {
            position += 1
            guard Self.isDigit(peek()) else { throw fail("expected a digit after '.'") }
            skipDigits()
        }
        let e = peek()
        if e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            position += 1
            let sign = peek()
            if sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { position += 1 }
            guard Self.isDigit(peek()) else { throw fail("expected a digit in the exponent") }
            skipDigits()
        }
    }

    // MARK: Strings

    /// Scans a string starting at its opening quote and moves past the closing quote.
    /// - Returns: whether the string contains any backslash escape.
    package mutating func scanString() throws(JSONSyntaxError) -> Bool {
        let n = bytes.count
        var i = position + 1
        var escaped = false
        while i < n {
            // Eight bytes at a time while they are printable ASCII other than `"` and `\\`.
            i = SWAR.skip(bytes, from: i, Self.stringStops)
            guard i < n else { break }
            let b = bytes[i]
            if b &- 0x20 < 0x60 {  // printable ASCII
                if b == UInt8(ascii: "\"") {
                    position = i + 1
                    return escaped
                }
                if b == UInt8(ascii: "\\") {
                    escaped = true
                    position = i
                    try scanEscape()
                    i = position
                } else {
                    i += 1
                }
            } else if b >= 0x80 {
                position = i
                try scanUTF8()
                i = position
            } else {
                position = i
                throw fail("unescaped control character in string")
            }
        }
        position = n
        throw fail("unterminated string")
    }

    /// A mark (as ``SWAR/matches(_:_:)`` makes) on each byte of `word` that a string's plain
    /// run cannot hold: a control character, a non-ASCII byte, `"` or `\\`.
    @inline(__always)
    package static func stringStops(_ word: UInt64) -> UInt64 {
        (word & SWAR.highs) | SWAR.below(word, 0x20) | SWAR.matches(word, UInt8(ascii: "\""))
            | SWAR.matches(word, UInt8(ascii: "\\"))
    }

    /// Scans one escape sequence at a backslash.
    private mutating func scanEscape() throws(JSONSyntaxError) {
        switch byte(at: position + 1) {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"),
            UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
            UInt8(ascii: "r"), UInt8(ascii: "t"):
            position += 2
        case UInt8(ascii: "u"):
            guard let unit = hex4(at: position + 2) else { throw fail("invalid \\u escape") }
            switch unit {
            case 0xD800...0xDBFF:
                guard byte(at: position + 6) == UInt8(ascii: "\\"),
                    byte(at: position + 7) == UInt8(ascii: "u"),
                    let low = hex4(at: position + 8), (0xDC00...0xDFFF).contains(low)
                else { throw fail("unpaired surrogate in \\u escape") }
                position += 12
            case 0xDC00...0xDFFF:
                throw fail("unpaired surrogate in \\u escape")
            default:
                position += 6
            }
        default:
            throw fail("invalid escape sequence")
        }
    }

    /// The value of four hex digits at `offset`, or nil.
    package func hex4(at offset: Int) -> UInt32? {
        var value: UInt32 = 0
        for k in 0..<4 {
            guard let digit = Self.hexValue(byte(at: offset + k)) else { return nil }
            value = value << 4 | digit
        }
        return value
    }

    @inline(__always)
    package static func hexValue(_ b: UInt8) -> UInt32? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(b - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(b - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(b - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    /// Validates one multi-byte UTF-8 sequence at `position` (well-formed per
    /// Unicode Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF).
    private mutating func scanUTF8() throws(JSONSyntaxError) {
        let lead = bytes[position]
        let c1 = byte(at: position + 1)
        let length: Int
        let firstOK: Bool
        switch lead {
        case 0xC2...0xDF:
            length = 2
            firstOK = c1 & 0xC0 == 0x80
        case 0xE0:
            length = 3
            firstOK = (0xA0...0xBF).contains(c1)
        case 0xE1...0xEC, 0xEE...0xEF:
            length = 3
            firstOK = c1 & 0xC0 == 0x80
        case 0xED:
            length = 3
            firstOK = (0x80...0x9F).contains(c1)
        case 0xF0:
            length = 4
            firstOK = (0x90...0xBF).contains(c1)
        case 0xF1...0xF3:
            length = 4
            firstOK = c1 & 0xC0 == 0x80
        case 0xF4:
            length = 4
            firstOK = (0x80...0x8F).contains(c1)
        default: throw fail("invalid UTF-8")
        }
        guard firstOK else { throw fail("invalid UTF-8") }
        for k in 2..<length where byte(at: position + k) & 0xC0 != 0x80 {
            throw fail("invalid UTF-8")
        }
        position += length
    }

    // MARK: Decoding (rare paths only)

    /// Decodes the content of a validated string (between its quotes) to UTF-8.
    package static func decodeString(_ content: UnsafeRawBufferPointer) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(content.count)
        let scanner = JSONScanner(content)
        var i = 0
        let n = content.count
        while i < n {
            let b = content[i]
            guard b == UInt8(ascii: "\\"), i + 1 < n else {
                out.append(b)
                i += 1
                continue
            }
            let e = content[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = scanner.hex4(at: i) ?? 0xFFFD
                i += 4
                if (0xD800...0xDBFF).contains(scalar), let low = scanner.hex4(at: i + 2) {
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                }
                appendUTF8(Unicode.Scalar(scalar) ?? "\u{FFFD}", to: &out)
            default: out.append(e)  // " \ /
            }
        }
        return out
    }

    private static func appendUTF8(_ scalar: Unicode.Scalar, to out: inout [UInt8]) {
        out.append(contentsOf: scalar.utf8)
    }
}
