/// JSON strings for the text trackq writes itself: answers, status, dead-letter listings.
public enum JSONText {
    /// `value` as a JSON string literal, quotes included.
    public static func quoted(_ value: String) -> String {
        "\"" + escaped(value) + "\""
    }

    /// `values` as a JSON array of strings: `["a","b"]`.
    public static func array(_ values: [String]) -> String {
        "[" + values.map(quoted).joined(separator: ",") + "]"
    }

    /// `value` escaped for the inside of a JSON string (RFC 8259 §7): quote, backslash and
    /// every control character (C0 and DEL); everything else, non-ASCII included, as is.
    public static func escaped(_ value: String) -> String {
        var result = ""
        result.unicodeScalars.reserveCapacity(value.unicodeScalars.count)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": result.append("\\\"")
            case "\\": result.append("\\\\")
            case "\n": result.append("\\n")
            case "\r": result.append("\\r")
            case "\t": result.append("\\t")
            case "\u{08}": result.append("\\b")
            case "\u{0C}": result.append("\\f")
            case "\u{00}"..."\u{1F}", "\u{7F}":
                let hex = String(scalar.value, radix: 16, uppercase: false)
                result.append("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
            default:
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
