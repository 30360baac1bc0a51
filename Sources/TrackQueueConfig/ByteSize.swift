/// Byte sizes as written in settings: `65536`, `64KiB`, `2MB`, `1GiB`.
///
/// A size is a non-negative number, optionally followed by a unit, with at
/// most one space between them. Units: `B`; `KB`, `MB`, `GB` (powers of 1000);
/// `KiB`, `MiB`, `GiB` (powers of 1024). Units are case-insensitive (`kib`
/// is `KiB`, `kb` is `KB`). A decimal such as `1.5MiB` is accepted when it
/// comes to a whole number of bytes.
public enum ByteSize {
    /// What a size looks like, for messages.
    package static let expectation = "expected a size like 65536, 64KiB, 2MB, 1GiB"

    /// The units, by lowercased spelling.
    package static let units: [String: Int128] = [
        "b": 1,
        "kb": 1_000, "mb": 1_000_000, "gb": 1_000_000_000,
        "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
    ]

    /// Parses a size into a number of bytes.
    public static func parse(_ text: String) throws(ConfigurationError) -> Int {
        let numberEnd = text.firstIndex(where: { !($0.isNumber || $0 == ".") }) ?? text.endIndex
        let number = text[..<numberEnd]
        var unitText = text[numberEnd...]
        if unitText.first == " " { unitText = unitText.dropFirst() }
        let multiplier: Int128
        if unitText.isEmpty {
            // A bare number, but not "12 " (a space needs a unit after it).
            guard numberEnd == text.endIndex else { throw ConfigurationError(expectation) }
            multiplier = 1
        } else {
            guard let unit = units[unitText.lowercased()] else { throw ConfigurationError(expectation) }
            multiplier = unit
        }
        let decimal: ConfigSyntax.Decimal
        switch ConfigSyntax.decimal(number) {
        case .number(let value): decimal = value
        case .malformed: throw ConfigurationError(expectation)
        case .overflow: throw ConfigurationError("size is too large")
        }
        switch ConfigSyntax.scale(decimal, by: multiplier) {
        case .value(let bytes):
            guard let result = Int(exactly: bytes) else { throw ConfigurationError("size is too large") }
            return result
        case .overflow:
            throw ConfigurationError("size is too large")
        case .notWhole:
            throw ConfigurationError("size must come to a whole number of bytes")
        }
    }

    /// Formats a byte count in the largest binary unit that divides it
    /// exactly (`65536` → `64KiB`), or as a bare number.
    public static func format(_ bytes: Int) -> String {
        for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        where bytes != 0 && bytes % size == 0 {
            return "\(bytes / size)\(unit)"
        }
        return String(bytes)
    }
}
