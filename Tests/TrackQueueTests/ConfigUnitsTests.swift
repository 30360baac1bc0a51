import Testing

@testable import TrackQueue

@Suite("Durations")
struct DurationParserTests {
    @Test(
        "valid durations",
        arguments: [
            ("250ms", Duration.milliseconds(250)),
            ("0ms", .zero),
            ("0s", .zero),
            ("30s", .seconds(30)),
            ("1.5s", .milliseconds(1500)),
            ("0.25s", .milliseconds(250)),
            ("1.000000001s", .nanoseconds(1_000_000_001)),
            ("0.5ms", .microseconds(500)),
            ("5m", .seconds(300)),
            ("2h", .seconds(7200)),
            ("30d", .seconds(30 * 86_400)),
            ("1.5d", .seconds(129_600)),
            ("007s", .seconds(7)),
            ("2.50m", .seconds(150)),
            ("100000d", .seconds(8_640_000_000)),
        ])
    func valid(_ text: String, _ expected: Duration) throws {
        #expect(try DurationParser.parse(text) == expected)
    }

    @Test(
        "invalid durations",
        arguments: [
            "", "10", "s", "ms", "-5s", "+5s", "5 s", " 5s", "5s ", "5sec", "5S", "5MS", "1.s", ".5s", "1..5s",
            "1e3s", "5w", "5ns", "5us", "1,5s", "0x10s", "five seconds", "5s5m", "٥s",
        ])
    func invalid(_ text: String) {
        #expect(throws: ConfigurationError("expected a duration like 250ms, 30s, 5m, 2h, 30d")) {
            try DurationParser.parse(text)
        }
    }

    @Test(
        "overflow and precision",
        arguments: [
            ("9223372037s", "duration is too long"),  // just over Int64.max nanoseconds
            ("106752d", "duration is too long"),
            ("9223372036854775807ms", "duration is too long"),
            ("99999999999999999999999999999999999999999999d", "duration is too long"),
            ("1.0000000001s", "duration must be a whole number of nanoseconds"),
            ("0.0000001ms", "duration must be a whole number of nanoseconds"),
        ])
    func overflow(_ text: String, _ message: String) {
        #expect(throws: ConfigurationError(message)) { try DurationParser.parse(text) }
    }

    @Test("largest duration")
    func largest() throws {
        #expect(try DurationParser.parse("9223372036s") == .seconds(9_223_372_036))
        #expect(try DurationParser.parse("9223372036.854775807s") == .nanoseconds(Int64.max))
        #expect(try DurationParser.parse("1.000000000000000000000000000000s") == .seconds(1))
    }

    @Test(
        "format picks the largest whole unit",
        arguments: [
            (Duration.zero, "0s"),
            (.milliseconds(100), "100ms"),
            (.milliseconds(250), "250ms"),
            (.milliseconds(1500), "1500ms"),
            (.seconds(1), "1s"),
            (.seconds(30), "30s"),
            (.seconds(90), "90s"),
            (.seconds(300), "5m"),
            (.seconds(7200), "2h"),
            (.seconds(30 * 86_400), "30d"),
            (.seconds(36 * 3600), "36h"),
            (.microseconds(500), "0.5ms"),
            (.nanoseconds(1), "0.000001ms"),
            (.nanoseconds(1_000_001), "1.000001ms"),
            (.milliseconds(-250), "-250ms"),
        ])
    func format(_ duration: Duration, _ expected: String) {
        #expect(DurationParser.format(duration) == expected)
    }

    @Test(
        "format round-trips through parse",
        arguments: [
            "250ms", "1s", "5m", "2h", "30d", "0.5ms", "1.000001ms", "1500ms", "0s",
        ])
    func roundTrip(_ text: String) throws {
        let duration = try DurationParser.parse(text)
        #expect(try DurationParser.parse(DurationParser.format(duration)) == duration)
    }
}

@Suite("Byte sizes")
struct ByteSizeTests {
    @Test(
        "valid sizes",
        arguments: [
            ("0", 0),
            ("65536", 65536),
            ("007", 7),
            ("10B", 10),
            ("10b", 10),
            ("64KiB", 65536),
            ("64kib", 65536),
            ("64KIB", 65536),
            ("64 KiB", 65536),
            ("2MB", 2_000_000),
            ("2mb", 2_000_000),
            ("2 MB", 2_000_000),
            ("1KB", 1000),
            ("1kb", 1000),
            ("3MiB", 3 << 20),
            ("1GiB", 1 << 30),
            ("1GB", 1_000_000_000),
            ("1.5MiB", 1_572_864),
            ("1.5KB", 1500),
            ("0.5KiB", 512),
            ("2.0", 2),
            ("8589934591GiB", 8_589_934_591 << 30),
            ("9223372036854775807", Int.max),
        ])
    func valid(_ text: String, _ expected: Int) throws {
        #expect(try ByteSize.parse(text) == expected)
    }

    @Test(
        "invalid sizes",
        arguments: [
            "", " ", "KiB", "-1", "+1", "1 ", " 1", "1  KiB", "1KiB ", "1K", "1k", "1M", "1Ki", "1TB", "1TiB",
            "1 B B", "1.", ".5KiB", "1,5MiB", "0x10", "1e3", "abc", "1iB", "٣",
        ])
    func invalid(_ text: String) {
        #expect(throws: ConfigurationError("expected a size like 65536, 64KiB, 2MB, 1GiB")) {
            try ByteSize.parse(text)
        }
    }

    @Test(
        "overflow and fractions",
        arguments: [
            ("9223372036854775808", "size is too large"),
            ("8589934592GiB", "size is too large"),  // 2^33 GiB = 2^63 bytes
            ("9223372036854775.808KB", "size is too large"),
            ("99999999999999999999999999999999999999999999", "size is too large"),
            ("1.1B", "size must come to a whole number of bytes"),
            ("1.0001KiB", "size must come to a whole number of bytes"),
            ("0.3B", "size must come to a whole number of bytes"),
        ])
    func overflow(_ text: String, _ message: String) {
        #expect(throws: ConfigurationError(message)) { try ByteSize.parse(text) }
    }

    @Test("format")
    func format() {
        #expect(ByteSize.format(65536) == "64KiB")
        #expect(ByteSize.format(1 << 30) == "1GiB")
        #expect(ByteSize.format(2_000_000) == "2000000")
        #expect(ByteSize.format(0) == "0")
    }
}
