import Foundation
import NIOCore
import NIOHTTP1
import TrackQueueClock
import TrackQueueConfig
import TrackQueueEvent
import TrackQueueMetrics

/// The HTTP/1.1 face of the ingest socket (and of the optional TCP listener): the Track
/// API's own call, `POST /api/track`, answered after the commit, plus `GET /status` and
/// `GET /metrics`.
///
/// Events take the same road as the line protocol's: the same parser, the same writer and
/// group commit, the same budget of bytes in flight.
package struct HTTPFace: Sendable {
    package struct Options: Sendable {
        /// The paths that take events: `/api/track`, `/track` and the endpoint's path.
        package var trackPaths: Set<String> = defaultTrackPaths
        package static let defaultTrackPaths: Set<String> = ["/api/track", "/track"]
        /// `GET /status` is served (the metrics listener serves `/metrics` only).
        package var servesStatus: Bool = true
        /// The body limit, the timers and the lingering close.
        package var connection: HTTPConnection.Options = HTTPConnection.Options()
        /// When set (the TCP listener's `--http-token-file`), every request must carry
        /// `Authorization: Bearer <token>`.
        package var bearerToken: BearerToken?

        /// The default paths plus the path of `endpoint` (a URL), if it has one.
        package static func trackPaths(endpoint: String) -> Set<String> {
            var paths = defaultTrackPaths
            if let path = URLComponents(string: endpoint)?.path, path.hasPrefix("/"), path.count > 1 {
                paths.insert(path)
            }
            return paths
        }

        /// What a request asks for, from its head alone.
        package func route(_ head: HTTPRequestHead) -> HTTPConnection.Route {
            if let bearerToken, !bearerToken.authorizes(head.headers) { return .answer(.unauthorized) }
            let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let maxBody = connection.maxBodyBytes
            if trackPaths.contains(path) {
                guard head.method == .POST else { return .answer(.methodNotAllowed(allow: "POST")) }
                let declared = head.headers.first(name: "content-length").flatMap(Int.init)
                if let declared, declared > maxBody { return .answer(.bodyTooLarge(limit: maxBody)) }
                // Room for the declared body, or for the largest one when it is chunked.
                return .track(reserve: min(max(declared ?? maxBody, 0), maxBody))
            }
            if (path == "/status" && servesStatus) || path == "/metrics" {
                guard head.method == .GET else { return .answer(.methodNotAllowed(allow: "GET")) }
                return path == "/status" ? .status : .metrics
            }
            return .answer(.notFound(path: path))
        }

        /// Creates a value with every property given (or its default).
        package init(
            trackPaths: Set<String> = defaultTrackPaths, servesStatus: Bool = true,
            connection: HTTPConnection.Options = HTTPConnection.Options(), bearerToken: BearerToken? = nil
        ) {
            self.trackPaths = trackPaths
            self.servesStatus = servesStatus
            self.connection = connection
            self.bearerToken = bearerToken
        }
    }

    /// What the face serves besides events, given by the daemon.
    package struct Setup: Sendable {
        package var options: Options
        /// `GET /status`: the `trackq status --json` object.
        package var status: @Sendable (any EventLoop) -> EventLoopFuture<String>
        /// `GET /metrics`: Prometheus text.
        package var prometheus: @Sendable (any EventLoop) -> EventLoopFuture<String>

        /// Creates a value with every property given (or its default).
        package init(
            options: Options, status: @escaping @Sendable (any EventLoop) -> EventLoopFuture<String>,
            prometheus: @escaping @Sendable (any EventLoop) -> EventLoopFuture<String>
        ) {
            self.options = options
            self.status = status
            self.prometheus = prometheus
        }
    }

    package var options: Options
    package var writer: any IngestWriter
    package var parser: EventParser
    package var budget: IngestBudget
    package var metrics: DaemonMetrics?
    /// The open connections: a request counts as activity, so a busy keep-alive connection is
    /// never the one closed to make room.
    package var connections: ConnectionTracker?
    package var status: @Sendable (any EventLoop) -> EventLoopFuture<String>
    package var prometheus: @Sendable (any EventLoop) -> EventLoopFuture<String>
    /// Stamps the time each request was read.
    package var clock: HostClock

    package init(
        _ setup: Setup, writer: any IngestWriter, parser: EventParser, budget: IngestBudget, metrics: DaemonMetrics? = nil,
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
    package static let headerLimits: NIOHTTPDecoderLimitConfiguration = {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = 8 * 1024
        limits.maxHeaderListSize = 32 * 1024
        limits.maxHeaderFieldCount = 100
        return limits
    }()

    /// Adds the HTTP server handlers and ours at the end of the pipeline.
    package func configure(_ pipeline: ChannelPipeline.SynchronousOperations) throws {
        // Without NIO's error handler: a request that does not parse is answered by
        // HTTPConnection, which knows whether an answer already went out (a 413 while lingering).
        try pipeline.configureHTTPServerPipeline(
            withErrorHandling: false, withEncoderConfiguration: .init(), withDecoderLimitConfiguration: Self.headerLimits)
        try pipeline.addHandler(HTTPIngestHandler(face: self))
    }
}

/// A bearer token, compared in constant time.
package struct BearerToken: Sendable {
    private let bytes: [UInt8]

    /// Nil for an empty token.
    package init?(_ token: String) {
        let trimmed = token.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return nil }
        bytes = Array(trimmed.utf8)
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`. Takes the same time
    /// whatever the offered token's bytes (it depends only on the lengths).
    package func authorizes(_ headers: HTTPHeaders) -> Bool {
        guard let value = headers.first(name: "authorization") else { return false }
        let scheme = "bearer "
        guard value.utf8.count > scheme.utf8.count, value.lowercased().hasPrefix(scheme) else { return false }
        return Self.constantTimeEqual(Array(value.utf8.dropFirst(scheme.utf8.count)), bytes)
    }

    package static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
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

extension DaemonSettings {
    /// The bearer token `--http-token-file` holds: nil when none is set. The file is read
    /// once, at the start; an unreadable or empty file is refused.
    package func httpBearerToken(readFile: (String) -> String? = DaemonSettings.readFileFromDisk) throws(ConfigurationError)
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
