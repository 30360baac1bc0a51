import CoreMetrics
import Logging
import NIOCore
import Prometheus
import NIOPosix
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The daemon: the store, the group-commit writer and the socket server, wired in
/// dependency order and torn down in reverse.
///
/// Run it in a `ServiceGroup`; on graceful shutdown (SIGTERM/SIGINT) it stops accepting,
/// answers every line already read, commits, checkpoints and returns.
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

    /// - Parameters:
    ///   - environment: the process environment, for systemd's variables.
    ///   - onReady: called once the database is open and the socket listens.
    ///   - randomSource: makes the generator for backoff jitter (tests pass a seeded one).
    public init(
        settings: DaemonSettings,
        environment: [String: String],
        logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onReady: @escaping @Sendable () -> Void = {},
        randomSource: @escaping @Sendable () -> any RandomNumberGenerator = { SystemRandomNumberGenerator() }
    ) {
        self.randomSource = randomSource
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
        let store = try QueueStore(path: paths.database, durability: settings.durability, bootID: SystemClock.bootID)
        try store.recordStart(pid: getpid(), version: TrackQueue.version, atMillis: SystemClock.wallMillis())
        logger.info("database open", metadata: [
            "database.path": "\(paths.database)",
            "queue.pending": "\(store.counters.pendingEvents)",
            "durability": "\(settings.durability.rawValue)",
        ])

        let bootRow = store.bootRow
        let wake = WakeSignal()
        let registry = settings.metricsAddress.map { _ in PrometheusCollectorRegistry() }
        let metrics = DaemonMetrics(
            factory: registry.map { PrometheusMetricsFactory(registry: $0) } ?? NOOPMetricsHandler.instance)
        let writer = GroupCommitWriter(
            store: store, maxQueueBytes: settings.maxQueueBytes, logger: logger, metrics: metrics
        ) {
            wake.signal(.newEvents)
        }
        writer.start()

        let server: IngestServer
        do {
            server = try await IngestServer.start(
                options: .init(
                    socketPath: paths.socket,
                    socketMode: settings.socketMode,
                    socketGroup: settings.socketGroup,
                    maxEventBytes: settings.maxEventBytes,
                    inheritedSocket: SocketActivation.listeningSocket(environment: environment)),
                writer: writer, group: eventLoopGroup, logger: logger)
        } catch {
            writer.stop()
            throw error
        }

        var metricsServer: MetricsServer?
        if let address = settings.metricsAddress, let registry {
            do {
                metricsServer = try await MetricsServer.start(
                    host: address.host, port: address.port, registry: registry, database: paths.database,
                    group: eventLoopGroup)
                logger.info("serving metrics", metadata: ["metrics.address": "\(address)"])
            } catch {
                await server.drain()
                writer.stop()
                throw StoreError.io("--metrics-address \(address): cannot listen: \(error)")
            }
        }
        let notifier = SystemdNotifier(environment: environment)
        let tokens = TokenSource(environment: environment, file: settings.tokenFile)
        if tokens.read().token == nil {
            logger.warning("no API token: set TRACKQ_TOKEN or --token-file; the API will refuse events until then")
        }
        let sender = HTTPSender(
            options: .init(endpoint: settings.endpoint, authHeader: settings.authHeader, requestTimeout: settings.requestTimeout),
            eventLoopGroup: eventLoopGroup)
        let delivery = DeliveryLoop(
            settings: settings, writer: writer, sender: sender, tokens: tokens, wake: wake, bootRow: bootRow,
            alertCommand: settings.alertCommand.map { AlertCommand(command: $0, environment: environment, logger: logger) },
            notifier: notifier, metrics: metrics, logger: logger)
        let random = randomSource
        let deliveryTask = Task {
            var generator = random()
            await delivery.run(random: &generator)
        }

        notifier.notify("READY=1\nSTATUS=accepting events")
        onReady()
        logger.notice("ready", metadata: [
            "pid": "\(getpid())", "version": "\(TrackQueue.version)", "endpoint": "\(settings.endpoint)",
        ])

        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup) {
                    wake.signal(.reload)
                }
            }
            if let interval = SocketActivation.watchdogInterval(environment: environment) {
                tasks.addTask {
                    while !Task.isCancelled {
                        notifier.notify("WATCHDOG=1")
                        try? await Task.sleep(for: interval / 2)
                    }
                }
            }
            // Returns on graceful shutdown, or throws if the group is cancelled outright.
            try? await gracefulShutdown()
            tasks.cancelAll()
        }

        logger.notice("stopping: answering lines already read")
        notifier.notify("STOPPING=1\nSTATUS=stopping")
        wake.signal(.shutdown)
        async let drained: Void = server.drain()
        // The request in flight gets a grace to finish and record its answer.
        let grace = Task {
            try await Task.sleep(for: .seconds(5))
            deliveryTask.cancel()
        }
        await deliveryTask.value
        grace.cancel()
        await sender.shutdown()
        await metricsServer?.stop()
        await drained
        _ = try? await writer.perform { store in
            try store.recordStop(atMillis: SystemClock.wallMillis())
            store.checkpoint()
        }
        writer.stop()
        withExtendedLifetime(lock) {}
        logger.notice("stopped")
    }
}
