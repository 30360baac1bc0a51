import TrackQueueSupport

/// Parses the `Retry-After` response header (RFC 9110 §10.2.3), by hand.
///
/// Accepts delta-seconds (`"120"`) and the three HTTP-date forms: IMF-fixdate
/// (`"Sun, 06 Nov 1994 08:49:37 GMT"`), RFC 850 (`"Sunday, 06-Nov-94 08:49:37 GMT"`) and
/// asctime (`"Sun Nov  6 08:49:37 1994"`).
///
/// ```swift
/// RetryAfter.parse("120", nowMillis: 0)                              // .seconds(120)
/// RetryAfter.parse("Thu, 01 Jan 1970 00:01:00 GMT", nowMillis: 0)    // .seconds(60)
/// RetryAfter.parse("soon", nowMillis: 0)                             // nil
/// ```
public enum RetryAfter {
    /// The longest `Retry-After` honoured: one hour. A longer wait would let one answer stop
    /// delivery for as long as the API likes.
    public static let maximum = Duration.seconds(3600)

    /// The wait a `Retry-After` header is honoured with: at most ``maximum``. A value that
    /// is longer, absurd (20 digits, a date in year 9999) or unparseable counts as
    /// ``maximum``; `clamped` says it was not taken as sent.
    public static func honoured(_ value: String, nowMillis: Int64) -> (wait: Duration, clamped: Bool) {
        guard let wait = parse(value, nowMillis: nowMillis), wait <= maximum else { return (maximum, true) }
        return (wait, false)
    }

    /// Parses a `Retry-After` value into a wait from now.
    ///
    /// - Parameters:
    ///   - value: The header value; surrounding spaces and tabs are ignored.
    ///   - nowMillis: The wall clock now, in Unix milliseconds; HTTP dates are measured from it.
    /// - Returns: The wait; `.zero` for a date in the past; nil when the value is not valid.
    ///   Delta-seconds too large for `Int64` saturate at `Int64.max` seconds.
    public static func parse(_ value: String, nowMillis: Int64) -> Duration? {
        let text = Substring(value).trimmingHeaderWhitespace()
        guard !text.isEmpty else { return nil }
        if text.utf8.allSatisfy(isDigit) {
            return .seconds(Int64(text) ?? Int64.max)
        }
        guard let date = parseHTTPDate(text, nowMillis: nowMillis) else { return nil }
        let (dateMillis, overflow) = date.multipliedReportingOverflow(by: 1000)
        guard !overflow else { return nil }
        let (delta, overflow2) = dateMillis.subtractingReportingOverflow(nowMillis)
        if overflow2 { return dateMillis > 0 ? .milliseconds(Int64.max) : .zero }
        return delta > 0 ? .milliseconds(delta) : .zero
    }

    // MARK: - HTTP-date

    private static let shortDays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    private static let longDays = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    /// Seconds since the Unix epoch of an HTTP-date in any of its three forms, or nil.
    package static func parseHTTPDate(_ text: Substring, nowMillis: Int64) -> Int64? {
        let words = text.split(separator: " ", omittingEmptySubsequences: true)
        if let comma = text.firstIndex(of: ",") {
            let day = text[..<comma].lowercased()
            let rest = words.dropFirst()
            if shortDays.contains(day) {
                return imfFixdate(Array(rest))
            }
            if longDays.contains(day) {
                return rfc850(Array(rest), nowMillis: nowMillis)
            }
            return nil
        }
        return asctime(words)
    }

    /// `06 Nov 1994 08:49:37 GMT` (after `Sun,`).
    private static func imfFixdate(_ words: [Substring]) -> Int64? {
        guard words.count == 5, words[4] == "GMT",
            words[0].utf8.count == 2, let day = number(words[0]),
            let month = month(words[1]),
            words[2].utf8.count == 4, let year = number(words[2]),
            let time = timeOfDay(words[3])
        else { return nil }
        return epochSeconds(year: year, month: month, day: day, time: time)
    }

    /// `06-Nov-94 08:49:37 GMT` (after `Sunday,`); a two-digit year more than 50 years ahead
    /// of now is taken to be in the past century (RFC 9110 §5.6.7).
    private static func rfc850(_ words: [Substring], nowMillis: Int64) -> Int64? {
        guard words.count == 3, words[2] == "GMT" else { return nil }
        let parts = words[0].split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3,
            parts[0].utf8.count == 2, let day = number(parts[0]),
            let month = month(parts[1]),
            parts[2].utf8.count == 2, let twoDigits = number(parts[2]),
            let time = timeOfDay(words[1])
        else { return nil }
        let currentYear = CivilCalendar.date(days: CivilCalendar.days(unixSeconds: nowMillis / 1000)).year
        var year = currentYear - currentYear % 100 + twoDigits
        if year > currentYear + 50 { year -= 100 }
        return epochSeconds(year: year, month: month, day: day, time: time)
    }

    /// `Sun Nov  6 08:49:37 1994`.
    private static func asctime(_ words: [Substring]) -> Int64? {
        guard words.count == 5, shortDays.contains(words[0].lowercased()),
            let month = month(words[1]),
            (1...2).contains(words[2].utf8.count), let day = number(words[2]),
            let time = timeOfDay(words[3]),
            words[4].utf8.count == 4, let year = number(words[4])
        else { return nil }
        return epochSeconds(year: year, month: month, day: day, time: time)
    }

    /// `HH:MM:SS` as seconds into the day (a leap second 60 is allowed).
    private static func timeOfDay(_ word: Substring) -> Int64? {
        let parts = word.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ $0.utf8.count == 2 }),
            let hour = number(parts[0]), let minute = number(parts[1]), let second = number(parts[2]),
            hour < 24, minute < 60, second <= 60
        else { return nil }
        return hour * 3600 + minute * 60 + second
    }

    private static func month(_ word: Substring) -> Int64? {
        guard let index = months.firstIndex(of: word.lowercased()) else { return nil }
        return Int64(index + 1)
    }

    private static func number(_ digits: Substring) -> Int64? {
        guard !digits.isEmpty, digits.utf8.allSatisfy(isDigit) else { return nil }
        return Int64(digits)
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    /// Seconds since the epoch, or nil when the day does not exist in that month.
    private static func epochSeconds(year: Int64, month: Int64, day: Int64, time: Int64) -> Int64? {
        guard day >= 1, day <= CivilCalendar.daysIn(month: month, year: year) else { return nil }
        return CivilCalendar.days(year: year, month: month, day: day) * 86_400 + time
    }
}

extension Substring {
    /// This text without leading and trailing spaces and tabs (HTTP optional whitespace).
    fileprivate func trimmingHeaderWhitespace() -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }),
            let last = lastIndex(where: { !isSpace($0) })
        else { return "" }
        return self[first...last]
    }
}
