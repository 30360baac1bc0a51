/// Durations as written in settings: `250ms`, `1.5s`, `30s`, `5m`, `2h`, `30d`.
///
/// A duration is a non-negative integer or decimal number immediately
/// followed by exactly one unit: `ms`, `s`, `m`, `h` or `d`. A bare number,
/// a negative number, an empty string, a value finer than a nanosecond or one
/// beyond `Int64.max` nanoseconds (about 292 years) is refused.
public enum DurationParser {
    /// What a duration looks like, for messages.
    package static let expectation = "expected a duration like 250ms, 30s, 5m, 2h, 30d"

    /// Nanoseconds per unit, longest spelling first so `ms` wins over `s`.
    package static let units: [(suffix: String, nanoseconds: Int64)] = [
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("h", 3_600 * 1_000_000_000),
        ("d", 86_400 * 1_000_000_000),
    ]

    /// Parses a duration.
    public static func parse(_ text: String) throws(ConfigurationError) -> Duration {
        guard let unit = units.first(where: { text.hasSuffix($0.suffix) }) else {
            throw ConfigurationError(expectation)
        }
        let number = text.dropLast(unit.suffix.count)
        let decimal: ConfigSyntax.Decimal
        switch ConfigSyntax.decimal(number) {
        case .number(let value): decimal = value
        case .malformed: throw ConfigurationError(expectation)
        case .overflow: throw ConfigurationError("duration is too long")
        }
        switch ConfigSyntax.scale(decimal, by: Int128(unit.nanoseconds)) {
        case .value(let nanoseconds):
            guard let exact = Int64(exactly: nanoseconds) else {
                throw ConfigurationError("duration is too long")
            }
            return .nanoseconds(exact)
        case .overflow:
            throw ConfigurationError("duration is too long")
        case .notWhole:
            throw ConfigurationError("duration must be a whole number of nanoseconds")
        }
    }

    /// Formats a duration in the largest unit that gives a whole number
    /// (`0.25s` → `250ms`, `300s` → `5m`, `zero` → `0s`). A duration that is
    /// not a whole number of milliseconds is written in milliseconds with
    /// decimals (`1.5ms`). `parse(format(d)) == d` for every duration `parse`
    /// can return.
    public static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let total = Int128(seconds) * 1_000_000_000_000_000_000 + Int128(attoseconds)
        if total == 0 { return "0s" }
        let sign = total < 0 ? "-" : ""
        let magnitude = total.magnitude
        let attosecondsPerNanosecond: UInt128 = 1_000_000_000
        for unit in units.reversed() {
            let size = UInt128(unit.nanoseconds) * attosecondsPerNanosecond
            if magnitude % size == 0 {
                return "\(sign)\(magnitude / size)\(unit.suffix)"
            }
        }
        // Finer than a millisecond: milliseconds with as many decimals as needed.
        let perMillisecond: UInt128 = 1_000_000_000_000_000
        var fraction = String(magnitude % perMillisecond)
        fraction = String(repeating: "0", count: 15 - fraction.count) + fraction
        while fraction.last == "0" { fraction.removeLast() }
        return "\(sign)\(magnitude / perMillisecond).\(fraction)ms"
    }
}
