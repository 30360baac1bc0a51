import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

// MARK: - What the server saw and what it answers

/// One request the server received.
struct ReceivedRequest: Sendable {
    var method: String
    var uri: String
    /// Every header as received, in order (names as the client spelled them).
    var headers: [(String, String)]
    var body: [UInt8]
    /// When the end of the request (its last body byte) arrived.
    var receivedAt: ContinuousClock.Instant

    /// The first value of the header `name`, compared case-insensitively.
    func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.0.lowercased() == wanted }?.1
    }

    /// The body parsed with `JSONSerialization`, when it is a JSON array of objects; else nil.
    var jsonArray: [[String: Any]]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [[String: Any]]
    }

    /// The body as UTF-8 text (invalid bytes repaired), for messages and simple checks.
    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// What to answer one request with. The server always sets `Content-Length` itself.
struct ScriptedResponse: Sendable {
    var status: Int
    /// Extra headers, e.g. `("Retry-After", "2")`. `("Connection", "close")` makes the
    /// server close the connection after this response.
    var headers: [(String, String)] = []
    var body: String = ""

    /// 200 with a small JSON body.
    static func ok(_ body: String = #"{"ok":true}"#) -> ScriptedResponse {
        ScriptedResponse(status: 200, headers: [("Content-Type", "application/json")], body: body)
    }

    /// Any status, with an optional body and headers.
    static func status(_ code: Int, body: String = "", headers: [(String, String)] = []) -> ScriptedResponse {
        ScriptedResponse(status: code, headers: headers, body: body)
    }
}

// MARK: - The server

/// A real HTTP/1.1 server on 127.0.0.1 (swift-nio: ServerBootstrap + configureHTTPServerPipeline),
/// scripted per request, recording every request it received.
///
/// It runs on its own single-threaded event loop group, so `respond` calls are strictly
/// sequential, in arrival order, even across connections. Keep-alive and back-to-back
/// (pipelined) requests are honored; a connection is closed after a response only when the
/// client asked for it (`Connection: close` / HTTP/1.0) or the script's headers say so.
final class TestHTTPServer: Sendable {
    /// Decides the answer to a request, given the request and its 0-based arrival index.
    typealias Responder = @Sendable (ReceivedRequest, Int) -> ScriptedResponse

    /// Why `start` failed, besides the socket errors NIO throws.
    enum StartError: Error {
        case noLocalAddress
    }

    /// The mutable part, shared between the test and the event loop.
    fileprivate struct State: Sendable {
        var requests: [ReceivedRequest] = []
        var respond: Responder
        /// Open client connections, so `stop()` can close them.
        var connections: [ObjectIdentifier: Channel] = [:]
        var stopped = false
    }

    private let group: MultiThreadedEventLoopGroup
    private let listener: Channel
    private let state: NIOLockedValueBox<State>

    /// The bound TCP port.
    let port: Int

    private init(group: MultiThreadedEventLoopGroup, listener: Channel, state: NIOLockedValueBox<State>, port: Int) {
        self.group = group
        self.listener = listener
        self.state = state
        self.port = port
    }

    /// Starts listening on 127.0.0.1:`port` (0 = any free port). Throws if the port cannot be bound.
    ///
    /// `respond` is called once per request, in arrival order, with the request and its
    /// 0-based index; it runs on the event loop, so keep it quick and non-blocking (it may
    /// read and update state in a lock, and may read this server's `requests`).
    ///
    /// With `tls`, it speaks HTTPS (swift-nio-ssl's server handler in front of HTTP).
    static func start(
        port: Int = 0, tls: TLSConfiguration? = nil, respond: @escaping @Sendable (ReceivedRequest, Int) -> ScriptedResponse
    ) async throws -> TestHTTPServer {
        let context = try tls.map { try NIOSSLContext(configuration: $0) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let state = NIOLockedValueBox(State(respond: respond))
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    }
                    try Self.setUpConnection(channel, state: state)
                }
            }
        do {
            let listener = try await bootstrap.bind(host: "127.0.0.1", port: port).get()
            guard let boundPort = listener.localAddress?.port else {
                try? await listener.close()
                throw StartError.noLocalAddress
            }
            return TestHTTPServer(group: group, listener: listener, state: state, port: boundPort)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Runs on the event loop for each accepted connection.
    private static func setUpConnection(_ channel: Channel, state: NIOLockedValueBox<State>) throws {
        let accepted = state.withLockedValue { state -> Bool in
            guard !state.stopped else { return false }
            state.connections[ObjectIdentifier(channel)] = channel
            return true
        }
        guard accepted else {
            // Accepted while stopping: drop it at once, like a refused connection would be.
            Self.reset(channel)
            return
        }
        channel.closeFuture.whenComplete { _ in
            state.withLockedValue { _ = $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
        }
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
        try channel.pipeline.syncOperations.addHandler(ScriptedRequestHandler(state: state))
    }

    /// "http://127.0.0.1:PORT/api/track"
    var url: String { "http://127.0.0.1:\(port)/api/track" }

    /// "https://127.0.0.1:PORT/api/track", for a server started with `tls`.
    var httpsURL: String { "https://127.0.0.1:\(port)/api/track" }

    /// "http://127.0.0.1:PORT"
    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// All requests received so far, in arrival order (a snapshot).
    var requests: [ReceivedRequest] { state.withLockedValue { $0.requests } }

    /// How many requests have been received so far.
    var requestCount: Int { state.withLockedValue { $0.requests.count } }

    /// How many client connections are open right now.
    var openConnectionCount: Int { state.withLockedValue { $0.connections.count } }

    /// Changes the script for future requests (the index keeps counting from where it is).
    func setResponder(_ respond: @escaping @Sendable (ReceivedRequest, Int) -> ScriptedResponse) {
        state.withLockedValue { $0.respond = respond }
    }

    /// Closes the listening socket and then every open connection with a reset (SO_LINGER 0),
    /// and waits for that; afterwards connects to `port` are refused. Safe to call twice.
    func stop() async throws {
        let connections = state.withLockedValue { state -> [Channel]? in
            guard !state.stopped else { return nil }
            state.stopped = true
            return Array(state.connections.values)
        }
        guard let connections else { return }
        try? await listener.close()
        for connection in connections {
            Self.reset(connection)
        }
        for connection in connections {
            try? await connection.closeFuture.get()
        }
        try await group.shutdownGracefully()
    }

    deinit {
        // A test that forgot stop(): release the socket and the thread without blocking.
        let wasStopped = state.withLockedValue { state -> Bool in
            defer { state.stopped = true }
            return state.stopped
        }
        if !wasStopped {
            listener.close(promise: nil)
            group.shutdownGracefully { _ in }
        }
    }

    /// Closes `channel` so that the peer sees a reset rather than an orderly FIN.
    private static func reset(_ channel: Channel) {
        channel.eventLoop.execute {
            if let options = channel as? SocketOptionProvider {
                options.setSoLinger(NIOLinger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
                    channel.close(promise: nil)
                }
            } else {
                channel.close(promise: nil)
            }
        }
    }
}

// MARK: - Per-connection handler

/// Collects one request at a time (head, body chunks into one ByteBuffer, end), records it,
/// asks the script for the answer, and writes it with Content-Length.
/// Lives on its channel's event loop only; `HTTPServerPipelineHandler` in front of it holds
/// back pipelined requests until the previous response has been written.
private final class ScriptedRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: NIOLockedValueBox<TestHTTPServer.State>
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(state: NIOLockedValueBox<TestHTTPServer.State>) {
        self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = context.channel.allocator.buffer(capacity: 0)
            if head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                let interim = HTTPResponseHead(version: head.version, status: .continue)
                context.writeAndFlush(wrapOutboundOut(.head(interim)), promise: nil)
            }
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            self.head = nil
            let request = ReceivedRequest(
                method: head.method.rawValue,
                uri: head.uri,
                headers: head.headers.map { ($0.name, $0.value) },
                body: body.readBytes(length: body.readableBytes) ?? [],
                receivedAt: .now
            )
            body = ByteBuffer()
            let (index, respond) = state.withLockedValue { state in
                state.requests.append(request)
                return (state.requests.count - 1, state.respond)
            }
            // Called outside our lock, so the script may read the server's `requests`.
            let response = respond(request, index)
            write(response, to: head, context: context)
        }
    }

    private func write(_ response: ScriptedResponse, to request: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = HTTPHeaders(response.headers)
        let bytes = Array(response.body.utf8)
        headers.replaceOrAdd(name: "Content-Length", value: String(bytes.count))
        let scriptCloses = headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
        let keepAlive = request.isKeepAlive && !scriptCloses
        if !keepAlive, !scriptCloses {
            headers.replaceOrAdd(name: "Connection", value: "close")
        }
        let head = HTTPResponseHead(
            version: request.version,
            status: HTTPResponseStatus(statusCode: response.status),
            headers: headers
        )
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !bytes.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

// MARK: - Free ports

/// A free TCP port on 127.0.0.1 with nothing listening on it, for "server down, then up on
/// the same port" tests and for daemons that must be given a port. Another process could
/// still take it in between, but not another test of ours.
func unusedLocalPort() throws -> Int {
    // Below Linux's ephemeral range (32768 and up), where every `bind(port: 0)` of the other
    // tests running in parallel lands: a port from there could be handed to one of them
    // between this call and the test's own bind.
    for _ in 0..<200 {
        let port = Int.random(in: 20_000..<32_000)
        if canBind(port: port) { return port }
    }
    throw POSIXError(.EADDRINUSE)
}

/// Whether 127.0.0.1:`port` can be bound now (and nothing listens there).
private func canBind(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}
