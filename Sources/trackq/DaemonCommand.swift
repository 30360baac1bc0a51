import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TrackQueue

struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the queue daemon in the foreground.",
        discussion: """
            Listens on the socket, commits every accepted event to the database before \
            answering, and drains the queue to the endpoint. Every setting can also be given \
            in the environment (TRACKQ_*) or a config file (--config); a flag wins over the \
            environment, which wins over the file. The token is read from TRACKQ_TOKEN or \
            --token-file, never from the command line.

            SIGTERM or SIGINT: stop accepting, answer the lines already read, exit 0.
            """)

    @Option(help: "Config file of `key = value` lines (env TRACKQ_CONFIG).") var config: String?
    @Option(help: "Database path (env TRACKQ_DATABASE).") var database: String?
    @Option(help: "Socket path (env TRACKQ_SOCKET).") var socket: String?
    @Option(help: "Track API URL (env TRACKQ_ENDPOINT).") var endpoint: String?
    @Option(help: "File holding the API token (env TRACKQ_TOKEN_FILE).") var tokenFile: String?
    @Option(help: "bearer or x-api-key (env TRACKQ_AUTH_HEADER).") var authHeader: String?
    @Option(help: "Most events per request, ≤ 1000 (env TRACKQ_BATCH_MAX_EVENTS).") var batchMaxEvents: String?
    @Option(help: "Most bytes per request, ≤ 2000000 (env TRACKQ_BATCH_MAX_BYTES).") var batchMaxBytes: String?
    @Option(help: "Wait this long for a fuller batch (env TRACKQ_BATCH_LINGER).") var batchLinger: String?
    @Option(help: "First retry delay (env TRACKQ_RETRY_INITIAL).") var retryInitial: String?
    @Option(help: "Longest retry delay (env TRACKQ_RETRY_MAX).") var retryMax: String?
    @Option(help: "HTTP request timeout (env TRACKQ_REQUEST_TIMEOUT).") var requestTimeout: String?
    @Option(help: "Largest event accepted (env TRACKQ_MAX_EVENT_BYTES).") var maxEventBytes: String?
    @Option(help: "Refuse new events past this queue size (env TRACKQ_MAX_QUEUE_BYTES).") var maxQueueBytes: String?
    @Option(help: "Dead-letter events older than this (env TRACKQ_MAX_EVENT_AGE).") var maxEventAge: String?
    @Option(help: "full (an ack survives power loss) or normal (env TRACKQ_DURABILITY).") var durability: String?
    @Option(help: "Socket file mode, octal (env TRACKQ_SOCKET_MODE).") var socketMode: String?
    @Option(help: "Socket file group (env TRACKQ_SOCKET_GROUP).") var socketGroup: String?
    @Option(help: "Run via /bin/sh -c when an alert is raised or cleared (env TRACKQ_ALERT_COMMAND).") var alertCommand: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical (env TRACKQ_LOG_LEVEL).") var logLevel: String?
    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (env TRACKQ_METRICS_ADDRESS).") var metricsAddress: String?

    /// The flags given, keyed by their names without `--`.
    private var flags: [String: String] {
        let all: [(String, String?)] = [
            ("config", config), ("database", database), ("socket", socket), ("endpoint", endpoint),
            ("token-file", tokenFile), ("auth-header", authHeader), ("batch-max-events", batchMaxEvents),
            ("batch-max-bytes", batchMaxBytes), ("batch-linger", batchLinger), ("retry-initial", retryInitial),
            ("retry-max", retryMax), ("request-timeout", requestTimeout), ("max-event-bytes", maxEventBytes),
            ("max-queue-bytes", maxQueueBytes), ("max-event-age", maxEventAge), ("durability", durability),
            ("socket-mode", socketMode), ("socket-group", socketGroup), ("alert-command", alertCommand),
            ("log-level", logLevel), ("metrics-address", metricsAddress),
        ]
        return Dictionary(uniqueKeysWithValues: all.compactMap { name, value in value.map { (name, $0) } })
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let settings: DaemonSettings
        do {
            settings = try DaemonSettings.resolve(flags: flags, environment: environment)
        } catch {
            FileHandle.standardError.write(Data("trackq: \(error.message)\n".utf8))
            throw ExitCode(2)
        }

        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "trackq")

        let daemon = Daemon(settings: settings, environment: environment, logger: logger)
        var configuration = ServiceGroupConfiguration(
            services: [.init(service: daemon, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger)
        // Below systemd's TimeoutStopSec (30 s): answering what was read and the request in
        // flight's 5 s grace fit well inside it, and a stuck stop still ends before SIGKILL.
        configuration.maximumGracefulShutdownDuration = .seconds(25)
        let group = ServiceGroup(configuration: configuration)
        do {
            try await group.run()
        } catch {
            logger.critical("cannot run: \(Self.describe(error))")
            throw ExitCode(1)
        }
    }

    /// The innermost error's description: ServiceGroup wraps what the daemon threw.
    private static func describe(_ error: any Error) -> String {
        if let groupError = error as? ServiceGroupError {
            return "\(groupError)"
        }
        return "\(error)"
    }
}
