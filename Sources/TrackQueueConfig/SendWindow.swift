import Foundation

/// When delivery may send, in the host's local time: `--send-window 22:00-06:00,12:00-13:00`.
/// Outside every range events are kept, and `trackq status` says the sender waits for the
/// window. A range may cross midnight; `00:00-24:00` is the whole day.
public struct SendWindow: Sendable, Equatable, CustomStringConvertible {
    /// Seconds since local midnight: `start` included, `end` excluded.
    public struct Range: Sendable, Equatable {
        public var start: Int
        public var end: Int
    }

    public var ranges: [Range]

    public static let secondsPerDay = 86_400

    /// Parses `HH:MM-HH:MM[,HH:MM-HH:MM…]`; the reason when it cannot.
    package static func parse(_ text: String) -> Result<SendWindow, ParseError> {
        var ranges: [Range] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.trimmingCharacters(in: .whitespaces).split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 2, let start = minute(bounds[0]), let end = minute(bounds[1]) else {
                return .failure(ParseError(reason: "each range is HH:MM-HH:MM in local time, e.g. 22:00-06:00"))
            }
            guard start != end else { return .failure(ParseError(reason: "a range from \(bounds[0]) to itself is empty")) }
            guard start < secondsPerDay else { return .failure(ParseError(reason: "a range starts at 24:00")) }
            ranges.append(Range(start: start, end: end))
        }
        return .success(SendWindow(ranges: ranges))
    }

    public struct ParseError: Error, Sendable, Equatable {
        public var reason: String
    }

    /// `HH:MM`, 00:00 to 24:00, as seconds since midnight.
    private static func minute(_ text: Substring) -> Int? {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
            let hours = Int(parts[0]), let minutes = Int(parts[1]), minutes < 60,
            hours < 24 || (hours == 24 && minutes == 0)
        else { return nil }
        return (hours * 60 + minutes) * 60
    }

    /// Whether sending is allowed `secondOfDay` seconds after local midnight.
    public func isOpen(secondOfDay: Int) -> Bool {
        secondsUntilOpen(secondOfDay: secondOfDay) == 0
    }

    /// Seconds until the window next opens; 0 when it is open.
    public func secondsUntilOpen(secondOfDay: Int) -> Int {
        let now = ((secondOfDay % Self.secondsPerDay) + Self.secondsPerDay) % Self.secondsPerDay
        var best = Self.secondsPerDay
        for range in ranges {
            let crosses = range.end < range.start
            let open = crosses ? (now >= range.start || now < range.end) : (now >= range.start && now < range.end)
            if open { return 0 }
            best = min(best, (range.start - now + Self.secondsPerDay) % Self.secondsPerDay)
        }
        return best
    }

    /// As written: `22:00-06:00,12:00-13:00`.
    public var description: String {
        func clock(_ seconds: Int) -> String {
            let minutes = seconds / 60
            let (h, m) = (minutes / 60, minutes % 60)
            return (h < 10 ? "0\(h)" : "\(h)") + ":" + (m < 10 ? "0\(m)" : "\(m)")
        }
        return ranges.map { "\(clock($0.start))-\(clock($0.end))" }.joined(separator: ",")
    }
}
