import Foundation
import TrackQueueEvent
import TrackQueueSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The HTTP header that carries the token.
public enum AuthHeader: String, Sendable, CaseIterable {
    /// `Authorization: Bearer <token>`.
    case bearer
    /// `X-API-Key: <token>`.
    case xAPIKey = "x-api-key"
}

/// How request bodies are encoded on the wire.
public enum Compression: String, Sendable, CaseIterable {
    /// As they are: JSON.
    case none
    /// `Content-Encoding: gzip`.
    case gzip
}

/// How hard the queue works to keep an accepted event across a crash.
public enum Durability: String, Sendable, CaseIterable {
    /// Every accepted event is on disk before it is acknowledged.
    case full
    /// Faster; a power loss may lose the most recent events.
    case normal
}

/// One row of the settings table: how a setting is spelled and what it does.
public struct SettingInfo: Sendable, Equatable {
    /// The flag name without `--`; also the config file key.
    public var flag: String
    /// The environment variable.
    public var environment: String
    /// The default, as shown to people (`64KiB`, `none`, …).
    public var defaultText: String
    /// One line of help.
    public var help: String
    /// The placeholder for the value in usage text (`DURATION`, `SIZE`, …).
    public var valueName: String

    /// Creates a row.
    public init(flag: String, environment: String, defaultText: String, help: String, valueName: String) {
        self.flag = flag
        self.environment = environment
        self.defaultText = defaultText
        self.help = help
        self.valueName = valueName
    }

    /// The flag as typed: `--batch-linger`.
    public var option: String { "--" + flag }
}

/// The settings of `trackq daemon`.
///
/// Every setting has a flag, an environment variable and a config file key
/// (see ``catalog``). Precedence: flag > environment > config file > default.
/// The token itself is not a setting here: it is only ever read from
/// `TRACKQ_TOKEN` or the token file, never from a flag or the config file.
public struct DaemonSettings: Sendable, Equatable {
    // Each setting's real default is its row's in ``Setting/table``; these placeholders only
    // let `builtIn` start from `DaemonSettings(paths:)` and apply the rows.
    /// Where batches are posted: an http or https URL with a host.
    public var endpoint: String = ""
    /// The file holding the token, if any.
    public var tokenFile: String?
    /// The header that carries the token.
    public var authHeader: AuthHeader = .bearer
    /// A PEM file of CA certificates trusted for the API's certificate, besides the system's.
    public var caFile: String?
    /// Whether only `caFile`'s CAs are trusted, not the system's.
    public var caOnly = false
    /// The PEM certificate (and chain) presented to the API, for mutual TLS.
    public var clientCertificate: String?
    /// The PEM private key of `clientCertificate`.
    public var clientKey: String?
    /// `--proxy`: a URL, or `none`; nil: the environment's (`HTTPS_PROXY`, …).
    public var proxy: ProxyRoute.Setting?
    /// The proxy delivery goes through, chosen from `proxy`, the environment and the
    /// endpoint when the settings are resolved; nil: none.
    public var proxyRoute: ProxyRoute?
    /// How request bodies go on the wire.
    public var compression: Compression = .none
    /// Most bytes of request bodies sent a second; nil: no cap.
    public var maxSendRate: Int?
    /// When delivery may send, in local time; nil: always.
    public var sendWindow: SendWindow?
    /// Most events in one batch (1...1000).
    public var batchMaxEvents: Int = 0
    /// Most bytes in one batch body (at most 2000000, at least `maxEventBytes + 2`).
    public var batchMaxBytes: Int = 0
    /// How long to wait for more events before sending a partial batch.
    public var batchLinger: Duration = .zero
    /// The first retry delay (> 0).
    public var retryInitial: Duration = .zero
    /// The longest retry delay (≥ `retryInitial`).
    public var retryMax: Duration = .zero
    /// How long one HTTP request may take (> 0).
    public var requestTimeout: Duration = .zero
    /// The largest accepted event (1...2000000 bytes).
    public var maxEventBytes: Int = 0
    /// The most the queue may hold (> 0 bytes).
    public var maxQueueBytes: Int = 0
    /// Events older than this are dropped (> 0).
    public var maxEventAge: Duration = .zero
    /// How long an event stamped while the clock was wrong waits for the clock to be set
    /// before it is sent with the best time known; zero holds nothing.
    public var clockSyncWait: Duration = .seconds(600)
    /// Whether each event is sent with `context.trackq` (what the clock was, when it was
    /// accepted and sent).
    public var clockAnnotation = true
    /// Whether each event is sent with `context.trackq.event_id` and each request with
    /// `Idempotency-Key`.
    public var eventIDs = true
    /// The most dead letters kept (the oldest beyond it are dropped and counted).
    public var maxDeadLetters: Int = 0
    /// How hard the queue works to survive crashes.
    public var durability: Durability = .full
    /// Permission bits of the socket, e.g. `0o660` (≤ `0o777`).
    public var socketMode: UInt32 = 0
    /// The group that owns the socket; nil keeps the daemon's group.
    public var socketGroup: String?
    /// A shell command run on alerts; nil for none.
    public var alertCommand: String?
    /// One of ``logLevels``.
    public var logLevel: String = ""
    /// Most client connections open at once (not a setting: tests lower it).
    package var maxConnections = Defaults.maxConnections
    /// The HTTP face's timers (not settings: tests shorten them): a request's head to its
    /// last byte, and a keep-alive connection's wait for its next request.
    package var httpRequestTimeout = Defaults.httpRequestTimeout
    package var httpIdleTimeout = Defaults.httpIdleTimeout
    /// How often the daemon reads the clock to see a step or a change of its state (not a
    /// setting: tests shorten it).
    package var clockCheckInterval: Duration = .seconds(1)
    /// Where to serve Prometheus metrics (`GET /metrics`), or nil for no listener.
    public var metricsAddress: HostAndPort?
    /// Where to serve the HTTP face on TCP as well as on the socket, or nil for no listener.
    public var httpAddress: HostAndPort?
    /// Whether `httpAddress` may be other than a loopback address.
    public var httpAllowRemote = false
    /// The file holding the bearer token requests to `httpAddress` must carry, if any.
    public var httpTokenFile: String?
    /// The database and socket paths.
    public var paths: RuntimePaths

    // MARK: Constants

    /// The default endpoint.
    public static let defaultEndpoint = "https://api.app.thrivestack.ai/api/track"
    /// The largest allowed `batchMaxEvents`.
    public static let batchMaxEventsLimit = TrackAPI.maxEventsPerRequest
    /// The largest allowed `batchMaxBytes` and `maxEventBytes`.
    public static let batchMaxBytesLimit = TrackAPI.maxRequestBytes
    /// The accepted log levels, most verbose first.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    /// The environment variable holding the token.
    public static let tokenEnvironmentVariable = "TRACKQ_TOKEN"
    /// The environment variable naming the config file (`--config`).
    public static let configEnvironmentVariable = "TRACKQ_CONFIG"
    /// The keys a config file may contain.
    public static let configFileKeys: Set<String> = Set(Setting.allCases.map(\.rawValue)).union([
        "database", "socket",
    ])

    /// The settings table as data, in the order of the README's settings table.
    public static let catalog: [SettingInfo] = Setting.allCases.map(\.info)

    /// The options every subcommand shares: `config` (daemon only),
    /// `database` and `socket`.
    public static let locationCatalog: [SettingInfo] = [
        SettingInfo(
            flag: "config", environment: configEnvironmentVariable, defaultText: "none",
            help: "Read settings from this config file (flags and environment variables win over it).",
            valueName: "PATH"),
        SettingInfo(
            flag: "database", environment: "TRACKQ_DATABASE",
            defaultText: "$STATE_DIRECTORY/queue.db, /var/lib/trackq/queue.db as root, else $XDG_STATE_HOME/trackq/queue.db",
            help: "The queue database file.", valueName: "PATH"),
        SettingInfo(
            flag: "socket", environment: "TRACKQ_SOCKET",
            defaultText: "$RUNTIME_DIRECTORY/trackq.sock, /run/trackq/trackq.sock as root, else $XDG_RUNTIME_DIR/trackq/trackq.sock",
            help: "The control socket.", valueName: "PATH"),
    ]

    /// The defaults, with the paths and token file this process would use.
    public static let defaults: DaemonSettings = {
        let environment = ProcessInfo.processInfo.environment
        return builtIn(
            paths: RuntimePaths.resolve(environment: environment, userID: getuid()),
            tokenFile: credentialsToken(environment: environment, fileExists: fileExistsOnDisk))
    }()

    /// The table's defaults with the given paths and token file.
    package static func builtIn(paths: RuntimePaths, tokenFile: String?) -> DaemonSettings {
        var settings = DaemonSettings(paths: paths)
        for setting in Setting.table {
            let context = Setting.Context(setting: setting, source: .flag, text: setting.defaultValue)
            // The table's own defaults; a test parses every one of them.
            try! setting.apply(setting.defaultValue, to: &settings, context: context)
        }
        settings.tokenFile = tokenFile
        return settings
    }

    /// `$CREDENTIALS_DIRECTORY/token` when that file exists.
    package static func credentialsToken(environment: [String: String], fileExists: (String) -> Bool) -> String? {
        guard let directory = RuntimePaths.nonEmpty(environment["CREDENTIALS_DIRECTORY"]) else { return nil }
        let path = RuntimePaths.join(directory, "token")
        return fileExists(path) ? path : nil
    }

    // MARK: Resolution

    /// Reads a file from the file system; nil if it cannot be read.
    public static func readFileFromDisk(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// Whether a file exists in the file system.
    public static func fileExistsOnDisk(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: path)
    }

    /// Resolves every setting: flag > environment > config file > default,
    /// then checks the rules that involve two settings.
    ///
    /// - Parameters:
    ///   - flags: values given on the command line, keyed by flag name without
    ///     `--` (e.g. `"batch-linger"`, `"config"`, `"database"`, `"socket"`).
    ///     An unknown key is refused. An empty `token-file`, `socket-group` or
    ///     `alert-command` means none.
    ///   - environment: the process environment; empty values count as unset.
    ///   - userID: the user the daemon runs as (chooses the default paths).
    ///   - readFile: returns the contents of a path, or nil if it does not exist.
    ///   - fileExists: whether a path exists (for `$CREDENTIALS_DIRECTORY/token`).
    public static func resolve(
        flags: [String: String],
        environment: [String: String],
        userID: UInt32 = getuid(),
        readFile: (String) -> String? = DaemonSettings.readFileFromDisk,
        fileExists: (String) -> Bool = DaemonSettings.fileExistsOnDisk
    ) throws(ConfigurationError) -> DaemonSettings {
        for key in flags.keys.sorted() where !configFileKeys.contains(key) && key != "config" {
            if key == "token" {
                throw ConfigurationError(
                    "a token never goes on the command line; put it in \(tokenEnvironmentVariable) "
                        + "or in a token file (--token-file, TRACKQ_TOKEN_FILE)")
            }
            throw ConfigurationError("unknown setting --\(key)")
        }
        let env = RuntimePaths.Environment(environment)
        let file = try loadConfigFile(flags: flags, environment: env, readFile: readFile, fileExists: fileExists)

        var filePaths: (database: String?, socket: String?) = (nil, nil)
        if let file {
            filePaths.database = try pathFromFile(file, key: "database", environment: "TRACKQ_DATABASE")
            filePaths.socket = try pathFromFile(file, key: "socket", environment: "TRACKQ_SOCKET")
        }
        var settings = builtIn(
            paths: RuntimePaths.resolve(flags: flags, environment: environment, userID: userID, file: filePaths),
            tokenFile: credentialsToken(environment: environment, fileExists: fileExists))

        var sources: [Setting: Source] = [:]
        for setting in Setting.allCases {
            let chosen: (text: String, source: Source)
            if let text = flags[setting.rawValue] {
                chosen = (text, .flag)
            } else if let text = env[setting.environment] {
                chosen = (text, .environment)
            } else if let file, let entry = file.entries[setting.rawValue] {
                chosen = (entry.value, .file(path: file.path, line: entry.line))
            } else {
                continue
            }
            sources[setting] = chosen.source
            let context = Setting.Context(setting: setting, source: chosen.source, text: chosen.text)
            try setting.apply(chosen.text, to: &settings, context: context)
        }
        try checkCombinations(settings, sources: sources)
        settings.proxyRoute = try ProxyRoute.choose(endpoint: settings.endpoint, setting: settings.proxy, environment: environment)
        return settings
    }

    /// Reads the config file named by `--config` or `TRACKQ_CONFIG`, if any.
    package static func loadConfigFile(
        flags: [String: String],
        environment: RuntimePaths.Environment,
        readFile: (String) -> String?,
        fileExists: (String) -> Bool
    ) throws(ConfigurationError) -> ConfigFile? {
        let path: String
        if let flag = flags["config"] {
            guard !flag.isEmpty else { throw ConfigurationError("--config needs a path") }
            path = flag
        } else if let variable = environment[configEnvironmentVariable] {
            path = variable
        } else {
            return nil
        }
        guard let text = readFile(path) else {
            let why = fileExists(path) ? "cannot be read" : "does not exist"
            throw ConfigurationError(
                "config file \(path) (--config, \(configEnvironmentVariable)) \(why)")
        }
        return try ConfigFile.parse(text, path: path, allowedKeys: configFileKeys)
    }

    /// A `database` or `socket` value from the config file; must not be empty.
    package static func pathFromFile(_ file: ConfigFile, key: String, environment: String) throws(ConfigurationError)
        -> String?
    {
        guard let entry = file.entries[key] else { return nil }
        guard !entry.value.isEmpty else {
            throw ConfigurationError("\(file.path):\(entry.line): --\(key) (\(environment)) must not be empty")
        }
        return entry.value
    }

    /// The rules that involve two settings.
    package static func checkCombinations(_ settings: DaemonSettings, sources: [Setting: Source]) throws(ConfigurationError) {
        func blame(_ first: Setting, _ second: Setting) -> String {
            (sources[first] ?? sources[second] ?? .flag).prefix
        }
        let batchMaxBytes = Setting.named("batch-max-bytes")
        let maxEventBytes = Setting.named("max-event-bytes")
        let retryMax = Setting.named("retry-max")
        let retryInitial = Setting.named("retry-initial")
        let minimumBatchBytes = settings.maxEventBytes + 2
        if settings.batchMaxBytes < minimumBatchBytes {
            throw ConfigurationError(
                "\(blame(batchMaxBytes, maxEventBytes))\(batchMaxBytes.label) must be at least "
                    + "\(maxEventBytes.label) + 2 = \(minimumBatchBytes), got \(settings.batchMaxBytes)")
        }
        if let address = settings.httpAddress, !settings.httpAllowRemote, !address.isLoopback {
            let source = sources[Setting.named("http-address")] ?? .flag
            throw ConfigurationError(
                "\(source.prefix)\(Setting.named("http-address").label) \(address.host) is not a loopback address; "
                    + "listening beyond this host needs \(Setting.named("http-allow-remote").label) "
                    + "(and \(Setting.named("http-token-file").label), so strangers cannot write events)")
        }
        if settings.caOnly && settings.caFile == nil {
            throw ConfigurationError(
                "\(blame(Setting.named("ca-only"), Setting.named("ca-file")))\(Setting.named("ca-only").label) needs "
                    + "\(Setting.named("ca-file").label): with no CA at all, no certificate could be trusted")
        }
        if (settings.clientCertificate == nil) != (settings.clientKey == nil) {
            let (given, missing) =
                settings.clientCertificate == nil
                ? (Setting.named("client-key"), Setting.named("client-cert"))
                : (Setting.named("client-cert"), Setting.named("client-key"))
            throw ConfigurationError(
                "\(blame(given, missing))\(given.label) needs \(missing.label): mutual TLS takes the certificate and its key")
        }
        if settings.retryMax < settings.retryInitial {
            throw ConfigurationError(
                "\(blame(retryMax, retryInitial))\(retryMax.label) must be at least "
                    + "\(retryInitial.label) = \(DurationParser.format(settings.retryInitial)), "
                    + "got \(DurationParser.format(settings.retryMax))")
        }
    }

    /// Where a value came from.
    package enum Source: Equatable {
        case flag
        case environment
        case file(path: String, line: Int)

        /// `path:line: ` for values from a file, else nothing.
        package var prefix: String {
            if case .file(let path, let line) = self { return "\(path):\(line): " }
            return ""
        }
    }
}

extension DaemonSettings {
    /// A daemon setting: its flag (also its config file key), value name, default, help, and
    /// how its text is parsed, range-checked and stored. The environment variable is derived.
    ///
    /// ``table`` is the one place a setting is declared: `trackq daemon`'s flags and help,
    /// the environment names, the config file keys, the defaults and the README table all
    /// come from it. Adding a setting is one row here plus its stored property and its use.
    package struct Setting: Sendable, Hashable {
        /// The flag name without `--`.
        package var rawValue: String
        /// The placeholder in usage text.
        package var valueName: String
        /// The text parsed for the built-in default; empty for none.
        package var defaultValue: String
        /// The default as shown to people, when it is not ``defaultValue``.
        package var shownDefault: String?
        /// One line of help.
        package var help: String
        /// Parses the text and stores it in the settings, checking its range.
        package var store:
            @Sendable (_ text: String, _ settings: inout DaemonSettings, _ context: Context) throws(ConfigurationError) -> Void

        package static func == (a: Setting, b: Setting) -> Bool { a.rawValue == b.rawValue }
        package func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

        /// `TRACKQ_` and the flag name in upper case with underscores.
        package var environment: String {
            "TRACKQ_" + rawValue.uppercased().replacingOccurrences(of: "-", with: "_")
        }

        /// Both spellings, for messages: `--batch-linger (TRACKQ_BATCH_LINGER)`.
        package var label: String { "--\(rawValue) (\(environment))" }

        /// The default as shown to people; parses to the built-in default.
        package var defaultText: String { shownDefault ?? defaultValue }

        /// The catalog row.
        package var info: SettingInfo {
            SettingInfo(flag: rawValue, environment: environment, defaultText: defaultText, help: help, valueName: valueName)
        }

        package static var allCases: [Setting] { table }

        /// The row named `flag`; only for names in ``table``.
        package static func named(_ flag: String) -> Setting {
            table.first { $0.rawValue == flag }!
        }

        /// Parses `text` and stores it in `settings`, checking its range.
        package func apply(_ text: String, to settings: inout DaemonSettings, context: Context) throws(ConfigurationError) {
            try store(text, &settings, context)
        }

        /// Every setting, in the order of the README's settings table.
        package static let table: [Setting] = [
            Setting(
                rawValue: "endpoint", valueName: "URL", defaultValue: DaemonSettings.defaultEndpoint,
                help: "Where batches of events are posted (an http or https URL)."
            ) { text, settings, context throws(ConfigurationError) in settings.endpoint = try context.url(text) },
            Setting(
                rawValue: "token-file", valueName: "PATH", defaultValue: "",
                shownDefault: "$CREDENTIALS_DIRECTORY/token when that file exists",
                help: "Read the API token from this file (the token may also be given in TRACKQ_TOKEN)."
            ) { text, settings, _ in settings.tokenFile = text.isEmpty ? nil : text },
            Setting(
                rawValue: "auth-header", valueName: "bearer|x-api-key", defaultValue: "bearer",
                help: "Send the token as 'Authorization: Bearer' (bearer) or as 'X-API-Key' (x-api-key)."
            ) { text, settings, context throws(ConfigurationError) in
                settings.authHeader = try context.choice(text, AuthHeader.allCases)
            },
            Setting(
                rawValue: "ca-file", valueName: "PATH", defaultValue: "", shownDefault: "none",
                help: "Also trust the CA certificates in this PEM file for the API's certificate (re-read on SIGHUP)."
            ) { text, settings, _ in settings.caFile = text.isEmpty ? nil : text },
            Setting(
                rawValue: "ca-only", valueName: "true|false", defaultValue: "false",
                help: "Trust only the CAs in --ca-file, not the system's."
            ) { text, settings, context throws(ConfigurationError) in settings.caOnly = try context.boolean(text) },
            Setting(
                rawValue: "client-cert", valueName: "PATH", defaultValue: "", shownDefault: "none",
                help: "Present this PEM certificate (and chain) to the API: mutual TLS; give --client-key too (re-read on SIGHUP)."
            ) { text, settings, _ in settings.clientCertificate = text.isEmpty ? nil : text },
            Setting(
                rawValue: "client-key", valueName: "PATH", defaultValue: "", shownDefault: "none",
                help: "The PEM private key of --client-cert (not encrypted; re-read on SIGHUP)."
            ) { text, settings, _ in settings.clientKey = text.isEmpty ? nil : text },
            Setting(
                rawValue: "proxy", valueName: "URL", defaultValue: "", shownDefault: "$HTTPS_PROXY or $HTTP_PROXY, unless $NO_PROXY",
                help: "Send through this HTTP proxy, http://host:port (credentials, user:password@, only in TRACKQ_PROXY "
                    + "or the config file); none: no proxy at all."
            ) { text, settings, context throws(ConfigurationError) in
                switch text {
                case "": settings.proxy = nil
                case "none": settings.proxy = ProxyRoute.Setting.none
                default:
                    let route: ProxyRoute
                    do throws(ConfigurationError) {
                        route = try ProxyRoute.parse(text, source: context.setting.label)
                    } catch {
                        throw ConfigurationError(context.source.prefix + error.message)
                    }
                    // As the token: what is on a command line, `ps` shows to every user.
                    if route.username != nil, context.source == .flag {
                        throw ConfigurationError(
                            "the proxy's credentials never go on the command line (ps shows them): put the URL in "
                                + "TRACKQ_PROXY, the config file, or HTTPS_PROXY")
                    }
                    settings.proxy = .url(route)
                }
            },
            Setting(
                rawValue: "batch-max-events", valueName: "N", defaultValue: String(TrackAPI.maxEventsPerRequest),
                help: "Most events in one request (1 to \(TrackAPI.maxEventsPerRequest))."
            ) { text, settings, context throws(ConfigurationError) in
                settings.batchMaxEvents = try context.within(context.integer(text), 1...DaemonSettings.batchMaxEventsLimit)
            },
            Setting(
                rawValue: "batch-max-bytes", valueName: "SIZE", defaultValue: String(TrackAPI.maxRequestBytes),
                help: "Most bytes in one request body (at most \(TrackAPI.maxRequestBytes), at least max-event-bytes + 2)."
            ) { text, settings, context throws(ConfigurationError) in
                settings.batchMaxBytes = try context.atMost(context.size(text), DaemonSettings.batchMaxBytesLimit)
            },
            Setting(
                rawValue: "batch-linger", valueName: "DURATION", defaultValue: "100ms",
                help: "How long to wait for more events before sending a partial batch."
            ) { text, settings, context throws(ConfigurationError) in settings.batchLinger = try context.duration(text) },
            Setting(
                rawValue: "retry-initial", valueName: "DURATION", defaultValue: "1s",
                help: "First delay before retrying a failed request."
            ) { text, settings, context throws(ConfigurationError) in
                settings.retryInitial = try context.positive(context.duration(text))
            },
            Setting(
                rawValue: "retry-max", valueName: "DURATION", defaultValue: "5m",
                help: "Longest delay between retries (at least retry-initial)."
            ) { text, settings, context throws(ConfigurationError) in settings.retryMax = try context.duration(text) },
            Setting(
                rawValue: "request-timeout", valueName: "DURATION", defaultValue: "30s",
                help: "How long one request may take."
            ) { text, settings, context throws(ConfigurationError) in
                settings.requestTimeout = try context.positive(context.duration(text))
            },
            Setting(
                rawValue: "compression", valueName: "gzip|none", defaultValue: "none",
                help: "Send request bodies gzip-compressed (Content-Encoding: gzip); if the API refuses them, sent plain."
            ) { text, settings, context throws(ConfigurationError) in
                settings.compression = try context.choice(text, Compression.allCases)
            },
            Setting(
                rawValue: "max-send-rate", valueName: "SIZE", defaultValue: "", shownDefault: "none",
                help: "Most bytes of request bodies sent a second, e.g. 20KB (a token bucket holding one batch)."
            ) { text, settings, context throws(ConfigurationError) in
                settings.maxSendRate = text.isEmpty ? nil : try context.positive(context.size(text))
            },
            Setting(
                rawValue: "send-window", valueName: "HH:MM-HH:MM[,...]", defaultValue: "", shownDefault: "none (any time)",
                help: "Send only within these ranges of local time, e.g. 22:00-06:00; outside them events are kept."
            ) { text, settings, context throws(ConfigurationError) in
                guard !text.isEmpty else {
                    settings.sendWindow = nil
                    return
                }
                switch SendWindow.parse(text) {
                case .success(let window): settings.sendWindow = window
                case .failure(let error): throw context.invalid(error.reason)
                }
            },
            Setting(
                rawValue: "max-event-bytes", valueName: "SIZE", defaultValue: "64KiB",
                help: "Largest accepted event (at most \(TrackAPI.maxRequestBytes) bytes)."
            ) { text, settings, context throws(ConfigurationError) in
                settings.maxEventBytes = try context.within(context.size(text), 1...DaemonSettings.batchMaxBytesLimit)
            },
            Setting(
                rawValue: "max-queue-bytes", valueName: "SIZE", defaultValue: "1GiB",
                help: "Most bytes the queue may hold on disk."
            ) { text, settings, context throws(ConfigurationError) in
                settings.maxQueueBytes = try context.positive(context.size(text))
            },
            Setting(
                rawValue: "max-event-age", valueName: "DURATION", defaultValue: "30d",
                help: "Events still queued after this long are dropped."
            ) { text, settings, context throws(ConfigurationError) in
                settings.maxEventAge = try context.positive(context.duration(text))
            },
            Setting(
                rawValue: "clock-sync-wait", valueName: "DURATION", defaultValue: "10m",
                help: "How long events stamped while the clock is certainly wrong wait for it to be set (0: no wait)."
            ) { text, settings, context throws(ConfigurationError) in
                settings.clockSyncWait = text == "0" ? .zero : try context.duration(text)
            },
            Setting(
                rawValue: "clock-annotation", valueName: "true|false", defaultValue: "true",
                help: "Send each event with context.trackq: the clock's state, when it was accepted and sent."
            ) { text, settings, context throws(ConfigurationError) in settings.clockAnnotation = try context.boolean(text) },
            Setting(
                rawValue: "event-ids", valueName: "true|false", defaultValue: "true",
                help: "Send each event with context.trackq.event_id (a UUIDv7 fixed when accepted) and each request "
                    + "with Idempotency-Key, the same on every retry, so the API can drop duplicates."
            ) { text, settings, context throws(ConfigurationError) in settings.eventIDs = try context.boolean(text) },
            Setting(
                rawValue: "max-dead-letters", valueName: "N", defaultValue: String(Defaults.maxDeadLetters),
                help: "Most dead letters kept; the oldest beyond it are dropped and counted (1 to 10000000)."
            ) { text, settings, context throws(ConfigurationError) in
                settings.maxDeadLetters = try context.within(context.integer(text), 1...10_000_000)
            },
            Setting(
                rawValue: "durability", valueName: "full|normal", defaultValue: "full",
                help: "full: acknowledge events only once on disk; normal: faster, may lose the latest events on power loss."
            ) { text, settings, context throws(ConfigurationError) in
                settings.durability = try context.choice(text, Durability.allCases)
            },
            Setting(
                rawValue: "socket-mode", valueName: "OCTAL", defaultValue: "0660",
                help: "Permission bits of the socket, in octal."
            ) { text, settings, context throws(ConfigurationError) in settings.socketMode = try context.octalMode(text) },
            Setting(
                rawValue: "socket-group", valueName: "NAME", defaultValue: "", shownDefault: "none (the daemon's group)",
                help: "Group that owns the socket (default: the daemon's group)."
            ) { text, settings, _ in settings.socketGroup = text.isEmpty ? nil : text },
            Setting(
                rawValue: "alert-command", valueName: "CMD", defaultValue: "", shownDefault: "none",
                help: "Shell command run when the daemon raises an alert."
            ) { text, settings, _ in settings.alertCommand = text.isEmpty ? nil : text },
            Setting(
                rawValue: "log-level", valueName: "LEVEL", defaultValue: "info",
                help: "One of trace, debug, info, notice, warning, error, critical."
            ) { text, settings, context throws(ConfigurationError) in
                let level = text.lowercased()
                guard DaemonSettings.logLevels.contains(level) else {
                    throw context.invalid("expected one of " + DaemonSettings.logLevels.joined(separator: ", "))
                }
                settings.logLevel = level
            },
            Setting(
                rawValue: "metrics-address", valueName: "HOST:PORT", defaultValue: "", shownDefault: "none",
                help: "Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464)."
            ) { text, settings, context throws(ConfigurationError) in
                settings.metricsAddress = try context.hostAndPort(text, example: "127.0.0.1:9464")
            },
            Setting(
                rawValue: "http-address", valueName: "HOST:PORT", defaultValue: "", shownDefault: "none",
                help: "Also serve the HTTP face (POST /api/track, GET /status, GET /metrics) on TCP at HOST:PORT; "
                    + "HOST must be a loopback address unless --http-allow-remote."
            ) { text, settings, context throws(ConfigurationError) in
                settings.httpAddress = try context.hostAndPort(text, example: "127.0.0.1:8090")
            },
            Setting(
                rawValue: "http-allow-remote", valueName: "true|false", defaultValue: "false",
                help: "Let --http-address listen beyond this host (give --http-token-file too)."
            ) { text, settings, context throws(ConfigurationError) in settings.httpAllowRemote = try context.boolean(text) },
            Setting(
                rawValue: "http-token-file", valueName: "PATH", defaultValue: "", shownDefault: "none",
                help: "Requests to --http-address must carry Authorization: Bearer <the token in this file>."
            ) { text, settings, _ in settings.httpTokenFile = text.isEmpty ? nil : text },
        ]

        /// A value being applied, with what is needed for messages.
        package struct Context {
            package var setting: Setting
            package var source: Source
            package var text: String

            /// `invalid value "abc" for --batch-linger (TRACKQ_BATCH_LINGER): <reason>`.
            package func invalid(_ reason: String) -> ConfigurationError {
                var shown = String(reflecting: text)
                if shown.count > 120 { shown = String(shown.prefix(117)) + "...\"" }
                return ConfigurationError("\(source.prefix)invalid value \(shown) for \(setting.label): \(reason)")
            }

            /// `--batch-max-events (TRACKQ_BATCH_MAX_EVENTS) <rule>`.
            package func violation(_ rule: String) -> ConfigurationError {
                ConfigurationError("\(source.prefix)\(setting.label) \(rule)")
            }

            package func duration(_ text: String) throws(ConfigurationError) -> Duration {
                do { return try DurationParser.parse(text) } catch { throw invalid(error.message) }
            }

            package func size(_ text: String) throws(ConfigurationError) -> Int {
                do { return try ByteSize.parse(text) } catch { throw invalid(error.message) }
            }

            /// A plain decimal integer.
            package func integer(_ text: String) throws(ConfigurationError) -> Int {
                guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                    throw invalid("expected a whole number")
                }
                guard let value = Int(text) else { throw invalid("number is too large") }
                return value
            }

            package func within(_ value: Int, _ range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
                guard range.contains(value) else {
                    throw violation("must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
                }
                return value
            }

            package func atMost(_ value: Int, _ limit: Int) throws(ConfigurationError) -> Int {
                guard value <= limit else { throw violation("must be at most \(limit), got \(value)") }
                return value
            }

            package func positive(_ value: Int) throws(ConfigurationError) -> Int {
                guard value > 0 else { throw violation("must be greater than 0, got \(value)") }
                return value
            }

            package func positive(_ value: Duration) throws(ConfigurationError) -> Duration {
                guard value > .zero else {
                    throw violation("must be greater than 0, got \(DurationParser.format(value))")
                }
                return value
            }

            /// `HOST:PORT`, or nil for an empty value (no listener).
            package func hostAndPort(_ text: String, example: String) throws(ConfigurationError) -> HostAndPort? {
                guard !text.isEmpty else { return nil }
                guard let address = HostAndPort(text) else { throw invalid("expected HOST:PORT, like \(example)") }
                return address
            }

            /// `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`), case-insensitively.
            package func boolean(_ text: String) throws(ConfigurationError) -> Bool {
                switch text.lowercased() {
                case "true", "yes", "on", "1": return true
                case "false", "no", "off", "0": return false
                default: throw invalid("expected true or false")
                }
            }

            /// One of an enum's raw values, case-insensitively.
            package func choice<Choice: RawRepresentable & CaseIterable>(_ text: String, _ choices: [Choice]) throws(ConfigurationError)
                -> Choice
            where Choice.RawValue == String {
                guard let match = choices.first(where: { $0.rawValue == text.lowercased() }) else {
                    throw invalid("expected one of " + choices.map(\.rawValue).joined(separator: ", "))
                }
                return match
            }

            /// An http or https URL with a host.
            package func url(_ text: String) throws(ConfigurationError) -> String {
                let expectation = "expected an http or https URL with a host, like https://example.com/api/track"
                guard let components = URLComponents(string: text),
                    let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
                    let host = components.host, !host.isEmpty
                else { throw invalid(expectation) }
                return text
            }

            /// Permission bits in octal (`0660`, `660` or `0o660`), at most `0777`.
            package func octalMode(_ text: String) throws(ConfigurationError) -> UInt32 {
                let digits = text.hasPrefix("0o") ? text.dropFirst(2) : Substring(text)
                guard !digits.isEmpty, digits.count <= 12,
                    let value = UInt32(digits, radix: 8), digits.allSatisfy({ $0.isASCII && $0.isNumber })
                else { throw invalid("expected permission bits in octal, like 0660") }
                guard value <= 0o777 else {
                    throw violation("must be at most 0777, got 0\(String(value, radix: 8))")
                }
                return value
            }
        }
    }
}

/// `HOST:PORT`, as for `--metrics-address` (`[::1]:9464` for IPv6).
public struct HostAndPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(" ") else { return nil }
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Whether the host is this machine only: `localhost`, 127.0.0.0/8 or `::1`.
    public var isLoopback: Bool {
        if host.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { bytes in bytes.dropLast().allSatisfy { $0 == 0 } && bytes.last == 1 }
        }
        return false
    }
}

extension DaemonSettings {
    /// `trackq daemon --help`'s list of settings, from the table: each flag with its value,
    /// environment variable, default and help.
    public static var helpText: String {
        (locationCatalog + catalog).map { info in
            "  --\(info.flag) \(info.valueName)\n      \(info.help)\n      env \(info.environment); default: \(info.defaultText)"
        }.joined(separator: "\n")
    }

    /// Settings that may be given as a bare flag, meaning `true`.
    package static let booleanFlags: Set<String> = ["http-allow-remote", "ca-only"]

    /// Command-line arguments as `--name value` or `--name=value` pairs (a later one wins), keyed by the name
    /// without `--`, for ``resolve(flags:environment:userID:readFile:fileExists:)``, which
    /// refuses names it does not know.
    public static func parseFlags(_ arguments: [String]) throws(ConfigurationError) -> [String: String] {
        var flags: [String: String] = [:]
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw ConfigurationError("unexpected argument \(String(reflecting: argument)); settings are --name value")
            }
            let name: String
            let value: String
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[argument.index(argument.startIndex, offsetBy: 2)..<equals])
                value = String(argument[argument.index(after: equals)...])
            } else {
                name = String(argument.dropFirst(2))
                if booleanFlags.contains(name), rest.first.map({ $0.hasPrefix("--") }) ?? true {
                    value = "true"  // `--http-allow-remote` alone
                } else {
                    guard let next = rest.popFirst() else { throw ConfigurationError("--\(name) needs a value") }
                    value = next
                }
            }
            flags[name] = value  // the last one wins, as with any other option
        }
        return flags
    }
}
