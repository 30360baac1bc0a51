import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// An opt-in HTTP listener serving `GET /metrics` in Prometheus text format: the process's
/// own metrics from the registry, and the database's from a fresh ``StatusReport``, read
/// on the blocking pool so a scrape never stalls the event loop.
///
/// As a `Service` it serves until graceful shutdown, then closes the listener.
final class MetricsServer: Service {
    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    /// Binds `host:port` (e.g. `127.0.0.1:9464`).
    /// Serves `GET /metrics` through the HTTP face's handler (the one `/metrics` handler):
    /// a face with no event paths and no status.
    static func bind(
        host: String, port: Int, registry: PrometheusCollectorRegistry, store: StoreReader,
        group: any EventLoopGroup
    ) async throws -> MetricsServer {
        var options = HTTPFace.Options()
        options.trackPaths = []
        options.servesStatus = false
        let setup = HTTPFace.Setup(
            options: options, status: { $0.makeFailedFuture(StoreError.closed) },
            prometheus: { MetricsServer.text(registry: registry, store: store, on: $0) })
        let face = HTTPFace(
            setup, writer: NoEvents(), parser: EventParser(maxEventBytes: 1), budget: IngestBudget(), metrics: nil)
        let channel = try await Listener.bootstrap(group: group, connections: nil) {
            try face.configure($0)
        }.bind(host: host, port: port).get()
        return MetricsServer(channel: channel)
    }

    func run() async throws {
        try? await gracefulShutdown()
        try? await channel.close()
    }
}

extension MetricsServer {
    /// The Prometheus text of a scrape: the process's own metrics, then the database's.
    static func text(registry: PrometheusCollectorRegistry, store: StoreReader, on eventLoop: any EventLoop)
        -> EventLoopFuture<String>
    {
        var own: [UInt8] = []
        registry.emit(into: &own)
        let processMetrics = String(decoding: own, as: UTF8.self)
        return store.status(on: eventLoop).map { report in
            processMetrics + report.prometheus(nowMillis: SystemClock.wallMillis())
        }.recover { _ in processMetrics }
    }
}

/// The metrics listener takes no events: its face has no path that submits.
private final class NoEvents: IngestWriter {
    func submit(_ submission: IngestSubmission) {
        submission.completion(submission.refusingEvents(with: IngestError(.unavailable, "this listener takes no events")))
    }
}
