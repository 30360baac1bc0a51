import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TrackQueue

struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the queue daemon in the foreground.",
        usage: "trackq daemon [--SETTING VALUE | --SETTING=VALUE]...",
        discussion: """
            Listens on the socket, commits every accepted event to the database before \
            answering, and drains the queue to the endpoint. Every setting can also be given \
            in the environment (TRACKQ_*) or a config file (--config); a flag wins over the \
            environment, which wins over the file. The token is read from TRACKQ_TOKEN or \
            --token-file, never from the command line.

            SIGTERM or SIGINT: stop accepting, answer the lines already read, exit 0.

            SETTINGS (flag, environment variable, default):
            """ + DaemonSettings.helpText)

    /// Every `--setting value` pair: the settings table, not ArgumentParser, knows them.
    @Argument(parsing: .allUnrecognized, help: .hidden)
    var settingArguments: [String] = []

    func run() async throws {
        // Before anything else: a SIGHUP that comes before the reload handler is installed
        // must not kill the daemon with a clean status (systemd would not restart it).
        signal(SIGHUP, SIG_IGN)
        // Files the daemon creates (database, WAL, lock) are readable by its user only; the
        // socket's mode is set explicitly, directories are made 0750.
        umask(0o077)
        // systemd (and most shells) start services with a soft limit of 1024 open files, below
        // the 1024 connections the daemon admits plus its own files: raise it to the hard limit,
        // as systemd.exec(5) advises for programs that do not use select().
        #if canImport(Glibc)
        var files = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        if getrlimit(resource, &files) == 0 && files.rlim_cur < min(files.rlim_max, 65536) {
            files.rlim_cur = min(files.rlim_max, 65536)
            _ = setrlimit(resource, &files)
        }
        #endif
        let environment = ProcessInfo.processInfo.environment
        let settings: DaemonSettings
        do {
            settings = try DaemonSettings.resolve(
                flags: DaemonSettings.parseFlags(settingArguments), environment: environment)
        } catch {
            FileHandle.standardError.write(Data("trackq: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
        if let problem = settings.tokenProblem(environment: environment) ?? settings.httpTokenProblem() {
            FileHandle.standardError.write(Data("trackq: \(problem)\n".utf8))
            throw ExitCode(2)
        }
        // The trust files, checked before anything starts (the daemon reads them again on its
        // blocking pool, and on SIGHUP).
        do {
            _ = try TLSTrust.load(TLSTrust.Files(settings))
        } catch {
            FileHandle.standardError.write(Data("trackq: \(error)\n".utf8))
            throw ExitCode(2)
        }

        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        // Under systemd, stderr is the journal: each line carries its priority instead of a
        // time stamp, so `journalctl -p warning` works.
        let journal = JournalLogHandler.isJournal(environment: environment)
        LoggingSystem.bootstrap { label in
            if journal { return JournalLogHandler(logLevel: level) }
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
