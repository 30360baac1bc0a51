import CoreMetrics
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The daemon: opens the database and binds the sockets, then runs its services in one
/// `ServiceGroup`, in dependency order, and stops them in reverse.
///
/// The services, as started: the store's writer, delivery, the ingest socket, the metrics
/// listener (when `--metrics-address` is set), systemd's watchdog and the SIGHUP listener.
/// On graceful shutdown (SIGTERM/SIGINT) they stop from the last: systemd hears
/// `STOPPING=1`, metrics close, the socket stops accepting and answers every line already
/// read, the request in flight gets its grace, and the writer records the stop,
/// checkpoints and ends.
///
/// Run it in a `ServiceGroup`:
///
/// ```swift
/// let daemon = Daemon(settings: settings, environment: env, logger: logger)
/// let group = ServiceGroup(configuration: .init(services: [daemon],
///     gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
/// try await group.run()
/// ```
public struct Daemon: Service {
    public let settings: DaemonSettings
    public let environment: [String: String]
    public let logger: Logger
    private let eventLoopGroup: any EventLoopGroup
    private let onReady: @Sendable () -> Void
    private let randomSource: @Sendable () -> any RandomNumberGenerator
    private let clock: HostClock

    /// - Parameters:
    ///   - environment: the process environment, for systemd's variables.
    ///   - onReady: called once the database is open and the socket listens.
    ///   - randomSource: makes the generator for backoff jitter (tests pass a seeded one).
    ///   - clock: the host's clocks (tests pass their own readings).
    public init(
        settings: DaemonSettings,
        environment: [String: String],
        logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onReady: @escaping @Sendable () -> Void = {},
        randomSource: @escaping @Sendable () -> any RandomNumberGenerator = { SystemRandomNumberGenerator() },
        clock: HostClock = .system
    ) {
        self.randomSource = randomSource
        self.clock = clock
        self.settings = settings
        self.environment = environment
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
        self.onReady = onReady
    }

    public func run() async throws {
        let paths = settings.paths
        try FileSystem.createParentDirectories(of: paths.database)
        let lock = try DatabaseLock(database: paths.database)
        let wake = WakeSignal()
        // Always kept: the socket's `GET /metrics` serves it even without --metrics-address.
        let registry = PrometheusCollectorRegistry()
        let metrics = DaemonMetrics(factory: PrometheusMetricsFactory(registry: registry))
        let (writer, opened) = try await StoreWriter.start(
            .init(
                path: paths.database, durability: settings.durability, maxQueueBytes: settings.maxQueueBytes,
                maxDeadLetters: settings.maxDeadLetters, clock: clock),
            logger: logger, metrics: metrics
        ) {
            wake.signal(.newEvents)
        }
        logger.info(
            "database open",
            metadata: [
                "database.path": "\(paths.database)",
                "queue.pending": "\(opened.pendingEvents)",
                "durability": "\(settings.durability.rawValue)",
                "clock.state": "\(opened.clockState.rawValue)",
            ])
        if clock.bootID == nil {
            logger.warning(
                "cannot read the boot id (/proc/sys/kernel/random/boot_id); event ages across restarts are measured on the wall clock")
        }
        let pool = BlockingPool()
        let notifier = SystemdNotifier(environment: environment)

        let alertCommand = settings.alertCommand.map { AlertCommand(command: $0, environment: environment, logger: logger) }
        let services: [any Service]
        do {
            services = try await makeServices(
                writer: writer, opened: opened, pool: pool, wake: wake, registry: registry, metrics: metrics, notifier: notifier,
                alertCommand: alertCommand)
        } catch {
            await writer.stop()
            await pool.shutdown()
            throw error
        }

        // A damaged file found while running: say so to systemd and the alert command (the
        // writer has logged it). One found at the start is said once the daemon is ready.
        let storageAlert = { @Sendable (record: StorageRecovery.Record) in
            let text = StorageRecovery.describe(record)
            notifier.status(text)
            guard let alertCommand else { return }
            let alert = DeliveryAlert(kind: .storage, status: 0, message: text)
            Task { _ = try? await pool.run { alertCommand.run(raised: true, alert: alert) } }
        }
        writer.onRecovery(storageAlert)
        notifier.notify("READY=1\nSTATUS=accepting events")
        if let recovery = opened.recovery { storageAlert(recovery) }
        onReady()
        logger.notice(
            "ready",
            metadata: [
                "pid": "\(getpid())", "version": "\(TrackQueue.version)", "endpoint": "\(settings.endpoint)",
                "proxy": "\(settings.proxyRoute.map(\.description) ?? "none")",
            ])

        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
                logger: logger))
        defer { withExtendedLifetime(lock) {} }
        do {
            try await group.run()
        } catch {
            await pool.shutdown()
            throw error
        }
        await pool.shutdown()
        logger.notice("stopped")
    }

    /// Binds the sockets and builds the services, in the order they start.
    private func makeServices(
        writer: StoreWriter, opened: StoreWriter.Opened, pool: BlockingPool, wake: WakeSignal,
        registry: PrometheusCollectorRegistry, metrics: DaemonMetrics, notifier: SystemdNotifier, alertCommand: AlertCommand?
    ) async throws -> [any Service] {
        let reader = StoreReader(path: settings.paths.database, pool: pool, clock: clock, writer: writer)
        let endpoint = settings.endpoint
        let http = HTTPFace.Setup(
            options: .init(
                trackPaths: HTTPFace.Options.trackPaths(endpoint: endpoint),
                connection: .init(
                    requestTimeout: TimeAmount(settings.httpRequestTimeout), idleTimeout: TimeAmount(settings.httpIdleTimeout))),
            status: { reader.status(on: $0, endpoint: endpoint).map { $0.json() } },
            prometheus: { MetricsServer.text(registry: registry, store: reader, on: $0) })
        let server = try await IngestServer.bind(
            options: .init(
                socketPath: settings.paths.socket,
                socketMode: settings.socketMode,
                socketGroup: settings.socketGroup,
                maxEventBytes: settings.maxEventBytes,
                maxConnections: settings.maxConnections,
                inheritedSocket: SocketActivation.listeningSocket(environment: environment), clock: clock,
                eventSendOverhead: EventRewriter.noteBytes(annotate: settings.clockAnnotation, eventIDs: settings.eventIDs)),
            writer: writer, group: eventLoopGroup, logger: logger, metrics: metrics, http: http)

        var httpListener: HTTPListener?
        if let address = settings.httpAddress, let face = server.face {
            var tcpFace = face
            do {
                tcpFace.options.bearerToken = try settings.httpBearerToken()
            } catch {
                await server.drain()
                throw error
            }
            do {
                httpListener = try await HTTPListener.bind(
                    address, face: tcpFace, connections: server.connections, group: eventLoopGroup)
                logger.info(
                    "serving HTTP on TCP",
                    metadata: [
                        "http.address": "\(address)", "http.token": "\(tcpFace.options.bearerToken == nil ? "none" : "required")",
                    ])
            } catch {
                await server.drain()
                throw SocketError("--http-address \(address): cannot listen: \(error)")
            }
        }

        var metricsServer: MetricsServer?
        if let address = settings.metricsAddress {
            do {
                metricsServer = try await MetricsServer.bind(
                    host: address.host, port: address.port, registry: registry, store: reader, group: eventLoopGroup)
                logger.info("serving metrics", metadata: ["metrics.address": "\(address)"])
            } catch {
                await server.drain()
                await httpListener?.close()
                throw SocketError("--metrics-address \(address): cannot listen: \(error)")
            }
        }

        let tokens = TokenSource(environment: environment, file: settings.tokenFile)
        if try await pool.run({ tokens.read().token }) == nil {  // a refused token stopped the start already
            logger.warning(
                """
                no API token: set TRACKQ_TOKEN or --token-file (the system service: write /etc/trackq/token, then \
                systemctl restart trackq); events are kept until the API takes them
                """)
        }
        let files = TLSTrust.Files(settings)
        let trust = try await pool.run { try TLSTrust.load(files) }
        let sender = HTTPSender(
            options: .init(
                endpoint: settings.endpoint, authHeader: settings.authHeader, requestTimeout: settings.requestTimeout,
                proxy: settings.proxyRoute, compression: settings.compression),
            trust: trust, eventLoopGroup: eventLoopGroup, logger: logger)
        let delivery = DeliveryLoop(
            .init(
                settings: settings, writer: writer, reader: reader, sender: sender, tokens: tokens, wake: wake,
                clock: clock, clockHistory: opened.clockHistory,
                alertCommand: alertCommand,
                notifier: notifier, metrics: metrics, pool: pool, logger: logger),
            clock: ContinuousClock(), randomSource: randomSource)

        var services: [any Service] = [StoreService(writer: writer), delivery, server]
        // After the socket, so stopped before it: the socket's drain then closes its connections.
        if let httpListener { services.append(httpListener) }
        if let metricsServer { services.append(metricsServer) }
        services.append(
            SystemdService(
                notifier: notifier, watchdogInterval: SocketActivation.watchdogInterval(environment: environment),
                writer: writer, logger: logger))
        services.append(ReloadService(wake: wake, notifier: notifier, logger: logger))
        services.append(
            ClockWatch(
                clock: clock, judge: opened.clockHistory.judge, writer: writer, wake: wake,
                checkEvery: settings.clockCheckInterval,
                start: (opened.clockReading, opened.clockState), logger: logger))
        return services
    }
}

/// Keeps the store's writer running until every other service has stopped, then records
/// the stop, checkpoints the WAL and ends the writer thread.
struct StoreService: Service {
    let writer: StoreWriter

    func run() async throws {
        try? await gracefulShutdown()
        await writer.stop()
    }
}

/// Pings systemd's watchdog while the daemon runs and its store's writer answers; tells
/// systemd and the log when the shutdown begins (it is the last service, so the first one
/// stopped).
struct SystemdService: Service {
    let notifier: SystemdNotifier
    let watchdogInterval: Duration?
    let writer: StoreWriter
    let logger: Logger

    func run() async throws {
        if let interval = watchdogInterval {
            try? await cancelWhenGracefulShutdown { [notifier, writer, logger] in
                notifier.notify("WATCHDOG=1")
                var ping = writer.ping()
                var silent = false
                while true {
                    try await Task.sleep(for: interval / 2)
                    if ping.answered {
                        notifier.notify("WATCHDOG=1")
                        ping = writer.ping()
                        silent = false
                    } else if !silent {
                        silent = true
                        logger.critical("the database writer does not answer; no longer pinging systemd's watchdog")
                    }
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        logger.notice("stopping: answering lines already read")
        notifier.notify("STOPPING=1\nSTATUS=stopping")
    }
}

/// SIGHUP: read the token again and retry delivery at once. systemd is told `RELOADING=1`
/// and then `READY=1` once delivery has been woken (it reads the token before its next try).
struct ReloadService: Service {
    let wake: WakeSignal
    let notifier: SystemdNotifier
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            notifier.reloading()
            logger.notice("reload: reading the token again and retrying delivery now")
            wake.signal(.reload)
            notifier.notify("READY=1")
        }
    }
}
