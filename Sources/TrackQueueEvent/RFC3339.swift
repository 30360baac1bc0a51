import TrackQueueSupport

/// Hand-written RFC 3339 date-time validation and formatting over bytes.
public enum RFC3339 {
    /// The earliest instant `appendTimestamp` formats: 0000-01-01T00:00:00.000Z.
    package static let minMillis: Int64 = -62_167_219_200_000
    /// The latest instant `appendTimestamp` formats: 9999-12-31T23:59:59.999Z.
    package static let maxMillis: Int64 = 253_402_300_799_999

    /// Whether `bytes` is exactly an RFC 3339 `date-time` with a time zone,
    /// e.g. `2026-11-27T05:00:00Z` or `2026-11-27T05:00:00.123+01:00`.
    ///
    /// Checks ranges: month 1–12, day within the month (leap years included),
    /// hour 0–23, minute 0–59, second 0–60; the fraction needs 1+ digits; the
    /// separator is `T`/`t`; the zone is `Z`/`z` or `±HH:MM` (HH ≤ 23, MM ≤ 59).
    public static func isValidDateTime(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let n = bytes.count
        guard n >= 20 else { return false }
        func digits(_ at: Int, _ count: Int) -> Int {
            var value = 0
            for k in at..<(at + count) {
                let d = bytes[k] &- UInt8(ascii: "0")
                guard d < 10 else { return -1 }
                value = value * 10 + Int(d)
            }
            return value
        }
        let year = digits(0, 4)
        let month = digits(5, 2)
        let day = digits(8, 2)
        let hour = digits(11, 2)
        let minute = digits(14, 2)
        let second = digits(17, 2)
        let separator = bytes[10]
        guard year >= 0,
            bytes[4] == UInt8(ascii: "-"), (1...12).contains(month),
            bytes[7] == UInt8(ascii: "-"), day >= 1, Int64(day) <= CivilCalendar.daysIn(month: Int64(month), year: Int64(year)),
            separator == UInt8(ascii: "T") || separator == UInt8(ascii: "t"),
            (0...23).contains(hour), bytes[13] == UInt8(ascii: ":"),
            (0...59).contains(minute), bytes[16] == UInt8(ascii: ":"),
            (0...60).contains(second)
        else { return false }

        var i = 19
        if bytes[i] == UInt8(ascii: ".") {
            i += 1
            let fractionStart = i
            while i < n, bytes[i] &- UInt8(ascii: "0") < 10 { i += 1 }
            guard i > fractionStart, i < n else { return false }
        }
        switch bytes[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            return i + 1 == n
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard n - i == 6, bytes[i + 3] == UInt8(ascii: ":") else { return false }
            let offsetHour = digits(i + 1, 2)
            let offsetMinute = digits(i + 4, 2)
            return (0...23).contains(offsetHour) && (0...59).contains(offsetMinute)
        default:
            return false
        }
    }

    /// Appends `millis` (milliseconds since the Unix epoch) as a UTC RFC 3339
    /// timestamp with milliseconds, e.g. `2026-11-27T05:00:00.123Z` (no quotes).
    ///
    /// Always 24 bytes; instants outside years 0000–9999 are clamped to that range.
    public static func appendTimestamp(millis: Int64, to buffer: inout [UInt8]) {
        let clamped = min(max(millis, minMillis), maxMillis)
        let msPerDay: Int64 = 86_400_000
        var days = clamped / msPerDay
        var msOfDay = clamped % msPerDay
        if msOfDay < 0 {
            msOfDay += msPerDay
            days -= 1
        }
        let date = CivilCalendar.date(days: days)
        let (year, month, day) = (Int(date.year), Int(date.month), Int(date.day))
        let ms = Int(msOfDay)
        let hour = ms / 3_600_000
        let minute = ms / 60_000 % 60
        let second = ms / 1000 % 60
        let fraction = ms % 1000

        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { out in
            func put(_ value: Int, _ width: Int, at offset: Int) {
                var v = value
                var k = offset + width - 1
                while k >= offset {
                    out[k] = UInt8(truncatingIfNeeded: v % 10) + UInt8(ascii: "0")
                    v /= 10
                    k -= 1
                }
            }
            put(year, 4, at: 0)
            out[4] = UInt8(ascii: "-")
            put(month, 2, at: 5)
            out[7] = UInt8(ascii: "-")
            put(day, 2, at: 8)
            out[10] = UInt8(ascii: "T")
            put(hour, 2, at: 11)
            out[13] = UInt8(ascii: ":")
            put(minute, 2, at: 14)
            out[16] = UInt8(ascii: ":")
            put(second, 2, at: 17)
            out[19] = UInt8(ascii: ".")
            put(fraction, 3, at: 20)
            out[23] = UInt8(ascii: "Z")
            buffer.append(contentsOf: out)
        }
    }

    /// `millis` formatted like `appendTimestamp`, e.g. `2026-11-27T05:00:00.123Z`.
    public static func format(millis: Int64) -> String {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(24)
        appendTimestamp(millis: millis, to: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
