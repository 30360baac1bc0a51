import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import TrackQueueClock
import TrackQueueEvent
import TrackQueueMetrics
import TrackQueueSupport
import TrackQueueSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The Unix-domain socket apps write events to.
///
/// Binds the socket (or adopts one passed by systemd) and accepts up to `maxConnections`
/// clients. As a `Service` it serves until graceful shutdown, then ``drain(timeout:)``s:
/// stops accepting, answers every line already read, and waits for the connections to close.
package final class IngestServer: Service {
    package struct Options: Sendable {
        package var socketPath: String
        package var socketMode: UInt32
        package var socketGroup: String?
        package var maxEventBytes: Int
        package var maxLineBytes: Int = TrackAPI.maxRequestBytes
        package var maxConnections: Int = Defaults.maxConnections
        /// The most bytes of parsed events in flight to the writer, all connections together.
        package var maxBytesInFlight: Int = IngestBudget.defaultLimit
        /// A listening socket inherited from systemd socket activation, if any.
        package var inheritedSocket: Int32?
        /// Stamps the time each line was read.
        package var clock: HostClock = .system
        /// What delivery adds to each event, counted against `maxEventBytes`.
        package var eventSendOverhead: Int = 0

        /// Creates a value with every property given (or its default).
        package init(
            socketPath: String, socketMode: UInt32, socketGroup: String? = nil, maxEventBytes: Int,
            maxLineBytes: Int = TrackAPI.maxRequestBytes, maxConnections: Int = Defaults.maxConnections,
            maxBytesInFlight: Int = IngestBudget.defaultLimit, inheritedSocket: Int32? = nil, clock: HostClock = .system,
            eventSendOverhead: Int = 0
        ) {
            self.socketPath = socketPath
            self.socketMode = socketMode
            self.socketGroup = socketGroup
            self.maxEventBytes = maxEventBytes
            self.maxLineBytes = maxLineBytes
            self.maxConnections = maxConnections
            self.maxBytesInFlight = maxBytesInFlight
            self.inheritedSocket = inheritedSocket
            self.clock = clock
            self.eventSendOverhead = eventSendOverhead
        }
    }

    private let channel: any Channel
    package let connections: ConnectionTracker
    /// Bytes in flight to the writer, shared by the connections.
    package let budget: IngestBudget
    /// The HTTP face of the socket, if it has one (the TCP listener serves the same).
    package let face: HTTPFace?

    private init(channel: any Channel, connections: ConnectionTracker, budget: IngestBudget, face: HTTPFace?) {
        self.channel = channel
        self.connections = connections
        self.budget = budget
        self.face = face
    }

    /// Binds and starts accepting.
    ///
    /// - Parameter http: given, a connection whose first bytes are an HTTP method speaks
    ///   HTTP/1.1 (``HTTPFace``); without, every connection speaks the line protocol.
    package static func bind(
        options: Options, writer: any IngestWriter, group: any EventLoopGroup, logger: Logger,
        metrics: DaemonMetrics? = nil, http: HTTPFace.Setup? = nil
    ) async throws -> IngestServer {
        let connections = ConnectionTracker(limit: options.maxConnections)
        let budget = IngestBudget(limit: options.maxBytesInFlight)
        let parser = EventParser(maxEventBytes: options.maxEventBytes, sendOverheadBytes: options.eventSendOverhead)
        let face = http.map {
            HTTPFace(
                $0, writer: writer, parser: parser, budget: budget, metrics: metrics, connections: connections,
                clock: options.clock)
        }
        let limits = LineLimits(maxLineBytes: options.maxLineBytes)
        let lines = { @Sendable in
            IngestHandler(
                writer: writer, parser: parser, limits: limits, connections: connections, budget: budget,
                metrics: metrics, clock: options.clock)
        }
        let bootstrap = Listener.bootstrap(group: group, connections: connections, readBytes: limits.readBytes) {
            pipeline in
            guard let face else { return try pipeline.addHandler(lines()) }
            try pipeline.addHandler(
                ProtocolSniffer { wire, pipeline in
                    switch wire {
                    case .lines: try pipeline.addHandler(lines())
                    case .http: try face.configure(pipeline)
                    }
                })
        }

        let channel: any Channel
        if let fd = options.inheritedSocket {
            // systemd passes it without close-on-exec; an alert command must not inherit it.
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            // Adopted, never unlinked: the socket's file belongs to trackq.socket, which keeps
            // it across the daemon's restarts.
            channel = try await bootstrap.withBoundSocket(fd).get()
            logger.info("listening on the socket passed by systemd", metadata: ["socket.fd": "\(fd)"])
        } else {
            try SocketFile.prepare(options.socketPath)
            channel = try await bootstrap.bind(unixDomainSocketPath: options.socketPath).get()
            try SocketFile.setPermissions(options.socketPath, mode: options.socketMode, group: options.socketGroup)
            logger.info("listening", metadata: ["socket.path": "\(options.socketPath)"])
        }
        return IngestServer(channel: channel, connections: connections, budget: budget, face: face)
    }

    package func run() async throws {
        try? await gracefulShutdown()
        await drain()
    }

    /// Stops accepting, lets every connection answer what it has read, and waits for all of
    /// them to close (at most `timeout`, after which they are closed).
    package func drain(timeout: TimeAmount = .seconds(10)) async {
        try? await channel.close()
        let open = connections.all()
        for connection in open {
            connection.pipeline.fireUserInboundEventTriggered(IngestHandler.Drain())
        }
        let deadline = NIODeadline.now() + timeout
        for connection in open {
            let timer = connection.eventLoop.scheduleTask(deadline: deadline) { connection.close(promise: nil) }
            try? await connection.closeFuture.get()
            timer.cancel()
        }
    }
}

/// The open connections, so a drain can reach them, and the connection limit.
///
/// At the limit, a new connection takes the place of the one that has sent nothing for
/// longest, if that is at least ``idleEvictionAfter`` (apps may keep a connection open and
/// quiet for as long as they like, until the room is needed); otherwise it is told
/// `unavailable`. So idle or half-written connections cannot lock apps out.
package final class ConnectionTracker: Sendable {
    private struct Entry {
        package var channel: any Channel
        package var lastRead: NIODeadline
    }

    private let open = NIOLockedValueBox<[ObjectIdentifier: Entry]>([:])
    package let limit: Int
    package let idleEvictionAfter: TimeAmount

    package init(limit: Int, idleEvictionAfter: TimeAmount = .seconds(10)) {
        self.limit = limit
        self.idleEvictionAfter = idleEvictionAfter
    }

    /// Adds `channel` if there is room, making room by closing the longest-idle connection if
    /// need be (``isAdmitted(_:)`` tells which). A channel is removed when it closes.
    package func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let now = NIODeadline.now()
        let (added, evicted) = open.withLockedValue { open -> (Bool, (any Channel)?) in
            var evicted: (any Channel)?
            if open.count >= limit {
                guard let (oldest, entry) = open.min(by: { $0.value.lastRead < $1.value.lastRead }),
                    now - entry.lastRead >= idleEvictionAfter
                else { return (false, nil) }
                open.removeValue(forKey: oldest)
                evicted = entry.channel
            }
            open[id] = Entry(channel: channel, lastRead: now)
            return (true, evicted)
        }
        evicted?.close(promise: nil)
        if added {
            channel.closeFuture.whenComplete { [open] _ in _ = open.withLockedValue { $0.removeValue(forKey: id) } }
        }
    }

    /// Whether `add` took `channel` (and it has not closed since).
    package func isAdmitted(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        return open.withLockedValue { $0[id] != nil }
    }

    /// Bytes came in on `channel` (once per read, not per line).
    package func touch(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let now = NIODeadline.now()
        open.withLockedValue { $0[id]?.lastRead = now }
    }

    package func all() -> [any Channel] { open.withLockedValue { $0.values.map(\.channel) } }
}

/// On the listening channel: offers each accepted connection to the tracker, in the order
/// they were accepted, before the child's own initializer runs.
package final class AdmissionHandler: ChannelInboundHandler, Sendable {
    package typealias InboundIn = any Channel

    private let connections: ConnectionTracker

    package init(connections: ConnectionTracker) { self.connections = connections }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connections.add(Self.unwrapInboundIn(data))
        context.fireChannelRead(data)
    }
}

/// Answers a connection over the limit with one refusal (a line, or an HTTP 503 on the TCP
/// listener), then closes it.
package final class RefusingHandler: ChannelInboundHandler, Sendable {
    package typealias InboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let error: IngestError
    private let http: Bool

    package init(_ error: IngestError, http: Bool = false) {
        self.error = error
        self.http = http
    }

    package func channelActive(context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 256)
        if http {
            // No HTTP encoder in this pipeline: the head is written out as text.
            let answer = HTTPAnswer.refused(error)
            let head = answer.head(version: .http1_1, closes: true)
            buffer.writeString("HTTP/1.1 \(head.status.code) \(head.status.reasonPhrase)\r\n")
            for (name, value) in head.headers { buffer.writeString("\(name): \(value)\r\n") }
            buffer.writeString("\r\n" + answer.body)
        } else {
            AnswerEncoder.write(.refused(error), to: &buffer)
        }
        let channel = context.channel
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {}  // what it sends is not read
}

/// Preparing the socket's path and setting its permissions.
package enum SocketFile {
    /// Creates the parent directories (0750), and removes a stale socket left by a daemon that
    /// died. A live socket (something answers on it) or a path that is not a socket is an
    /// error: we never take over another process's socket or delete a user's file.
    package static func prepare(_ path: String) throws(SocketError) {
        do {
            try FileSystem.createParentDirectories(of: path)
        } catch {
            throw SocketError(error.description)
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw SocketError("\(path) exists and is not a socket; remove it or choose another --socket")
        }
        switch probe(path) {
        case .live:
            throw SocketError("another process is listening on \(path); is a trackq daemon already running?")
        case .unknown(let reason):
            throw SocketError("cannot tell whether \(path) is in use (\(reason)); not removing it")
        case .stale:
            break
        }
        if unlink(path) != 0 && errno != ENOENT {
            throw SocketError("cannot remove the stale socket \(path): \(errnoDescription())")
        }
    }

    package enum Probe: Equatable {
        /// Something accepts connections on it.
        case live
        /// Nobody listens: connect was refused.
        case stale
        /// Connect failed otherwise (permission, ...): it may be someone's live socket.
        case unknown(String)
    }

    /// Whether something accepts connections on the socket at `path`. Only a refused
    /// connection proves a socket stale.
    package static func probe(_ path: String) -> Probe {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .unknown(errnoDescription()) }
        defer { close(fd) }
        guard let rc = UnixSocketAddress.with(path, { connect(fd, $0, $1) }) else { return .unknown("path too long") }
        if rc == 0 { return .live }
        switch errno {
        // EAGAIN: a listener whose backlog is full is alive all the same.
        case EAGAIN, EINPROGRESS: return .live
        case ECONNREFUSED: return .stale
        case let code: return .unknown(errnoDescription(code))
        }
    }

    package static func setPermissions(_ path: String, mode: UInt32, group: String?) throws(SocketError) {
        if let group {
            guard let entry = getgrnam(group) else {
                throw SocketError("--socket-group: no group named \(group)")
            }
            if chown(path, uid_t.max, entry.pointee.gr_gid) != 0 {
                throw SocketError("cannot give \(path) to group \(group): \(errnoDescription())")
            }
        }
        if chmod(path, mode_t(mode)) != 0 {
            throw SocketError("cannot set the mode of \(path): \(errnoDescription())")
        }
    }
}

/// A socket cannot be listened on: its path is taken, its permissions cannot be set, its
/// address is in use. The message names the socket (or the setting) and what to do.
public struct SocketError: Error, Sendable, CustomStringConvertible {
    public var description: String

    package init(_ description: String) { self.description = description }
}
