import Testing

@testable import TrackQueue

@Suite struct RetryAfterTests {
    /// 1994-11-06 08:49:37 UTC in Unix milliseconds.
    let rfcExample: Int64 = 784_111_777_000

    @Test func deltaSeconds() {
        #expect(RetryAfter.parse("120", nowMillis: 0) == .seconds(120))
        #expect(RetryAfter.parse("0", nowMillis: 0) == .zero)
        #expect(RetryAfter.parse("  5\t", nowMillis: 0) == .seconds(5))
        #expect(RetryAfter.parse("99999999999999999999999", nowMillis: 0) == .seconds(Int64.max))
    }

    @Test func imfFixdate() {
        let now = rfcExample - 90_000
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:49:37 GMT", nowMillis: now) == .seconds(90))
        #expect(RetryAfter.parse("Thu, 01 Jan 1970 00:01:00 GMT", nowMillis: 0) == .seconds(60))
        #expect(RetryAfter.parse("Thu, 01 Jan 1970 00:01:00 GMT", nowMillis: 59_500) == .milliseconds(500))
    }

    @Test func rfc850() {
        let now = rfcExample - 1_000
        #expect(RetryAfter.parse("Sunday, 06-Nov-94 08:49:37 GMT", nowMillis: now) == .seconds(1))
        // Two-digit years near now land in this century.
        let in2025: Int64 = 1_750_000_000_000  // 2025-06-15
        let expected = RetryAfter.parse("Mon, 16 Jun 2025 00:00:00 GMT", nowMillis: in2025)
        #expect(expected != nil)
        #expect(RetryAfter.parse("Monday, 16-Jun-25 00:00:00 GMT", nowMillis: in2025) == expected)
    }

    @Test func asctime() {
        let now = rfcExample - 2_000
        #expect(RetryAfter.parse("Sun Nov  6 08:49:37 1994", nowMillis: now) == .seconds(2))
        #expect(RetryAfter.parse("Sun Nov 16 08:49:37 1994", nowMillis: now) == .seconds(10 * 86_400 + 2))
    }

    @Test func allThreeFormsAgree() {
        let now: Int64 = 700_000_000_000
        let imf = RetryAfter.parse("Sun, 06 Nov 1994 08:49:37 GMT", nowMillis: now)
        #expect(imf == .milliseconds(rfcExample - now))
        #expect(RetryAfter.parse("Sunday, 06-Nov-94 08:49:37 GMT", nowMillis: now) == imf)
        #expect(RetryAfter.parse("Sun Nov  6 08:49:37 1994", nowMillis: now) == imf)
    }

    @Test func leapDayAndYearEnd() {
        let now: Int64 = 0
        let leap = RetryAfter.parse("Thu, 29 Feb 2024 00:00:00 GMT", nowMillis: now)
        #expect(leap == .seconds(1_709_164_800))
        #expect(RetryAfter.parse("Fri, 31 Dec 1999 23:59:59 GMT", nowMillis: now) == .seconds(946_684_799))
        #expect(RetryAfter.parse("Thu, 29 Feb 2023 00:00:00 GMT", nowMillis: now) == nil)
    }

    @Test func pastDateGivesZero() {
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:49:37 GMT", nowMillis: 1_750_000_000_000) == .zero)
        #expect(RetryAfter.parse("Sun Nov  6 08:49:37 1994", nowMillis: rfcExample) == .zero)
    }

    @Test(arguments: [
        "", "   ", "soon", "-5", "1.5", "+3", "12s", "0x10",
        "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 08:49:37", "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 94 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 31 Nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-1994 08:49:37 GMT", "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sun Nov  6 08:49:37", "Sun Nov  6 8:49:37 1994", "Sun Nov x 08:49:37 1994",
    ])
    func garbageGivesNil(value: String) {
        #expect(RetryAfter.parse(value, nowMillis: 0) == nil)
    }

    /// The API cannot stop delivery for longer than an hour, nor make the daemon trap:
    /// longer, absurd and unparseable values count as one hour.
    @Test(arguments: [
        ("99999999999999999999", RetryAfter.maximum, true),
        ("86400", RetryAfter.maximum, true),
        ("3601", RetryAfter.maximum, true),
        ("3600", Duration.seconds(3600), false),
        ("120", Duration.seconds(120), false),
        ("0", Duration.zero, false),
        ("soon", RetryAfter.maximum, true),
        ("-5", RetryAfter.maximum, true),
        ("Fri, 31 Dec 9999 23:59:59 GMT", RetryAfter.maximum, true),
        ("Thu, 01 Jan 1970 00:01:00 GMT", Duration.seconds(60), false),
    ])
    func honouredUpToAnHour(value: String, wait: Duration, clamped: Bool) {
        let honoured = RetryAfter.honoured(value, nowMillis: 0)
        #expect(honoured.wait == wait)
        #expect(honoured.clamped == clamped)
    }

    @Test func millisecondsOfAnyDurationSaturateInsteadOfTrapping() {
        #expect(Duration.seconds(Int64.max).milliseconds == .max)
        #expect(Duration.seconds(Int64.min).milliseconds == .min)
        #expect(Duration.milliseconds(1500).milliseconds == 1500)
        #expect(Int64.max.saturatingAdd(1) == .max)
        #expect(Int64.min.saturatingAdd(-1) == .min)
        #expect(Int64(5).saturatingAdd(-7) == -2)
    }
}
