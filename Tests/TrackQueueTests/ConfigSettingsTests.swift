import Testing

@testable import TrackQueue

/// Resolves with an in-memory config file at /etc/trackq.conf and no real files.
private func resolve(
    flags: [String: String] = [:],
    environment: [String: String] = [:],
    file: String? = nil,
    userID: UInt32 = 1000,
    existing: Set<String> = []
) throws(ConfigurationError) -> DaemonSettings {
    var flags = flags
    if file != nil, flags["config"] == nil { flags["config"] = "/etc/trackq.conf" }
    return try DaemonSettings.resolve(
        flags: flags,
        environment: environment,
        userID: userID,
        readFile: { $0 == "/etc/trackq.conf" ? file : nil },
        fileExists: { existing.contains($0) })
}

/// The message of the error `body` throws, or nil.
private func message(_ body: () throws -> DaemonSettings) -> String? {
    do {
        _ = try body()
        return nil
    } catch let error as ConfigurationError {
        return error.message
    } catch {
        return "unexpected error type: \(error)"
    }
}

/// The defaults for user 1000 with an empty environment.
private let plainDefaults = DaemonSettings.builtIn(
    paths: RuntimePaths(database: "/tmp/trackq-1000/queue.db", socket: "/tmp/trackq-1000/trackq.sock"),
    tokenFile: nil)

/// One setting with three different valid values, for the precedence test.
struct ConfigPrecedenceCase: Sendable, CustomTestStringConvertible {
    var key: String
    var values: (flag: String, environment: String, file: String)
    /// What the setting holds, as text comparable with the values.
    var read: @Sendable (DaemonSettings) -> String
    /// The expected readings of the flag, environment and file values.
    var expected: (flag: String, environment: String, file: String)
    /// Environment variables every resolution gets too: a setting another one needs
    /// (`--ca-only` needs `--ca-file`).
    var companions: [String: String]

    init(
        _ key: String, _ values: (String, String, String), expected: (String, String, String)? = nil,
        companions: [String: String] = [:], read: @escaping @Sendable (DaemonSettings) -> String
    ) {
        self.key = key
        self.values = values
        self.expected = expected ?? values
        self.companions = companions
        self.read = read
    }

    var testDescription: String { key }
    var environmentName: String { "TRACKQ_" + key.uppercased().replacingOccurrences(of: "-", with: "_") }
}

private let configPrecedenceCases: [ConfigPrecedenceCase] = [
    .init("endpoint", ("https://a.example/t", "http://b.example:8080/t", "https://c.example")) { $0.endpoint },
    .init("token-file", ("/f/token", "/e/token", "/c/token")) { $0.tokenFile ?? "nil" },
    .init("auth-header", ("x-api-key", "X-API-KEY", "x-api-key"), expected: ("x-api-key", "x-api-key", "x-api-key")) {
        $0.authHeader.rawValue
    },
    .init("ca-file", ("/f/ca.pem", "/e/ca.pem", "/c/ca.pem")) { $0.caFile ?? "nil" },
    .init("ca-only", ("true", "YES", "on"), expected: ("true", "true", "true"), companions: ["TRACKQ_CA_FILE": "/ca.pem"]) {
        String($0.caOnly)
    },
    .init("client-cert", ("/f/c.pem", "/e/c.pem", "/c/c.pem"), companions: ["TRACKQ_CLIENT_KEY": "/k.pem"]) {
        $0.clientCertificate ?? "nil"
    },
    .init("client-key", ("/f/k.pem", "/e/k.pem", "/c/k.pem"), companions: ["TRACKQ_CLIENT_CERT": "/c.pem"]) { $0.clientKey ?? "nil" },
    .init("proxy", ("http://f:1", "http://e:2", "none"), expected: ("f:1", "e:2", "none")) {
        switch $0.proxy {
        case .url(let route)?: "\(route.host):\(route.port)"
        case ProxyRoute.Setting.none?: "none"
        case nil: "nil"
        }
    },
    .init("batch-max-events", ("1", "500", "999")) { String($0.batchMaxEvents) },
    .init("batch-max-bytes", ("100000", "200KB", "1MiB"), expected: ("100000", "200000", "1048576")) {
        String($0.batchMaxBytes)
    },
    .init("batch-linger", ("0ms", "2s", "1.5s"), expected: ("0s", "2s", "1500ms")) {
        DurationParser.format($0.batchLinger)
    },
    .init("retry-initial", ("2s", "3s", "4s")) { DurationParser.format($0.retryInitial) },
    .init("retry-max", ("10m", "20m", "1h")) { DurationParser.format($0.retryMax) },
    .init("request-timeout", ("1s", "2m", "250ms")) { DurationParser.format($0.requestTimeout) },
    .init("compression", ("gzip", "GZIP", "gzip"), expected: ("gzip", "gzip", "gzip")) { $0.compression.rawValue },
    .init("max-send-rate", ("1000", "2KB", "1KiB"), expected: ("1000", "2000", "1024")) { $0.maxSendRate.map(String.init) ?? "nil" },
    .init("send-window", ("22:00-06:00", "01:00-02:00,03:00-04:00", "00:00-24:00")) { $0.sendWindow.map(\.description) ?? "nil" },
    .init("max-event-bytes", ("1", "2KiB", "1000000"), expected: ("1", "2048", "1000000")) {
        String($0.maxEventBytes)
    },
    .init("max-queue-bytes", ("1", "10GiB", "500MB"), expected: ("1", "10737418240", "500000000")) {
        String($0.maxQueueBytes)
    },
    .init("max-event-age", ("1d", "12h", "90d")) { DurationParser.format($0.maxEventAge) },
    .init("clock-sync-wait", ("1m", "0", "1h"), expected: ("1m", "0s", "1h")) { DurationParser.format($0.clockSyncWait) },
    .init("clock-annotation", ("false", "no", "off"), expected: ("false", "false", "false")) { String($0.clockAnnotation) },
    .init("event-ids", ("false", "NO", "off"), expected: ("false", "false", "false")) { String($0.eventIDs) },
    .init("max-dead-letters", ("1", "500", "10000000")) { String($0.maxDeadLetters) },
    .init("durability", ("normal", "NORMAL", "normal"), expected: ("normal", "normal", "normal")) {
        $0.durability.rawValue
    },
    .init("socket-mode", ("0600", "640", "0o777"), expected: ("600", "640", "777")) {
        String($0.socketMode, radix: 8)
    },
    .init("socket-group", ("wheel", "adm", "trackq")) { $0.socketGroup ?? "nil" },
    .init("alert-command", ("logger a", "logger b", "logger \"c\"")) { $0.alertCommand ?? "nil" },
    .init("log-level", ("trace", "Warning", "critical"), expected: ("trace", "warning", "critical")) { $0.logLevel },
    .init("metrics-address", ("127.0.0.1:9464", "[::1]:9000", "0.0.0.0:80"), expected: ("127.0.0.1:9464", "[::1]:9000", "0.0.0.0:80")) {
        $0.metricsAddress?.description ?? "nil"
    },
    .init("http-address", ("127.0.0.1:8090", "[::1]:8091", "localhost:8092")) { $0.httpAddress?.description ?? "nil" },
    .init("http-allow-remote", ("true", "YES", "on"), expected: ("true", "true", "true")) { String($0.httpAllowRemote) },
    .init("http-token-file", ("/f/http-token", "/e/http-token", "/c/http-token")) { $0.httpTokenFile ?? "nil" },
]

@Suite("Daemon settings")
struct DaemonSettingsTests {
    @Test("no flags, environment or file gives the defaults")
    func defaults() throws {
        let settings = try resolve()
        #expect(settings == plainDefaults)
        #expect(settings.endpoint == "https://api.app.thrivestack.ai/api/track")
        #expect(settings.authHeader == .bearer)
        #expect(settings.batchMaxEvents == 1000)
        #expect(settings.batchMaxBytes == 2_000_000)
        #expect(settings.batchLinger == .milliseconds(100))
        #expect(settings.retryInitial == .seconds(1))
        #expect(settings.retryMax == .seconds(300))
        #expect(settings.requestTimeout == .seconds(30))
        #expect(settings.maxEventBytes == 65536)
        #expect(settings.maxQueueBytes == 1 << 30)
        #expect(settings.maxEventAge == .seconds(2_592_000))
        #expect(settings.durability == .full)
        #expect(settings.socketMode == 0o660)
        #expect(settings.socketGroup == nil)
        #expect(settings.alertCommand == nil)
        #expect(settings.logLevel == "info")
        #expect(settings.tokenFile == nil)
    }

    @Test("DaemonSettings.defaults matches the table")
    func staticDefaults() {
        var defaults = DaemonSettings.defaults
        defaults.paths = plainDefaults.paths
        defaults.tokenFile = nil
        #expect(defaults == plainDefaults)
    }

    @Test("the catalog's default texts parse to the defaults")
    func catalogDefaults() throws {
        #expect(DaemonSettings.catalog.map(\.flag) == configPrecedenceCases.map(\.key))
        var lines: [String] = []
        for info in DaemonSettings.catalog where !info.defaultText.hasPrefix("$") && !info.defaultText.hasPrefix("none") {
            lines.append("\(info.flag) = \(info.defaultText)")
        }
        #expect(lines.count == 20)
        #expect(try resolve(file: lines.joined(separator: "\n")) == plainDefaults)
    }

    /// The README's table and examples/trackq.conf are checked against the catalog by
    /// SettingsDocsTests, which reads them; here, what they do not show.
    @Test("every setting has help; the locations come first")
    func catalog() {
        #expect(DaemonSettings.catalog.allSatisfy { !$0.help.isEmpty })
        #expect(DaemonSettings.locationCatalog.map(\.environment) == ["TRACKQ_CONFIG", "TRACKQ_DATABASE", "TRACKQ_SOCKET"])
    }

    @Test("flag > environment > file > default", arguments: configPrecedenceCases)
    func precedence(_ item: ConfigPrecedenceCase) throws {
        let flags = [item.key: item.values.flag]
        let companions = item.companions
        let environment = [item.environmentName: item.values.environment].merging(companions) { $1 }
        let file = "\(item.key) = \(quoted(item.values.file))"

        #expect(item.read(try resolve(flags: flags, environment: environment, file: file)) == item.expected.flag)
        #expect(item.read(try resolve(flags: flags, environment: companions)) == item.expected.flag)
        #expect(item.read(try resolve(environment: environment, file: file)) == item.expected.environment)
        #expect(item.read(try resolve(environment: companions, file: file)) == item.expected.file)
        #expect(item.read(try resolve()) == item.read(plainDefaults))
        // An empty environment value counts as unset.
        #expect(
            item.read(try resolve(environment: [item.environmentName: ""].merging(companions) { $1 }, file: file))
                == item.expected.file)
        // Only this setting changed.
        var changed = try resolve(environment: companions, file: file)
        #expect(changed != plainDefaults)
        changed = try resolve(environment: environment)
        #expect(changed != plainDefaults)
    }

    private func quoted(_ value: String) -> String {
        "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    @Test("database and socket: flag > environment > file > table")
    func pathPrecedence() throws {
        let file = "database = /c/q.db\nsocket = /c/t.sock"
        let environment = ["TRACKQ_DATABASE": "/e/q.db", "TRACKQ_SOCKET": "/e/t.sock", "STATE_DIRECTORY": "/s"]
        let flags = ["database": "/f/q.db", "socket": "/f/t.sock"]
        #expect(try resolve(flags: flags, environment: environment, file: file).paths == .init(database: "/f/q.db", socket: "/f/t.sock"))
        #expect(try resolve(environment: environment, file: file).paths == .init(database: "/e/q.db", socket: "/e/t.sock"))
        #expect(try resolve(environment: ["RUNTIME_DIRECTORY": "/r"], file: file).paths == .init(database: "/c/q.db", socket: "/c/t.sock"))
        #expect(
            try resolve(environment: ["RUNTIME_DIRECTORY": "/r", "STATE_DIRECTORY": "/s"]).paths
                == .init(database: "/s/queue.db", socket: "/r/trackq.sock"))
        #expect(
            message { try resolve(file: "\n  database = \"\"") } == "/etc/trackq.conf:2: --database (TRACKQ_DATABASE) must not be empty")
    }

    @Test("the config file may come from TRACKQ_CONFIG; --config wins")
    func configLocation() throws {
        let fromEnvironment = try DaemonSettings.resolve(
            flags: [:], environment: ["TRACKQ_CONFIG": "/a.conf"], userID: 1000,
            readFile: { $0 == "/a.conf" ? "log-level = debug" : nil }, fileExists: { _ in false })
        #expect(fromEnvironment.logLevel == "debug")
        let fromFlag = try DaemonSettings.resolve(
            flags: ["config": "/b.conf"], environment: ["TRACKQ_CONFIG": "/a.conf"], userID: 1000,
            readFile: { ["/a.conf": "log-level = debug", "/b.conf": "log-level = error"][$0] }, fileExists: { _ in false })
        #expect(fromFlag.logLevel == "error")
        // An empty TRACKQ_CONFIG counts as unset.
        #expect(try resolve(environment: ["TRACKQ_CONFIG": ""]) == plainDefaults)
    }

    @Test("a config file that was named but is missing is an error")
    func missingConfig() {
        #expect(
            message { try resolve(flags: ["config": "/nope.conf"]) }
                == "config file /nope.conf (--config, TRACKQ_CONFIG) does not exist")
        #expect(
            message { try resolve(environment: ["TRACKQ_CONFIG": "/nope.conf"]) }
                == "config file /nope.conf (--config, TRACKQ_CONFIG) does not exist")
        #expect(
            message { try resolve(flags: ["config": "/unreadable"], existing: ["/unreadable"]) }
                == "config file /unreadable (--config, TRACKQ_CONFIG) cannot be read")
        #expect(message { try resolve(flags: ["config": ""]) } == "--config needs a path")
    }

    @Test("config file syntax errors surface from resolve")
    func fileErrors() {
        #expect(message { try resolve(file: "# c\nbatch-size = 3") } == "/etc/trackq.conf:2: unknown key \"batch-size\"")
        let token = message { try resolve(file: "token = abc123secret") }
        #expect(token?.hasPrefix("/etc/trackq.conf:1: a token is not allowed in a config file") == true)
        #expect(token?.contains("abc123secret") == false)
    }

    @Test("command-line arguments as --name value or --name=value")
    func parsedFlags() throws {
        #expect(
            try DaemonSettings.parseFlags(["--endpoint", "http://a/b", "--retry-max=5m", "--socket-group="]) == [
                "endpoint": "http://a/b", "retry-max": "5m", "socket-group": "",
            ])
        #expect(try DaemonSettings.parseFlags(["--alert-command", "--not-a-flag"]) == ["alert-command": "--not-a-flag"])
        #expect(try DaemonSettings.parseFlags(["--retry-max", "1s", "--retry-max", "2s"]) == ["retry-max": "2s"])
        #expect(throws: ConfigurationError.self) { try DaemonSettings.parseFlags(["-x"]) }
        #expect(throws: ConfigurationError.self) { try DaemonSettings.parseFlags(["--"]) }
    }

    @Test("unknown flags and a token flag are refused")
    func badFlags() throws {
        #expect(message { try resolve(flags: ["batch-size": "3"]) } == "unknown setting --batch-size")
        let token = try #require(message { try resolve(flags: ["token": "abc123secret"]) })
        #expect(token.contains("TRACKQ_TOKEN"))
        #expect(!token.contains("abc123secret"))
    }

    @Test("TRACKQ_TOKEN is not a setting and never shows up")
    func tokenEnvironment() throws {
        #expect(try resolve(environment: ["TRACKQ_TOKEN": "abc123secret"]) == plainDefaults)
    }

    @Test("the token file defaults to $CREDENTIALS_DIRECTORY/token only when it exists")
    func credentials() throws {
        let environment = ["CREDENTIALS_DIRECTORY": "/run/credentials/trackq.service"]
        let token = "/run/credentials/trackq.service/token"
        #expect(try resolve(environment: environment).tokenFile == nil)
        #expect(try resolve(environment: environment, existing: [token]).tokenFile == token)
        #expect(try resolve(environment: ["CREDENTIALS_DIRECTORY": "/run/c/"], existing: ["/run/c/token"]).tokenFile == "/run/c/token")
        #expect(try resolve(environment: ["CREDENTIALS_DIRECTORY": ""], existing: ["/token", "token"]).tokenFile == nil)
        #expect(try resolve(existing: [token]).tokenFile == nil)
        // Any explicit value wins; an empty flag means no token file at all.
        #expect(try resolve(environment: environment, file: "token-file = /t", existing: [token]).tokenFile == "/t")
        #expect(try resolve(flags: ["token-file": ""], environment: environment, existing: [token]).tokenFile == nil)
    }

    @Test("empty optional values mean none")
    func emptyOptionals() throws {
        let settings = try resolve(
            flags: ["socket-group": ""], environment: ["TRACKQ_SOCKET_GROUP": "adm", "TRACKQ_ALERT_COMMAND": "x"],
            file: "alert-command = \"\"")
        #expect(settings.socketGroup == nil)
        #expect(settings.alertCommand == "x")
        #expect(try resolve(file: "alert-command = \"\"\nsocket-group =").alertCommand == nil)
    }

    @Test(
        "invalid values name the setting both ways",
        arguments: [
            (
                "batch-linger", "abc",
                "invalid value \"abc\" for --batch-linger (TRACKQ_BATCH_LINGER): expected a duration like 250ms, 30s, 5m, 2h, 30d"
            ),
            (
                "batch-linger", "",
                "invalid value \"\" for --batch-linger (TRACKQ_BATCH_LINGER): expected a duration like 250ms, 30s, 5m, 2h, 30d"
            ),
            (
                "batch-linger", "10",
                "invalid value \"10\" for --batch-linger (TRACKQ_BATCH_LINGER): expected a duration like 250ms, 30s, 5m, 2h, 30d"
            ),
            (
                "retry-initial", "-1s",
                "invalid value \"-1s\" for --retry-initial (TRACKQ_RETRY_INITIAL): expected a duration like 250ms, 30s, 5m, 2h, 30d"
            ),
            ("max-event-age", "99999999d", "invalid value \"99999999d\" for --max-event-age (TRACKQ_MAX_EVENT_AGE): duration is too long"),
            (
                "max-event-bytes", "64K",
                "invalid value \"64K\" for --max-event-bytes (TRACKQ_MAX_EVENT_BYTES): expected a size like 65536, 64KiB, 2MB, 1GiB"
            ),
            (
                "max-queue-bytes", "99999999999GiB",
                "invalid value \"99999999999GiB\" for --max-queue-bytes (TRACKQ_MAX_QUEUE_BYTES): size is too large"
            ),
            (
                "batch-max-bytes", "1.5B",
                "invalid value \"1.5B\" for --batch-max-bytes (TRACKQ_BATCH_MAX_BYTES): size must come to a whole number of bytes"
            ),
            (
                "batch-max-events", "many",
                "invalid value \"many\" for --batch-max-events (TRACKQ_BATCH_MAX_EVENTS): expected a whole number"
            ),
            ("batch-max-events", "-5", "invalid value \"-5\" for --batch-max-events (TRACKQ_BATCH_MAX_EVENTS): expected a whole number"),
            ("batch-max-events", "1e3", "invalid value \"1e3\" for --batch-max-events (TRACKQ_BATCH_MAX_EVENTS): expected a whole number"),
            (
                "batch-max-events", "99999999999999999999",
                "invalid value \"99999999999999999999\" for --batch-max-events (TRACKQ_BATCH_MAX_EVENTS): number is too large"
            ),
            (
                "endpoint", "ftp://x.example/t",
                "invalid value \"ftp://x.example/t\" for --endpoint (TRACKQ_ENDPOINT): expected an http or https URL with a host, like https://example.com/api/track"
            ),
            (
                "endpoint", "https:///path",
                "invalid value \"https:///path\" for --endpoint (TRACKQ_ENDPOINT): expected an http or https URL with a host, like https://example.com/api/track"
            ),
            (
                "endpoint", "api.example.com/track",
                "invalid value \"api.example.com/track\" for --endpoint (TRACKQ_ENDPOINT): expected an http or https URL with a host, like https://example.com/api/track"
            ),
            (
                "endpoint", "http://exa mple.com",
                "invalid value \"http://exa mple.com\" for --endpoint (TRACKQ_ENDPOINT): expected an http or https URL with a host, like https://example.com/api/track"
            ),
            ("auth-header", "basic", "invalid value \"basic\" for --auth-header (TRACKQ_AUTH_HEADER): expected one of bearer, x-api-key"),
            ("durability", "paranoid", "invalid value \"paranoid\" for --durability (TRACKQ_DURABILITY): expected one of full, normal"),
            (
                "log-level", "verbose",
                "invalid value \"verbose\" for --log-level (TRACKQ_LOG_LEVEL): expected one of trace, debug, info, notice, warning, error, critical"
            ),
            (
                "socket-mode", "rw-rw----",
                "invalid value \"rw-rw----\" for --socket-mode (TRACKQ_SOCKET_MODE): expected permission bits in octal, like 0660"
            ),
            (
                "socket-mode", "0689",
                "invalid value \"0689\" for --socket-mode (TRACKQ_SOCKET_MODE): expected permission bits in octal, like 0660"
            ),
            ("socket-mode", "", "invalid value \"\" for --socket-mode (TRACKQ_SOCKET_MODE): expected permission bits in octal, like 0660"),
        ])
    func invalid(_ key: String, _ value: String, _ expected: String) {
        #expect(message { try resolve(flags: [key: value]) } == expected)
        if !value.isEmpty {
            let environmentName = "TRACKQ_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
            #expect(message { try resolve(environment: [environmentName: value]) } == expected)
        }
        #expect(message { try resolve(file: "# c\n\(key) = \"\(value)\"") } == "/etc/trackq.conf:2: " + expected)
    }

    @Test(
        "range checks",
        arguments: [
            ("batch-max-events", "0", "--batch-max-events (TRACKQ_BATCH_MAX_EVENTS) must be between 1 and 1000, got 0"),
            ("batch-max-events", "1001", "--batch-max-events (TRACKQ_BATCH_MAX_EVENTS) must be between 1 and 1000, got 1001"),
            ("batch-max-events", "5000", "--batch-max-events (TRACKQ_BATCH_MAX_EVENTS) must be between 1 and 1000, got 5000"),
            ("batch-max-bytes", "2000001", "--batch-max-bytes (TRACKQ_BATCH_MAX_BYTES) must be at most 2000000, got 2000001"),
            ("batch-max-bytes", "2MiB", "--batch-max-bytes (TRACKQ_BATCH_MAX_BYTES) must be at most 2000000, got 2097152"),
            (
                "batch-max-bytes", "65537",
                "--batch-max-bytes (TRACKQ_BATCH_MAX_BYTES) must be at least --max-event-bytes (TRACKQ_MAX_EVENT_BYTES) + 2 = 65538, got 65537"
            ),
            (
                "batch-max-bytes", "0",
                "--batch-max-bytes (TRACKQ_BATCH_MAX_BYTES) must be at least --max-event-bytes (TRACKQ_MAX_EVENT_BYTES) + 2 = 65538, got 0"
            ),
            ("retry-initial", "0s", "--retry-initial (TRACKQ_RETRY_INITIAL) must be greater than 0, got 0s"),
            (
                "retry-initial", "10m",
                "--retry-max (TRACKQ_RETRY_MAX) must be at least --retry-initial (TRACKQ_RETRY_INITIAL) = 10m, got 5m"
            ),
            (
                "retry-max", "500ms",
                "--retry-max (TRACKQ_RETRY_MAX) must be at least --retry-initial (TRACKQ_RETRY_INITIAL) = 1s, got 500ms"
            ),
            ("retry-max", "0s", "--retry-max (TRACKQ_RETRY_MAX) must be at least --retry-initial (TRACKQ_RETRY_INITIAL) = 1s, got 0s"),
            ("request-timeout", "0ms", "--request-timeout (TRACKQ_REQUEST_TIMEOUT) must be greater than 0, got 0s"),
            ("max-event-bytes", "0", "--max-event-bytes (TRACKQ_MAX_EVENT_BYTES) must be between 1 and 2000000, got 0"),
            ("max-event-bytes", "2000001", "--max-event-bytes (TRACKQ_MAX_EVENT_BYTES) must be between 1 and 2000000, got 2000001"),
            (
                "max-event-bytes", "2000000",
                "--batch-max-bytes (TRACKQ_BATCH_MAX_BYTES) must be at least --max-event-bytes (TRACKQ_MAX_EVENT_BYTES) + 2 = 2000002, got 2000000"
            ),
            (
                "max-event-bytes", "1999999",
                "--batch-max-bytes (TRACKQ_BATCH_MAX_BYTES) must be at least --max-event-bytes (TRACKQ_MAX_EVENT_BYTES) + 2 = 2000001, got 2000000"
            ),
            ("max-queue-bytes", "0", "--max-queue-bytes (TRACKQ_MAX_QUEUE_BYTES) must be greater than 0, got 0"),
            ("max-event-age", "0d", "--max-event-age (TRACKQ_MAX_EVENT_AGE) must be greater than 0, got 0s"),
            ("socket-mode", "1000", "--socket-mode (TRACKQ_SOCKET_MODE) must be at most 0777, got 01000"),
            ("socket-mode", "04755", "--socket-mode (TRACKQ_SOCKET_MODE) must be at most 0777, got 04755"),
        ])
    func ranges(_ key: String, _ value: String, _ expected: String) {
        #expect(message { try resolve(flags: [key: value]) } == expected)
        #expect(message { try resolve(file: "\n\n\(key) = \(value)") } == "/etc/trackq.conf:3: " + expected)
    }

    @Test("range boundaries are accepted")
    func boundaries() throws {
        let settings = try resolve(flags: [
            "batch-max-events": "1", "batch-max-bytes": "2000000", "max-event-bytes": "1999998",
            "retry-initial": "1ms", "retry-max": "1ms", "request-timeout": "1ms", "max-queue-bytes": "1",
            "max-event-age": "1ms", "socket-mode": "0", "batch-linger": "0s",
        ])
        #expect(settings.batchMaxEvents == 1)
        #expect(settings.maxEventBytes == 1_999_998)
        #expect(settings.retryMax == settings.retryInitial)
        #expect(settings.socketMode == 0)
        #expect(settings.batchLinger == .zero)
        #expect(
            try resolve(flags: ["batch-max-events": "1000", "socket-mode": "777", "max-event-bytes": "1", "batch-max-bytes": "3"])
                .socketMode == 0o777)
    }

    @Test("combination errors point at the file line of the setting that was set")
    func combinationSource() {
        #expect(
            message { try resolve(file: "retry-initial = 1s\nretry-max = 100ms") }
                == "/etc/trackq.conf:2: --retry-max (TRACKQ_RETRY_MAX) must be at least --retry-initial (TRACKQ_RETRY_INITIAL) = 1s, got 100ms"
        )
        #expect(
            message { try resolve(file: "\nmax-event-bytes = 2000000") }
                == "/etc/trackq.conf:2: --batch-max-bytes (TRACKQ_BATCH_MAX_BYTES) must be at least --max-event-bytes (TRACKQ_MAX_EVENT_BYTES) + 2 = 2000002, got 2000000"
        )
        // Values from flags and the environment combine with values from the file.
        #expect(
            message { try resolve(environment: ["TRACKQ_RETRY_INITIAL": "1h"], file: "retry-max = 1m") }
                == "/etc/trackq.conf:1: --retry-max (TRACKQ_RETRY_MAX) must be at least --retry-initial (TRACKQ_RETRY_INITIAL) = 1h, got 1m"
        )
    }

    @Test("long invalid values are shortened in messages")
    func longValues() throws {
        let text = try #require(message { try resolve(flags: ["batch-linger": String(repeating: "x", count: 500)]) })
        #expect(text.count < 250)
    }

    @Test("examples/trackq.conf resolves to exactly the defaults")
    func exampleFile() throws {
        let path = exampleConfigPath()
        let text = try #require(DaemonSettings.readFileFromDisk(path))
        let resolved = try DaemonSettings.resolve(
            flags: ["config": path], environment: [:], userID: 1000,
            readFile: DaemonSettings.readFileFromDisk, fileExists: { _ in false })
        #expect(resolved == plainDefaults)

        // Every setting is listed, commented out; uncommenting the ones with a
        // plain default must still give exactly the defaults.
        var seen: Set<String> = []
        var uncommented: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix("# "), let equals = line.firstIndex(of: "=") else {
                uncommented.append(String(line))
                continue
            }
            let key = line.dropFirst(2)[..<equals].trimmingCharacters(in: .whitespaces)
            guard DaemonSettings.configFileKeys.contains(key) else {
                uncommented.append(String(line))
                continue
            }
            seen.insert(key)
            let keep = ["token-file", "proxy", "database", "socket"].contains(key)
            uncommented.append(keep ? String(line) : String(line.dropFirst(2)))
        }
        #expect(seen == DaemonSettings.configFileKeys)
        let all = try DaemonSettings.resolve(
            flags: ["config": "/x.conf"], environment: [:], userID: 1000,
            readFile: { _ in uncommented.joined(separator: "\n") }, fileExists: { _ in false })
        #expect(all == plainDefaults)
    }
}

/// The repository's examples/trackq.conf, found from this source file.
private func exampleConfigPath(_ file: String = #filePath) -> String {
    var components = file.split(separator: "/", omittingEmptySubsequences: false)
    components.removeLast(3)  // Tests/TrackQueueTests/<file>.swift
    return components.joined(separator: "/") + "/examples/trackq.conf"
}
