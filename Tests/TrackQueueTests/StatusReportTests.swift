import Foundation
import Testing

@testable import TrackQueue

@Suite struct StatusReportTests {
    /// 2026-11-27T05:00:00.000Z
    static let now: Int64 = 1_795_755_600_000

    /// Every field set; healthy (sending, no dead letters, no alert).
    static let healthy = StatusReport(
        version: "0.1.0",
        daemon: .init(running: true, pid: 1234, startedAtMillis: now - 7_500_000),
        queue: .init(pending: 1234, pendingBytes: 1_258_291, oldestPendingAtMillis: now - 192_000),
        delivery: .init(
            state: .sending, lastAttemptAtMillis: now - 5_000, lastSuccessAtMillis: now - 12_000,
            lastStatus: 200, lastError: nil, nextAttemptAtMillis: nil, consecutiveFailures: 0),
        totals: .init(accepted: 10_000, delivered: 8_000, deadLettered: 3, rejected: 7),
        deadLetters: 0,
        alert: nil,
        database: .init(path: "/var/lib/trackq/queue.db", sizeBytes: 12_582_912),
        endpoint: "https://api.example.com/track"
    )

    static var backingOff: StatusReport {
        var report = healthy
        report.delivery = .init(
            state: .backoff, lastAttemptAtMillis: now - 5_000, lastSuccessAtMillis: now - 754_000,
            lastStatus: 503, lastError: "Service Unavailable", nextAttemptAtMillis: now + 12_000,
            consecutiveFailures: 4)
        return report
    }

    static var authAlert: StatusReport {
        var report = healthy
        report.delivery = .init(
            state: .alert, lastAttemptAtMillis: now - 5_000, lastSuccessAtMillis: now - 3_600_000,
            lastStatus: 401, lastError: "invalid token", nextAttemptAtMillis: now + 295_000,
            consecutiveFailures: 12)
        report.alert = .init(kind: .auth, status: 401, sinceMillis: now - 300_123, message: "invalid token")
        report.deadLetters = 3
        return report
    }

    static var notRunning: StatusReport {
        var report = healthy
        report.daemon = .init(running: false, pid: nil, startedAtMillis: nil)
        report.queue = .init(pending: 52_000, pendingBytes: 3_221_225_472, oldestPendingAtMillis: now - 273_600_000)
        report.delivery.state = .idle
        return report
    }

    /// Every optional nil; nothing ever happened.
    static let empty = StatusReport(
        version: "0.1.0",
        daemon: .init(running: false, pid: nil, startedAtMillis: nil),
        queue: .init(pending: 0, pendingBytes: 0, oldestPendingAtMillis: nil),
        delivery: .init(
            state: .idle, lastAttemptAtMillis: nil, lastSuccessAtMillis: nil, lastStatus: nil,
            lastError: nil, nextAttemptAtMillis: nil, consecutiveFailures: 0),
        totals: .init(accepted: 0, delivered: 0, deadLettered: 0, rejected: 0),
        deadLetters: 0,
        alert: nil,
        database: .init(path: "/tmp/q.db", sizeBytes: 0),
        endpoint: nil
    )

    func parse(_ json: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8), options: [])
        return try #require(object as? [String: Any])
    }

    // MARK: - JSON

    @Test func jsonFullReport() throws {
        var report = Self.authAlert
        report.delivery.state = .backoff
        let text = report.json()
        #expect(!text.hasSuffix("\n"))
        let top = try parse(text)
        #expect(
            Set(top.keys)
                == [
                    "version", "daemon", "queue", "delivery", "totals", "dead_letters", "alert", "database", "storage", "endpoint",
                ])
        #expect(top["version"] as? String == "0.1.0")
        #expect(top["endpoint"] as? String == "https://api.example.com/track")
        #expect(top["dead_letters"] as? Int == 3)

        let daemon = try #require(top["daemon"] as? [String: Any])
        #expect(Set(daemon.keys) == ["running", "pid", "started_at"])
        #expect(daemon["running"] as? Bool == true)
        #expect(daemon["pid"] as? Int == 1234)
        #expect(daemon["started_at"] as? String == "2026-11-27T02:55:00.000Z")

        let queue = try #require(top["queue"] as? [String: Any])
        #expect(Set(queue.keys) == ["pending", "pending_bytes", "oldest_pending_at"])
        #expect(queue["pending"] as? Int == 1234)
        #expect(queue["pending_bytes"] as? Int == 1_258_291)
        #expect(queue["oldest_pending_at"] as? String == "2026-11-27T04:56:48.000Z")

        let delivery = try #require(top["delivery"] as? [String: Any])
        #expect(
            Set(delivery.keys) == [
                "state", "last_attempt_at", "last_success_at", "last_status", "last_error", "next_attempt_at",
                "consecutive_failures",
            ])
        #expect(delivery["state"] as? String == "backoff")
        #expect(delivery["last_attempt_at"] as? String == "2026-11-27T04:59:55.000Z")
        #expect(delivery["last_success_at"] as? String == "2026-11-27T04:00:00.000Z")
        #expect(delivery["last_status"] as? Int == 401)
        #expect(delivery["last_error"] as? String == "invalid token")
        #expect(delivery["next_attempt_at"] as? String == "2026-11-27T05:04:55.000Z")
        #expect(delivery["consecutive_failures"] as? Int == 12)

        let totals = try #require(top["totals"] as? [String: Any])
        #expect(Set(totals.keys) == ["accepted", "delivered", "dead_lettered", "rejected", "dead_letters_dropped"])
        #expect(totals["accepted"] as? Int == 10_000)
        #expect(totals["delivered"] as? Int == 8_000)
        #expect(totals["dead_lettered"] as? Int == 3)
        #expect(totals["rejected"] as? Int == 7)

        let alert = try #require(top["alert"] as? [String: Any])
        #expect(Set(alert.keys) == ["kind", "status", "since", "message"])
        #expect(alert["kind"] as? String == "auth")
        #expect(alert["status"] as? Int == 401)
        #expect(alert["since"] as? String == "2026-11-27T04:54:59.877Z")
        #expect(alert["message"] as? String == "invalid token")

        let database = try #require(top["database"] as? [String: Any])
        #expect(Set(database.keys) == ["path", "size_bytes"])
        #expect(database["path"] as? String == "/var/lib/trackq/queue.db")
        #expect(database["size_bytes"] as? Int == 12_582_912)
    }

    @Test func jsonEveryOptionalNilIsNullNotMissing() throws {
        let top = try parse(Self.empty.json())
        #expect(top["endpoint"] == nil)  // an extension: left out when unknown
        #expect(top["alert"] is NSNull)
        #expect(top["dead_letters"] as? Int == 0)

        let daemon = try #require(top["daemon"] as? [String: Any])
        #expect(daemon["running"] as? Bool == false)
        #expect(daemon["pid"] is NSNull)
        #expect(daemon["started_at"] is NSNull)

        let queue = try #require(top["queue"] as? [String: Any])
        #expect(queue["pending"] as? Int == 0)
        #expect(queue["pending_bytes"] as? Int == 0)
        #expect(queue["oldest_pending_at"] is NSNull)

        let delivery = try #require(top["delivery"] as? [String: Any])
        #expect(delivery["state"] as? String == "idle")
        for key in ["last_attempt_at", "last_success_at", "last_status", "last_error", "next_attempt_at"] {
            #expect(delivery[key] is NSNull, "\(key)")
        }
        #expect(delivery["consecutive_failures"] as? Int == 0)

        let totals = try #require(top["totals"] as? [String: Any])
        for key in ["accepted", "delivered", "dead_lettered", "rejected", "dead_letters_dropped"] {
            #expect(totals[key] as? Int == 0, "\(key)")
        }
        let database = try #require(top["database"] as? [String: Any])
        #expect(database["path"] as? String == "/tmp/q.db")
        #expect(database["size_bytes"] as? Int == 0)
    }

    @Test func jsonExactTextOfEmptyReport() {
        #expect(
            Self.empty.json()
                == #"{"version":"0.1.0","daemon":{"running":false,"pid":null,"started_at":null},"#
                + #""queue":{"pending":0,"pending_bytes":0,"oldest_pending_at":null},"#
                + #""delivery":{"state":"idle","last_attempt_at":null,"last_success_at":null,"last_status":null,"#
                + #""last_error":null,"next_attempt_at":null,"consecutive_failures":0},"#
                + #""totals":{"accepted":0,"delivered":0,"dead_lettered":0,"rejected":0,"dead_letters_dropped":0},"#
                + #""dead_letters":0,"alert":null,"database":{"path":"/tmp/q.db","size_bytes":0},"#
                + #""storage":{"state":"ok","salvaged":0,"lost":0,"damaged_file":null,"damaged_events":0,"since":null,"#
                + #""reason":null}}"#)
    }

    @Test func storageRecoveredIsAWarningThatSaysWhatWasKeptAndHowToClearIt() throws {
        var report = Self.empty
        report.daemon = .init(running: true, pid: 1, startedAtMillis: 0)
        #expect(report.exitCode == 0)
        report.storage = .init(
            state: .recovered, salvaged: 2841, lost: 59, damagedFile: "/var/lib/trackq/queue.db.damaged-20261207T014734Z",
            damagedEvents: 100, sinceMillis: 1_000, reason: "SQLite error 11: database disk image is malformed\n\u{1B}[2J")
        #expect(report.exitCode == 1)
        let storage = try #require(try parse(report.json())["storage"] as? [String: Any])
        #expect(storage["state"] as? String == "recovered")
        #expect(storage["salvaged"] as? Int == 2841)
        #expect(storage["lost"] as? Int == 59)
        #expect(storage["damaged_file"] as? String == "/var/lib/trackq/queue.db.damaged-20261207T014734Z")
        let human = report.human(nowMillis: 61_000)
        #expect(human.hasPrefix("trackq 0.1.0: WARNING — storage recovered from damage"))
        #expect(
            human.contains(
                "STORAGE:      recovered from a damaged queue file (1m ago): SQLite error 11: database disk image is malformed "))
        #expect(human.contains("2,841 events salvaged, 100 kept as dead letters (reason damaged), 59 lost"))
        #expect(human.contains("archive or remove it to clear this"))
        #expect(!human.contains("\u{1B}"), "text from the file is printed on one line, without escapes")
        #expect(report.prometheus(nowMillis: 0).contains("trackq_storage_state{state=\"recovered\"} 1"))

        report.storage = .init(state: .damaged, salvaged: 0, lost: nil, damagedFile: "/q.db", reason: "cut short")
        #expect(try parse(report.json())["storage"].flatMap { $0 as? [String: Any] }?["lost"] is NSNull)
        #expect(report.human(nowMillis: 0).contains("restart the daemon"))
    }

    @Test func jsonTopLevelKeyOrder() throws {
        let text = Self.authAlert.json()
        let keys = [
            "\"version\":", "\"daemon\":", "\"queue\":", "\"delivery\":", "\"totals\":", "\"dead_letters\":",
            "\"alert\":", "\"database\":", "\"storage\":", "\"endpoint\":",
        ]
        var previous = text.startIndex
        for key in keys {
            let range = try #require(text.range(of: key, range: previous..<text.endIndex), "\(key) out of order")
            previous = range.upperBound
        }
        #expect(text.hasPrefix("{\"version\":"))
        // Nested orders, as the README documents them.
        for fragment in [
            #""daemon":{"running":true,"pid":1234,"started_at":"#,
            #""queue":{"pending":1234,"pending_bytes":1258291,"oldest_pending_at":"#,
            #""delivery":{"state":"alert","last_attempt_at":"#,
            #","last_status":401,"last_error":"invalid token","next_attempt_at":"#,
            #""totals":{"accepted":10000,"delivered":8000,"dead_lettered":3,"rejected":7,"dead_letters_dropped":0}"#,
            #""alert":{"kind":"auth","status":401,"since":"2026-11-27T04:54:59.877Z","message":"invalid token"}"#,
            #""database":{"path":"/var/lib/trackq/queue.db","size_bytes":12582912}"#,
        ] {
            #expect(text.contains(fragment), "\(fragment)")
        }
    }

    @Test func jsonEscaping() throws {
        var report = Self.backingOff
        let nasty = "bad \"quote\" \\ back\\slash\nnew line\ttab\u{01}ctl\u{1F}\u{7F} é ü 日本 🚀 \u{2028}"
        report.delivery.lastError = nasty
        report.database.path = "/tmp/weird \"dir\"/q.db"
        report.alert = .init(kind: .endpoint, status: 404, sinceMillis: Self.now, message: "line1\r\nline2")
        let text = report.json()
        #expect(text.contains(#"bad \"quote\" \\ back\\slash\nnew line\ttab\u0001ctl\u001f\u007f é ü 日本 🚀"#))
        #expect(text.contains(#""message":"line1\r\nline2""#))
        // No raw control characters anywhere in the output.
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 })
        let top = try parse(text)
        let delivery = try #require(top["delivery"] as? [String: Any])
        #expect(delivery["last_error"] as? String == nasty)
        let database = try #require(top["database"] as? [String: Any])
        #expect(database["path"] as? String == "/tmp/weird \"dir\"/q.db")
        let alert = try #require(top["alert"] as? [String: Any])
        #expect(alert["message"] as? String == "line1\r\nline2")
        #expect(alert["kind"] as? String == "endpoint")
    }

    // MARK: - Exit codes

    @Test func exitCodes() {
        #expect(Self.healthy.exitCode == 0)
        #expect(Self.backingOff.exitCode == 1)

        var deadLetters = Self.healthy
        deadLetters.deadLetters = 1
        #expect(deadLetters.exitCode == 1)

        #expect(Self.authAlert.exitCode == 2)
        var endpointAlert = Self.healthy
        endpointAlert.alert = .init(kind: .endpoint, status: 404, sinceMillis: Self.now, message: "not found")
        #expect(endpointAlert.exitCode == 2)

        #expect(Self.notRunning.exitCode == 2)
        var notRunningWithDeadLetters = Self.notRunning
        notRunningWithDeadLetters.deadLetters = 5
        #expect(notRunningWithDeadLetters.exitCode == 2)
        var notRunningBackingOff = Self.notRunning
        notRunningBackingOff.delivery.state = .backoff
        #expect(notRunningBackingOff.exitCode == 2)

        var idleEmpty = Self.empty
        idleEmpty.daemon.running = true
        #expect(idleEmpty.exitCode == 0)
    }

    // MARK: - Human

    func lines(_ text: String) -> [String] { text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }

    func value(_ label: String, in text: String) -> String? {
        lines(text).first { $0.hasPrefix(label + ":") }.map {
            String($0.dropFirst(label.count + 1)).trimmingCharacters(in: .whitespaces)
        }
    }

    @Test func humanHealthy() throws {
        let text = Self.healthy.human(nowMillis: Self.now)
        #expect(lines(text).first == "trackq 0.1.0: OK — delivering")
        #expect(!text.hasSuffix("\n"))
        #expect(value("daemon", in: text) == "running, pid 1234, up for 2h 5m")
        #expect(value("endpoint", in: text) == "https://api.example.com/track")
        #expect(value("queue", in: text) == "1,234 pending (1.2 MiB), oldest 3m 12s ago")
        #expect(value("delivery", in: text) == "sending")
        #expect(value("last success", in: text) == "12s ago")
        #expect(value("last error", in: text) == nil)
        #expect(value("next attempt", in: text) == nil)
        #expect(value("dead letters", in: text) == "none")
        #expect(value("totals", in: text) == "accepted 10,000 · delivered 8,000 · dead-lettered 3 · rejected 7")
        #expect(value("database", in: text) == "/var/lib/trackq/queue.db (12.0 MiB)")
        #expect(value("ALERT", in: text) == nil)
        #expect(lines(text).count <= 15)
    }

    @Test func humanColumnsAreAligned() throws {
        for report in [Self.healthy, Self.backingOff, Self.authAlert, Self.notRunning, Self.empty] {
            let body = lines(report.human(nowMillis: Self.now)).dropFirst()
            let columns = Set(
                body.map { line -> Int in
                    let colon = line.firstIndex(of: ":")!
                    let afterColon = line[line.index(after: colon)...]
                    return line.distance(from: line.startIndex, to: colon) + 1
                        + afterColon.prefix { $0 == " " }.count
                })
            #expect(columns == [StatusReport.labelWidth])
            #expect(body.count + 1 <= 15)
        }
    }

    @Test func humanBackingOff() {
        let text = Self.backingOff.human(nowMillis: Self.now)
        #expect(lines(text).first == "trackq 0.1.0: WARNING — backing off after 4 failures")
        #expect(value("delivery", in: text) == "backoff, 4 consecutive failures")
        #expect(value("last success", in: text) == "12m 34s ago")
        #expect(value("last error", in: text) == "HTTP 503: Service Unavailable (5s ago)")
        #expect(value("next attempt", in: text) == "in 12s")

        var past = Self.backingOff
        past.delivery.nextAttemptAtMillis = Self.now - 3_000
        #expect(value("next attempt", in: past.human(nowMillis: Self.now)) == "now")
        past.delivery.nextAttemptAtMillis = Self.now
        #expect(value("next attempt", in: past.human(nowMillis: Self.now)) == "now")
        past.delivery.nextAttemptAtMillis = Self.now + 300
        #expect(value("next attempt", in: past.human(nowMillis: Self.now)) == "in 1s")
    }

    @Test func humanConnectionErrorWithoutStatus() {
        var report = Self.backingOff
        report.delivery.lastStatus = nil
        report.delivery.lastError = "connection refused\n(errno 111)"
        #expect(
            value("last error", in: report.human(nowMillis: Self.now)) == "connection refused (errno 111) (5s ago)")
    }

    @Test func humanDeadLetters() {
        var report = Self.healthy
        report.deadLetters = 3
        let text = report.human(nowMillis: Self.now)
        #expect(lines(text).first == "trackq 0.1.0: WARNING — 3 dead letters")
        #expect(value("dead letters", in: text) == "3 — inspect: trackq dead list")
    }

    @Test func humanAuthAlert() {
        let text = Self.authAlert.human(nowMillis: Self.now)
        #expect(lines(text).first == "trackq 0.1.0: CRITICAL — auth alert (HTTP 401), 3 dead letters")
        #expect(value("ALERT", in: text) == "auth, HTTP 401 for 5m: invalid token")
        #expect(
            value("fix", in: text)
                == "check the token (/etc/trackq/token for the system service, else TRACKQ_TOKEN or the token file), then: systemctl restart trackq"
        )
        #expect(value("next attempt", in: text) == "in 4m 55s")
        #expect(value("last success", in: text) == "1h ago")
    }

    @Test func humanEndpointAlert() {
        var report = Self.healthy
        report.delivery.state = .alert
        report.alert = .init(kind: .endpoint, status: 404, sinceMillis: Self.now - 90_061_000, message: "Not Found")
        let text = report.human(nowMillis: Self.now)
        #expect(lines(text).first == "trackq 0.1.0: CRITICAL — endpoint alert (HTTP 404)")
        #expect(value("ALERT", in: text) == "endpoint, HTTP 404 for 1d 1h: Not Found")
        #expect(value("fix", in: text)?.hasPrefix("check --endpoint (TRACKQ_ENDPOINT)") == true)
    }

    @Test func humanNotRunning() {
        let text = Self.notRunning.human(nowMillis: Self.now)
        #expect(lines(text).first == "trackq 0.1.0: CRITICAL — daemon not running")
        #expect(value("daemon", in: text)?.hasPrefix("not running") == true)
        #expect(value("queue", in: text) == "52,000 pending (3.0 GiB), oldest 3d 4h ago")
        #expect(value("next attempt", in: text) == nil)
    }

    @Test func humanNothingEverHappened() {
        let text = Self.empty.human(nowMillis: Self.now)
        #expect(lines(text).first == "trackq 0.1.0: CRITICAL — daemon not running")
        #expect(value("queue", in: text) == "empty")
        #expect(value("last success", in: text) == "never")
        #expect(value("last error", in: text) == nil)
        #expect(value("database", in: text) == "/tmp/q.db (0 B)")
        #expect(value("endpoint", in: text) == nil)

        var idle = Self.empty
        idle.daemon = .init(running: true, pid: 7, startedAtMillis: Self.now - 45_000)
        let idleText = idle.human(nowMillis: Self.now)
        #expect(lines(idleText).first == "trackq 0.1.0: OK — idle, all delivered")
        #expect(value("daemon", in: idleText) == "running, pid 7, up for 45s")
    }

    @Test(
        arguments: [
            (0, "0s"), (999, "0s"), (45_000, "45s"), (60_000, "1m"), (192_000, "3m 12s"),
            (3_600_000, "1h"), (7_500_000, "2h 5m"), (7_559_000, "2h 5m"), (86_400_000, "1d"),
            (273_600_000, "3d 4h"), (-5_000, "0s"),
        ] as [(Int64, String)])
    func durations(_ millis: Int64, _ expected: String) {
        #expect(StatusReport.formatDuration(millis: millis) == expected)
    }

    @Test(
        arguments: [
            (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (1_258_291, "1.2 MiB"),
            (1_048_575, "1.0 MiB"), (3_221_225_472, "3.0 GiB"), (10 * 1_099_511_627_776, "10.0 TiB"),
            (Int64.max, "8.0 EiB"),
        ] as [(Int64, String)])
    func bytes(_ value: Int64, _ expected: String) {
        #expect(StatusReport.formatBytes(value) == expected)
    }

    @Test func countsAndAges() {
        #expect(StatusReport.formatCount(0) == "0")
        #expect(StatusReport.formatCount(999) == "999")
        #expect(StatusReport.formatCount(1000) == "1,000")
        #expect(StatusReport.formatCount(1_234_567) == "1,234,567")
        #expect(StatusReport.formatAge(since: Self.now + 5_000, now: Self.now) == "just now")
        #expect(StatusReport.formatAge(since: Self.now - 192_000, now: Self.now) == "3m 12s ago")
        #expect(StatusReport.formatUntil(Self.now + 12_000, now: Self.now) == "in 12s")
        #expect(StatusReport.formatUntil(Self.now - 1, now: Self.now) == "now")
    }

    @Test func humanLongMessagesAreCutToOneLine() {
        var report = Self.backingOff
        report.delivery.lastError = String(repeating: "x", count: 500) + "\n" + "tail"
        let text = report.human(nowMillis: Self.now)
        let line = lines(text).first { $0.hasPrefix("last error:") }!
        #expect(line.contains("…"))
        #expect(!line.contains("tail"))
        #expect(line.count < 220)
    }

    // MARK: - Prometheus

    /// name → [(labels, value)], with HELP and TYPE per family, checked line by line.
    func parsePrometheus(_ text: String) throws -> (
        samples: [String: [(labels: String, value: Double)]], types: [String: String], help: Set<String>
    ) {
        var samples: [String: [(labels: String, value: Double)]] = [:]
        var types: [String: String] = [:]
        var help = Set<String>()
        let name = #/[a-zA-Z_:][a-zA-Z0-9_:]*/#
        let sample = #/([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9]+(?:\.[0-9]+)?)/#
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") {
                let rest = line.dropFirst(7)
                let metric = try #require(rest.prefixMatch(of: name)).output
                #expect(rest.count > metric.count + 1, "HELP text for \(metric)")
                help.insert(String(metric))
            } else if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ")
                #expect(parts.count == 2)
                #expect(["counter", "gauge"].contains(String(parts[1])))
                types[String(parts[0])] = String(parts[1])
            } else {
                let match = try #require(try sample.wholeMatch(in: String(line)), "bad line: \(line)")
                let metric = String(match.output.1)
                #expect(types[metric] != nil && help.contains(metric), "\(metric) before its HELP/TYPE")
                samples[metric, default: []].append(
                    (String(match.output.2 ?? ""), try #require(Double(String(match.output.3)))))
            }
        }
        return (samples, types, help)
    }

    func one(_ samples: [String: [(labels: String, value: Double)]], _ name: String) -> Double? {
        guard let list = samples["trackq_" + name], list.count == 1, list[0].labels.isEmpty else { return nil }
        return list[0].value
    }

    @Test func prometheusFullReport() throws {
        var report = Self.authAlert
        report.delivery.lastSuccessAtMillis = Self.now - 12_345
        let text = report.prometheus(nowMillis: Self.now)
        #expect(text.hasSuffix("\n"))
        #expect(!text.contains("e+") && !text.contains("E+"))
        let (samples, types, help) = try parsePrometheus(text)
        let expected: [(String, String, Double)] = [
            ("events_accepted_total", "counter", 10_000),
            ("events_delivered_total", "counter", 8_000),
            ("events_dead_lettered_total", "counter", 3),
            ("events_rejected_total", "counter", 7),
            ("queue_pending_events", "gauge", 1234),
            ("queue_pending_bytes", "gauge", 1_258_291),
            ("queue_oldest_age_seconds", "gauge", 192),
            ("dead_letters", "gauge", 3),
            ("delivery_consecutive_failures", "gauge", 12),
            ("delivery_last_success_timestamp_seconds", "gauge", 1_795_755_587.655),
            ("daemon_running", "gauge", 1),
            ("database_size_bytes", "gauge", 12_582_912),
        ]
        for (name, type, value) in expected {
            #expect(types["trackq_" + name] == type, "\(name)")
            #expect(help.contains("trackq_" + name), "\(name)")
            #expect(one(samples, name) == value, "\(name)")
        }
        #expect(text.contains("\ntrackq_delivery_last_success_timestamp_seconds 1795755587.655\n"))
        #expect(text.contains("\ntrackq_queue_oldest_age_seconds 192\n"))

        #expect(types["trackq_delivery_state"] == "gauge")
        let states = try #require(samples["trackq_delivery_state"])
        #expect(
            states.map(\.labels) == [
                #"{state="idle"}"#, #"{state="sending"}"#, #"{state="backoff"}"#, #"{state="alert"}"#, #"{state="window"}"#,
            ])
        #expect(states.map(\.value) == [0, 0, 0, 1, 0])

        #expect(types["trackq_alert_active"] == "gauge")
        let alerts = try #require(samples["trackq_alert_active"])
        #expect(alerts.map(\.labels) == [#"{kind="auth"}"#, #"{kind="endpoint"}"#, #"{kind="tls"}"#])
        #expect(alerts.map(\.value) == [1, 0, 0])

        #expect(samples["trackq_info"]?.first?.labels == #"{version="0.1.0"}"#)
        // Each family's HELP and TYPE exactly once.
        for family in types.keys {
            #expect(text.components(separatedBy: "# TYPE \(family) ").count == 2, "\(family)")
            #expect(text.components(separatedBy: "# HELP \(family) ").count == 2, "\(family)")
        }
    }

    @Test func prometheusEmptyReport() throws {
        let text = Self.empty.prometheus(nowMillis: Self.now)
        let (samples, _, _) = try parsePrometheus(text)
        #expect(samples["trackq_delivery_last_success_timestamp_seconds"] == nil)
        #expect(!text.contains("delivery_last_success_timestamp_seconds"))
        #expect(one(samples, "queue_oldest_age_seconds") == 0)
        #expect(one(samples, "daemon_running") == 0)
        #expect(one(samples, "queue_pending_events") == 0)
        #expect(samples["trackq_delivery_state"]?.map(\.value) == [1, 0, 0, 0, 0])
        #expect(samples["trackq_alert_active"]?.map(\.value) == [0, 0, 0])
    }

    @Test func prometheusFractionalAges() throws {
        var report = Self.backingOff
        report.queue.oldestPendingAtMillis = Self.now - 192_050
        let text = report.prometheus(nowMillis: Self.now)
        #expect(text.contains("\ntrackq_queue_oldest_age_seconds 192.05\n"))
    }

    /// The state record is read from a file: a state or alert kind this version does not know
    /// (a newer trackq's, a flipped bit) reads as the nearest one it does, never as text that
    /// reaches status unchecked.
    @Test func aStateRecordWithUnknownWordsReadsAsKnownStates() throws {
        let dir = try TestDirectory()
        let store = try QueueStore(path: dir.database, durability: .full, bootID: "test-boot")
        var record = DeliveryRecord()
        record.state = .backoff
        record.alertKind = .auth
        try store.saveDeliveryRecord(record)
        try store.db.run(#"UPDATE daemon_state SET delivery_state = 'weird"state', alert_kind = 'martian' WHERE id = 1"#)
        let read = try store.loadDeliveryRecord()
        #expect(read.state == .idle)
        #expect(read.alertKind == .endpoint)
    }

    @Test(
        arguments: [
            (0, "0"), (12_000, "12"), (192_500, "192.5"), (192_050, "192.05"), (1, "0.001"),
            (1_795_755_600_123, "1795755600.123"), (-1_500, "-1.5"),
        ] as [(Int64, String)])
    func seconds(_ millis: Int64, _ expected: String) {
        #expect(StatusReport.seconds(millis: millis) == expected)
    }
}
