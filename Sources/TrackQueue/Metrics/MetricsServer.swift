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
    static func bind(
        host: String, port: Int, registry: PrometheusCollectorRegistry, store: StoreReader,
        group: any EventLoopGroup
    ) async throws -> MetricsServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry, store: store))
                }
            }
            .bind(host: host, port: port).get()
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

private final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let store: StoreReader
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, store: StoreReader) {
        self.registry = registry
        self.store = store
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard head.method == .GET && (head.uri == "/metrics" || head.uri.hasPrefix("/metrics?")) else {
            return write(status: .notFound, body: Array("try /metrics\n".utf8), for: head, context: context)
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        MetricsServer.text(registry: registry, store: store, on: context.eventLoop).whenSuccess { text in
            let (handler, context) = loopBound.value
            handler.write(status: .ok, body: Array(text.utf8), for: head, context: context)
        }
    }

    private func write(status: HTTPResponseStatus, body: [UInt8], for head: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.count))
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let done = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        }
    }
}
