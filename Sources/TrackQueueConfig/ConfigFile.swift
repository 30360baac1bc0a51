/// A setting or config file that cannot be used. The daemon refuses to start
/// with it; the caller prints `message` and exits with status 2.
///
/// Messages name the setting (flag and environment variable) and, for values
/// read from a config file, the file and line. They never contain a token.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible, Equatable {
    /// A complete, human-readable explanation.
    public var message: String

    /// Creates an error with a complete message.
    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// A parsed config file: one `key = value` per line.
///
/// The format:
/// - keys are the daemon's flag names without `--` (`batch-max-events = 500`);
/// - a line whose first non-blank character is `#` is a comment, blank lines
///   are ignored (there are no end-of-line comments: a `#` after `=` is part
///   of the value);
/// - whitespace around keys and values is trimmed;
/// - a value may be wrapped in double quotes, inside which `\"` and `\\` are
///   the only escapes;
/// - unknown keys, duplicate keys, a `token` key and lines without `=` are
///   refused with an error naming the file and line.
public struct ConfigFile: Sendable, Equatable {
    /// One `key = value` line.
    public struct Entry: Sendable, Equatable {
        /// The value, unquoted and unescaped.
        public var value: String
        /// The 1-based line number the value was read from.
        public var line: Int

        /// Creates a value with every property given (or its default).
        package init(value: String, line: Int) {
            self.value = value
            self.line = line
        }
    }

    /// The path the file was read from (used in messages).
    public var path: String
    /// The entries, by key.
    public var entries: [String: Entry]

    /// Parses the text of a config file.
    ///
    /// - Parameters:
    ///   - text: the contents of the file.
    ///   - path: where it came from, for messages.
    ///   - allowedKeys: the keys the file may contain.
    public static func parse(
        _ text: String,
        path: String,
        allowedKeys: Set<String> = DaemonSettings.configFileKeys
    ) throws(ConfigurationError) -> ConfigFile {
        var entries: [String: Entry] = [:]
        var body = Substring(text)
        if body.first == "\u{FEFF}" { body = body.dropFirst() }
        // "\r\n" is a single Character in Swift, so both endings are listed.
        let lines = body.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (index, rawLine) in lines.enumerated() {
            let lineNumber = index + 1
            let line = ConfigSyntax.trimmed(rawLine)
            if line.isEmpty || line.hasPrefix("#") { continue }
            func fail(_ reason: String) -> ConfigurationError {
                ConfigurationError("\(path):\(lineNumber): \(reason)")
            }
            guard let equals = line.firstIndex(of: "=") else {
                // The line itself is not echoed: it might be a pasted secret.
                throw fail("expected \"key = value\"")
            }
            let key = ConfigSyntax.trimmed(line[..<equals])
            let rawValue = ConfigSyntax.trimmed(line[line.index(after: equals)...])
            if key.isEmpty {
                throw fail("missing key before \"=\"")
            }
            if key == "token" {
                throw fail(
                    "a token is not allowed in a config file; put it in the environment variable "
                        + "\(DaemonSettings.tokenEnvironmentVariable) or in a token file "
                        + "(token-file, --token-file, TRACKQ_TOKEN_FILE)")
            }
            guard allowedKeys.contains(key) else {
                throw fail("unknown key \(ConfigSyntax.describeKey(key))")
            }
            if let earlier = entries[key] {
                throw fail("duplicate key \"\(key)\" (first set on line \(earlier.line))")
            }
            let value: String
            do {
                value = try unquote(rawValue)
            } catch {
                throw fail("\(error.message) in the value of \"\(key)\"")
            }
            entries[key] = Entry(value: value, line: lineNumber)
        }
        return ConfigFile(path: path, entries: entries)
    }

    /// Removes the surrounding double quotes of a value and resolves `\"`
    /// and `\\`; returns an unquoted value unchanged.
    package static func unquote(_ raw: String) throws(ConfigurationError) -> String {
        guard raw.hasPrefix("\"") else { return raw }
        var result = ""
        var iterator = raw.dropFirst().makeIterator()
        while let character = iterator.next() {
            switch character {
            case "\\":
                switch iterator.next() {
                case "\""?: result.append("\"")
                case "\\"?: result.append("\\")
                case nil: throw ConfigurationError("unterminated quoted string")
                case let other?:
                    throw ConfigurationError(
                        "unsupported escape \\\(other) (only \\\" and \\\\ are allowed)")
                }
            case "\"":
                if iterator.next() != nil {
                    throw ConfigurationError("unexpected text after the closing quote")
                }
                return result
            default:
                result.append(character)
            }
        }
        throw ConfigurationError("unterminated quoted string")
    }
}

/// Small lexical helpers shared by the config parsers.
package enum ConfigSyntax {
    /// `text` without leading and trailing spaces, tabs and line breaks.
    package static func trimmed(_ text: Substring) -> String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = text.firstIndex(where: { !isBlank($0) }),
            let last = text.lastIndex(where: { !isBlank($0) })
        else { return "" }
        return String(text[first...last])
    }

    /// A key for a message: quoted when it looks like a key, otherwise not
    /// echoed (it might be a pasted secret).
    package static func describeKey(_ key: String) -> String {
        let looksLikeKey =
            key.count <= 40
            && key.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                    || $0 == "-" || $0 == "_" || $0 == "."
            }
        return looksLikeKey ? "\"\(key)\"" : "(not shown)"
    }

    /// A decimal number `digits[.digits]` as `mantissa / 10^scale`, with
    /// trailing fractional zeros removed.
    package struct Decimal: Equatable {
        package var mantissa: Int128
        package var scale: Int
    }

    /// The outcome of reading a decimal number.
    package enum DecimalResult: Equatable {
        case number(Decimal)
        case malformed
        case overflow
    }

    /// Reads a whole string as a non-negative decimal number: one or more
    /// ASCII digits, optionally followed by `.` and one or more digits.
    package static func decimal(_ text: Substring) -> DecimalResult {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = parts[0]
        let fraction = parts.count > 1 ? parts[1] : ""
        guard !whole.isEmpty, whole.allSatisfy(\.isASCIIDigit) else { return .malformed }
        if parts.count > 1 {
            guard !fraction.isEmpty, fraction.allSatisfy(\.isASCIIDigit) else { return .malformed }
        }
        var significantFraction = Substring(fraction)
        while significantFraction.last == "0" { significantFraction = significantFraction.dropLast() }
        var mantissa: Int128 = 0
        for character in whole + significantFraction {
            guard let digit = character.wholeNumberValue else { return .malformed }
            let (times10, overflow1) = mantissa.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = times10.addingReportingOverflow(Int128(digit))
            if overflow1 || overflow2 { return .overflow }
            mantissa = next
        }
        return .number(Decimal(mantissa: mantissa, scale: significantFraction.count))
    }

    /// The outcome of multiplying a decimal by an integer unit.
    package enum ScaledResult: Equatable {
        case value(Int128)
        case overflow
        case notWhole
    }

    /// `decimal × unit`, which must be a whole number.
    package static func scale(_ decimal: Decimal, by unit: Int128) -> ScaledResult {
        let (numerator, overflow) = decimal.mantissa.multipliedReportingOverflow(by: unit)
        if overflow { return .overflow }
        if numerator == 0 { return .value(0) }
        var divisor: Int128 = 1
        for _ in 0..<decimal.scale {
            let (next, overflow) = divisor.multipliedReportingOverflow(by: 10)
            // 10^scale beyond Int128 is larger than any numerator.
            if overflow { return .notWhole }
            divisor = next
        }
        guard numerator % divisor == 0 else { return .notWhole }
        return .value(numerator / divisor)
    }
}

extension Character {
    /// Whether this is one of the ASCII digits 0-9.
    fileprivate var isASCIIDigit: Bool {
        guard let ascii = asciiValue else { return false }
        return ascii >= 0x30 && ascii <= 0x39
    }
}
