import Foundation
import NIOCore
import NIOHTTP1

/// The HTTP/1.1 face of the ingest socket (and of the optional TCP listener): the Track
/// API's own call, `POST /api/track`, answered after the commit, plus `GET /status` and
/// `GET /metrics`.
///
/// Events take the same road as the line protocol's: the same parser, the same writer and
/// group commit, the same budget of bytes in flight.
struct HTTPFace: Sendable {
    struct Options: Sendable {
        /// The paths that take events: `/api/track`, `/track` and the endpoint's path.
        var trackPaths = defaultTrackPaths
        static let defaultTrackPaths: Set<String> = ["/api/track", "/track"]
        /// The largest request body (the Track API's 2 MB).
        var maxBodyBytes = TrackAPI.maxRequestBytes
        /// From a request's head to its last byte.
        var requestTimeout: TimeAmount = .seconds(30)
        /// How long a keep-alive connection may wait for its next request (or its first).
        var idleTimeout: TimeAmount = .seconds(60)
        /// When set (the TCP listener's `--http-token-file`), every request must carry
        /// `Authorization: Bearer <token>`.
        var bearerToken: BearerToken?

        /// The default paths plus the path of `endpoint` (a URL), if it has one.
        static func trackPaths(endpoint: String) -> Set<String> {
            var paths = defaultTrackPaths
            if let path = URLComponents(string: endpoint)?.path, path.hasPrefix("/"), path.count > 1 {
                paths.insert(path)
            }
            return paths
        }
    }

    /// What the face serves besides events, given by the daemon.
    struct Setup: Sendable {
        var options: Options
        /// `GET /status`: the `trackq status --json` object.
        var status: @Sendable (any EventLoop) -> EventLoopFuture<String>
        /// `GET /metrics`: Prometheus text.
        var prometheus: @Sendable (any EventLoop) -> EventLoopFuture<String>
    }

    var options: Options
    var writer: any IngestWriter
    var parser: EventParser
    var budget: IngestBudget
    var metrics: DaemonMetrics?
    /// The open connections: a request counts as activity, so a busy keep-alive connection is
    /// never the one closed to make room.
    var connections: ConnectionTracker?
    var status: @Sendable (any EventLoop) -> EventLoopFuture<String>
    var prometheus: @Sendable (any EventLoop) -> EventLoopFuture<String>
    /// Stamps the time each request was read.
    var clock: HostClock

    init(
        _ setup: Setup, writer: any IngestWriter, parser: EventParser, budget: IngestBudget, metrics: DaemonMetrics?,
        connections: ConnectionTracker? = nil, clock: HostClock = .system
    ) {
        self.clock = clock
        self.connections = connections
        self.options = setup.options
        self.status = setup.status
        self.prometheus = setup.prometheus
        self.writer = writer
        self.parser = parser
        self.budget = budget
        self.metrics = metrics
    }

    /// Headers are bounded well below NIO's defaults: an app's request has a handful.
    static let headerLimits: NIOHTTPDecoderLimitConfiguration = {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = 8 * 1024
        limits.maxHeaderListSize = 32 * 1024
        limits.maxHeaderFieldCount = 100
        return limits
    }()

    /// Adds the HTTP server handlers and ours at the end of the pipeline.
    func configure(_ pipeline: ChannelPipeline.SynchronousOperations) throws {
        try pipeline.configureHTTPServerPipeline(
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: Self.headerLimits)
        try pipeline.addHandler(HTTPIngestHandler(face: self))
    }
}

/// A bearer token, compared in constant time.
struct BearerToken: Sendable {
    private let bytes: [UInt8]

    /// Nil for an empty token.
    init?(_ token: String) {
        let trimmed = token.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return nil }
        bytes = Array(trimmed.utf8)
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`. Takes the same time
    /// whatever the offered token's bytes (it depends only on the lengths).
    func authorizes(_ headers: HTTPHeaders) -> Bool {
        guard let value = headers.first(name: "authorization") else { return false }
        let scheme = "bearer "
        guard value.utf8.count > scheme.utf8.count, value.lowercased().hasPrefix(scheme) else { return false }
        return Self.constantTimeEqual(Array(value.utf8.dropFirst(scheme.utf8.count)), bytes)
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        if a.count != b.count { difference |= 1 }
        for i in 0..<max(a.count, b.count) {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0
            difference |= x ^ y
        }
        return difference == 0
    }
}

/// Serves one HTTP connection, one request at a time (NIO's pipelining handler holds the
/// next request back until this one is answered).
///
/// A request's body is read only once the ``IngestBudget`` has room for it (its
/// `Content-Length`, or the body limit when chunked), so many clients posting at once wait
/// on their sockets instead of piling bodies up in memory; a request waiting holds nothing.
/// Timers close a connection whose request stalls (``HTTPFace/Options/requestTimeout``) or
/// that sits idle (``HTTPFace/Options/idleTimeout``).
final class HTTPIngestHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = Never
    typealias OutboundOut = HTTPServerResponsePart

    private enum Route {
        case track
        case status
        case metrics
        case answer(HTTPAnswer)
    }

    private enum State {
        /// Waiting for a request head.
        case idle
        /// Reading a request's body.
        case receiving(HTTPRequestHead, Route)
        /// The request is whole; its answer is being made (a commit, a status read).
        case answering
        /// An answer that closes the connection was written.
        case closing
    }

    private let face: HTTPFace
    private var state = State.idle
    private var body: ByteBuffer?
    /// Budget bytes this request holds; 0 while it waits for room.
    private var reserved = 0
    /// The body's reservation is still to be made (the budget was full).
    private var waitingForBudget = false
    /// The head of a request whose end came while it waited for room.
    private var pendingEnd: HTTPRequestHead?
    private var readPending = false
    private var timer: Scheduled<Void>?
    private var draining = false
    /// An answer waiting for the peer to read earlier ones (the channel is not writable).
    private var parked: (answer: HTTPAnswer, head: HTTPRequestHead)?

    init(face: HTTPFace) { self.face = face }

    func handlerAdded(context: ChannelHandlerContext) {
        arm(face.options.idleTimeout, context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            face.connections?.touch(context.channel)
            guard case .idle = state else { return }
            arm(face.options.requestTimeout, context: context)
            let route = route(head)
            state = .receiving(head, route)
            if case .track = route {
                startBody(head, context: context)
            } else if case .answer(let answer) = route, answer.closes {
                respond(answer, to: head, context: context)
            }
        case .body(var part):
            face.connections?.touch(context.channel)
            guard case .receiving(let head, .track) = state else { return }  // other bodies are dropped
            if (body?.readableBytes ?? 0) + part.readableBytes > face.options.maxBodyBytes {
                body = nil
                return respond(.bodyTooLarge(limit: face.options.maxBodyBytes), to: head, context: context)
            }
            if body == nil {
                body = part
            } else {
                body!.writeBuffer(&part)
            }
        case .end:
            guard case .receiving(let head, let route) = state else { return }
            timer?.cancel()
            state = .answering
            switch route {
            case .track:
                if waitingForBudget {
                    pendingEnd = head
                } else {
                    submit(head, context: context)
                }
            case .status:
                serve(face.status, contentType: "application/json", to: head, context: context)
            case .metrics:
                serve(face.prometheus, contentType: "text/plain; version=0.0.4; charset=utf-8", to: head, context: context)
            case .answer(let answer):
                // On a fresh stack: writing this answer's end hands us the next pipelined
                // request, and a burst of requests answered at once would nest that deep.
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.respond(answer, to: head, context: context)
                }
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // A drain, or the client closed its side (NIO passes that on once the requests before
        // it are answered): answer what is under way, then close.
        if event is IngestHandler.Drain || (event as? ChannelEvent) == .inputClosed {
            draining = true
            if case .idle = state { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        // A request still reading or waiting gives its room back; one being committed gives
        // it back when its answer comes.
        if case .answering = state {} else { releaseBudget() }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if let (answer, head) = parked {
                parked = nil
                respond(answer, to: head, context: context)
            }
            resumeReading(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Outbound

    /// Reading waits while the budget has no room for the body, and while the peer does not
    /// read its answers (so a client that pipelines without reading stalls on its own socket).
    func read(context: ChannelHandlerContext) {
        if waitingForBudget || !context.channel.isWritable {
            readPending = true
        } else {
            context.read()
        }
    }

    private func resumeReading(context: ChannelHandlerContext) {
        guard readPending, !waitingForBudget, context.channel.isWritable else { return }
        readPending = false
        context.read()
    }

    // MARK: Requests

    private func route(_ head: HTTPRequestHead) -> Route {
        if let token = face.options.bearerToken, !token.authorizes(head.headers) {
            return .answer(.unauthorized)
        }
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        if face.options.trackPaths.contains(path) {
            guard head.method == .POST else { return .answer(.methodNotAllowed(allow: "POST")) }
            if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > face.options.maxBodyBytes {
                return .answer(.bodyTooLarge(limit: face.options.maxBodyBytes))
            }
            return .track
        }
        if path == "/status" || path == "/metrics" {
            guard head.method == .GET else { return .answer(.methodNotAllowed(allow: "GET")) }
            return path == "/status" ? .status : .metrics
        }
        return .answer(.notFound(path: path))
    }

    /// Reserves room for the body, or waits (reading nothing more) until there is some.
    private func startBody(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let declared = head.headers.first(name: "content-length").flatMap(Int.init)
        let size = min(max(declared ?? face.options.maxBodyBytes, 0), face.options.maxBodyBytes)
        if face.budget.tryTake(size) {
            reserved = size
        } else {
            waitingForBudget = true
            if !face.budget.waitForRoom(budgetWaker(size: size, context: context)) {
                waitingForBudget = false
                return startBody(head, context: context)
            }
        }
        if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
            context.writeAndFlush(
                Self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
    }

    private func budgetWaker(size: Int, context: ChannelHandlerContext) -> @Sendable () -> Void {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        return {
            loopBound.eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.budgetHasRoom(size: size, context: context)
            }
        }
    }

    private func budgetHasRoom(size: Int, context: ChannelHandlerContext) {
        guard waitingForBudget, context.channel.isActive else { return }
        if !face.budget.tryTake(size) {
            if face.budget.waitForRoom(budgetWaker(size: size, context: context)) { return }
            return budgetHasRoom(size: size, context: context)  // room came back meanwhile
        }
        reserved = size
        waitingForBudget = false
        if let head = pendingEnd {
            pendingEnd = nil
            submit(head, context: context)
        } else {
            resumeReading(context: context)
        }
    }

    private func submit(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let received = body ?? context.channel.allocator.buffer(capacity: 0)
        body = nil
        var batch = EventBatch()
        batch.reserveCapacity(bytes: received.readableBytes + 64, events: 1)
        var warnings = ParseWarnings()
        let now = face.clock.wallMillis()
        let entry = LineEntry(parsing: received, with: face.parser, stampMillis: now, into: &batch, warnings: &warnings)
        let found = warnings
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        // Refusals go through the writer too, so they are counted with the line protocol's.
        face.writer.submit(
            IngestSubmission(
                batch: batch, lines: [entry], readAtMillis: now, readAtBoottimeMillis: face.clock.boottimeMillis(),
                completion: { answers in
                    loopBound.eventLoop.execute {
                        let (handler, context) = loopBound.value
                        handler.committed(answers.first, warnings: found, head: head, context: context)
                    }
                }))
    }

    private func committed(_ answer: LineAnswer?, warnings: ParseWarnings, head: HTTPRequestHead, context: ChannelHandlerContext) {
        switch answer {
        case .accepted(let count, _, _):
            if count > 0, !warnings.isEmpty { face.metrics?.uncheckedTimestamps.increment(by: warnings.uncheckedTimestamps) }
            respond(
                .accepted(count: count, warnings: warnings, responseID: UUID().uuidString.lowercased()), to: head,
                context: context)
        case .refused(let error):
            respond(.refused(error), to: head, context: context)
        case nil:
            respond(.refused(IngestError(.unavailable, "no answer from the writer")), to: head, context: context)
        }
    }

    private func serve(
        _ source: @Sendable (any EventLoop) -> EventLoopFuture<String>, contentType: String, to head: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        source(context.eventLoop).whenComplete { result in
            let (handler, context) = loopBound.value
            switch result {
            case .success(let text):
                handler.respond(HTTPAnswer(status: .ok, body: text, contentType: contentType), to: head, context: context)
            case .failure(let error):
                handler.respond(
                    .failure(.serviceUnavailable, code: "unavailable", message: "cannot read the status: \(error)", retryAfter: 1),
                    to: head, context: context)
            }
        }
    }

    /// Writes `answer`; then waits for the next request, or closes.
    private func respond(_ answer: HTTPAnswer, to head: HTTPRequestHead, context: ChannelHandlerContext) {
        releaseBudget()
        body = nil
        waitingForBudget = false
        pendingEnd = nil
        guard context.channel.isActive else {
            state = .closing
            timer?.cancel()
            return
        }
        if !context.channel.isWritable && !answer.closes {
            // The peer is not reading its answers: this one waits (and with it the next
            // pipelined request), for at most the idle timeout.
            parked = (answer, head)
            arm(face.options.idleTimeout, context: context)
            return
        }
        let closes = answer.closes || draining || !head.isKeepAlive
        // Set before the write: writing the end lets NIO hand us the next pipelined request.
        if closes {
            state = .closing
            timer?.cancel()
        } else {
            state = .idle
            arm(face.options.idleTimeout, context: context)
        }
        context.write(Self.wrapOutboundOut(.head(answer.head(version: head.version, closes: closes))), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: answer.body)))), promise: nil)
        let written = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
        if closes {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
            // A peer that never reads would hold the connection open: it gets a few seconds.
            context.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        } else {
            resumeReading(context: context)
        }
    }

    private func releaseBudget() {
        if reserved > 0 {
            face.budget.give(reserved)
            reserved = 0
        }
    }

    /// (Re)starts the one timer: when it fires, a connection idle between requests is closed,
    /// and a request still arriving is answered 408 and closed.
    private func arm(_ timeout: TimeAmount, context: ChannelHandlerContext) {
        timer?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.timedOut(context: context)
        }
    }

    private func timedOut(context: ChannelHandlerContext) {
        switch state {
        case .idle:
            context.close(promise: nil)
        case .receiving(let head, _):
            respond(.requestTimeout, to: head, context: context)
        case .answering:
            // The answer is on its way, unless it waits for a peer that stopped reading.
            if parked != nil { context.close(promise: nil) }
        case .closing:
            break
        }
    }
}

@available(*, unavailable)
extension HTTPIngestHandler: Sendable {}

extension DaemonSettings {
    /// The bearer token `--http-token-file` holds: nil when none is set. The file is read
    /// once, at the start; an unreadable or empty file is refused.
    func httpBearerToken(readFile: (String) -> String? = DaemonSettings.readFileFromDisk) throws(ConfigurationError)
        -> BearerToken?
    {
        guard let path = httpTokenFile else { return nil }
        guard let text = readFile(path) else { throw ConfigurationError("--http-token-file \(path) cannot be read") }
        guard let token = BearerToken(text) else { throw ConfigurationError("--http-token-file \(path) is empty") }
        return token
    }

    /// Why `--http-token-file` cannot be used, if it cannot (checked before the daemon starts).
    public func httpTokenProblem() -> String? {
        do {
            _ = try httpBearerToken()
            return nil
        } catch {
            return error.message
        }
    }
}
