/// Text from outside (an API's answer, a header, a file) made safe to show: one line of
/// printable characters, bounded in length.
///
/// What reaches `sd_notify`, the log, `trackq status`, the alert command's environment or a
/// terminal goes through here first: a newline in an answer body must not become a second
/// `sd_notify` assignment (`\nSTOPPING=1`), nor an escape sequence drive an operator's terminal.
public enum Printable {
    /// `text` with every control character (C0, DEL, C1), line or paragraph separator and
    /// bidirectional override written as `\u{…}`, cut to at most `limit` characters (an
    /// ellipsis marks the cut).
    public static func oneLine(_ text: some StringProtocol, limit: Int) -> String {
        var out = ""
        out.reserveCapacity(min(text.utf8.count, limit))
        var count = 0
        for scalar in text.unicodeScalars {
            let piece = isSafe(scalar) ? String(scalar) : "\\u{\(String(scalar.value, radix: 16))}"
            guard count + piece.count <= limit else {
                out += "…"
                return out
            }
            out += piece
            count += piece.count
        }
        return out
    }

    private static func isSafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: return false  // C0 (newline, ESC, …), DEL, C1
        case 0x2028, 0x2029: return false  // line and paragraph separators
        case 0x202A...0x202E, 0x2066...0x2069: return false  // bidirectional overrides and isolates
        default: return true
        }
    }
}
