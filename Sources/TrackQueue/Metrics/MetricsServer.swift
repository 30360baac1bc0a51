import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// An opt-in HTTP listener serving `GET /metrics` in Prometheus text format: the process's
/// own metrics from the registry, and the database's from a fresh ``StatusReport``.
final class MetricsServer: Sendable {
    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    /// Binds `host:port` (e.g. `127.0.0.1:9464`).
    static func start(
        host: String, port: Int, registry: PrometheusCollectorRegistry, database: String,
        group: any EventLoopGroup
    ) async throws -> MetricsServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry, database: database))
                }
            }
            .bind(host: host, port: port).get()
        return MetricsServer(channel: channel)
    }

    var port: Int? { channel.localAddress?.port }

    func stop() async {
        try? await channel.close()
    }
}

private final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let database: String
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, database: String) {
        self.registry = registry
        self.database = database
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
        let status: HTTPResponseStatus
        var body: [UInt8]
        if head.method == .GET && (head.uri == "/metrics" || head.uri.hasPrefix("/metrics?")) {
            status = .ok
            body = []
            registry.emit(into: &body)
            if let report = try? StatusReader.read(database: database) {
                body += Array(report.prometheus(nowMillis: SystemClock.wallMillis()).utf8)
            }
        } else {
            status = .notFound
            body = Array("try /metrics\n".utf8)
        }
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
