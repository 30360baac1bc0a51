import Foundation
import Testing

@testable import TrackQueue

@Suite struct RFC3339Tests {
    func valid(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { RFC3339.isValidDateTime($0) }
    }

    @Test(arguments: [
        "2026-11-27T05:00:00Z", "2026-11-27T05:00:00.123+01:00", "2026-11-27t05:00:00z",
        "2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-12-31T23:59:59.999999999-23:59",
        "2026-06-30T23:59:60Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.9+00:00", "2026-01-31T00:00:00.0Z",
        "2026-04-30T12:30:45-05:30",
    ])
    func validDateTimes(_ text: String) {
        #expect(valid(text))
    }

    @Test(arguments: [
        "", "2026-11-27", "2026-11-27T05:00:00", "2026-11-27T05:00Z", "2026-11-27 05:00:00Z",
        "2025-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z", "2026-11-00T00:00:00Z", "2026-11-32T00:00:00Z", "2026-11-27T24:00:00Z",
        "2026-11-27T05:60:00Z", "2026-11-27T05:00:61Z", "2026-11-27T05:00:00+0100", "2026-11-27T05:00:00+01",
        "2026-11-27T05:00:00+24:00", "2026-11-27T05:00:00+01:60", "2026-11-27T05:00:00.Z", "2026-11-27T05:00:00.",
        "2026-11-27T05:00:00,5Z", "2026-11-27T05:00:00ZZ", "2026-11-27T05:00:00Z ", " 2026-11-27T05:00:00Z",
        "26-11-27T05:00:00Z", "2026/11/27T05:00:00Z", "2026-1-27T05:00:00Z", "2026-11-27T5:00:00Z",
        "+2026-11-27T05:00:00Z", "2026-11-27T05:00:00+01:00:00", "2026-11-27T05:00:00UTC", "2026-11-27X05:00:00Z",
        "２０２６-11-27T05:00:00Z", "2026-11-27T05:00:00.12a3Z",
    ])
    func invalidDateTimes(_ text: String) {
        #expect(!valid(text))
    }

    @Test func formatsKnownInstants() {
        #expect(RFC3339.format(millis: 0) == "1970-01-01T00:00:00.000Z")
        #expect(RFC3339.format(millis: 951_782_400_000) == "2000-02-29T00:00:00.000Z")
        #expect(RFC3339.format(millis: 1_764_219_600_123) == "2025-11-27T05:00:00.123Z")
        #expect(RFC3339.format(millis: 253_402_300_799_999) == "9999-12-31T23:59:59.999Z")
        #expect(RFC3339.format(millis: 1_709_251_199_999) == "2024-02-29T23:59:59.999Z")
        #expect(RFC3339.format(millis: -1) == "1969-12-31T23:59:59.999Z")
    }

    @Test func appendsWithoutQuotes() {
        var buffer = Array("x".utf8)
        RFC3339.appendTimestamp(millis: 1_764_219_600_123, to: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == "x2025-11-27T05:00:00.123Z")
    }

    @Test func clampsOutOfRange() {
        #expect(RFC3339.format(millis: .max) == "9999-12-31T23:59:59.999Z")
        #expect(RFC3339.format(millis: .min) == "0000-01-01T00:00:00.000Z")
    }

    @Test func formattedTextIsValid() {
        for millis: Int64 in [0, 951_782_400_000, 1_764_219_600_123, 253_402_300_799_999] {
            #expect(valid(RFC3339.format(millis: millis)))
        }
    }

    @Test func matchesFoundationForRandomInstants() throws {
        var rng = SystemRandomNumberGenerator()
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
        for _ in 0..<10_000 {
            let millis = Int64.random(in: 0...253_402_300_799_999, using: &rng)
            let ours = RFC3339.format(millis: millis)
            // Parse our text with Foundation and compare the instant (exact to the millisecond) ...
            let parsed = try style.parse(ours)
            let back = Int64((parsed.timeIntervalSince1970 * 1000).rounded())
            #expect(back == millis, "\(millis) -> \(ours)")
            // ... and compare with Foundation's own text.
            // Foundation truncates the fraction and `millis / 1000` is not exact in
            // binary floating point, so aim at the middle of the millisecond.
            let date = Date(timeIntervalSince1970: (TimeInterval(millis) + 0.5) / 1000)
            let theirs = date.formatted(style)
            #expect(theirs == ours, "\(millis): \(theirs) vs \(ours)")
        }
    }
}
