import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import TrackQueueConfig
import TrackQueueSupport
import TrackQueueSystem

/// Posts batches to the Track API with one long-lived `HTTPClient` (keep-alive, TLS).
///
/// Knows nothing of retries: it turns one request into one ``DeliveryOutcome`` for the
/// scheduler to judge.
package final class HTTPSender: DeliverySender {
    package struct Options: Sendable {
        package var endpoint: String
        package var authHeader: AuthHeader
        package var requestTimeout: Duration
        package var userAgent: String = "trackq/\(TrackQueue.version)"
        /// How much of an answer's body is kept (for dead letters and logs).
        package var maxKeptBodyBytes: Int = 4096
        /// The HTTP proxy requests go through, if any.
        package var proxy: ProxyRoute?
        /// How bodies go on the wire (``CompressionPolicy`` may turn gzip off).
        package var compression: Compression = .none

        /// Creates a value with every property given (or its default).
        package init(
            endpoint: String, authHeader: AuthHeader, requestTimeout: Duration, userAgent: String = "trackq/\(TrackQueue.version)",
            maxKeptBodyBytes: Int = 4096, proxy: ProxyRoute? = nil, compression: Compression = .none
        ) {
            self.proxy = proxy
            self.compression = compression
            self.endpoint = endpoint
            self.authHeader = authHeader
            self.requestTimeout = requestTimeout
            self.userAgent = userAgent
            self.maxKeptBodyBytes = maxKeptBodyBytes
        }
    }

    /// The client and the trust it was made with: both replaced on a reload that read new
    /// files (between requests: the delivery loop sends one at a time).
    private struct Current {
        var client: HTTPClient
        var trust: TLSTrust
    }

    private let current: NIOLockedValueBox<Current>
    private let eventLoopGroup: any EventLoopGroup
    package let options: Options
    private let logger: Logger
    /// Whether bodies go compressed.
    private let compression: NIOLockedValueBox<CompressionPolicy>
    /// Whether the last `Retry-After` was clamped, so a run of them is logged once.
    private let clamping = NIOLockedValueBox(false)
    /// The endpoint's host and port, for messages and for ``TLSProbe``.
    private let host: String
    private let port: Int

    package init(options: Options, trust: TLSTrust, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.eventLoopGroup = eventLoopGroup
        current = NIOLockedValueBox(
            Current(client: Self.makeClient(trust: trust, proxy: options.proxy, group: eventLoopGroup), trust: trust))
        self.options = options
        self.logger = logger
        compression = NIOLockedValueBox(CompressionPolicy(compressing: options.compression == .gzip))
        let url = URL(string: options.endpoint)
        host = url?.host ?? ""
        port = url?.port ?? (url?.scheme?.lowercased() == "http" ? 80 : 443)
    }

    private static func makeClient(trust: TLSTrust, proxy: ProxyRoute?, group: any EventLoopGroup) -> HTTPClient {
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: trust.configuration,
            redirectConfiguration: .disallow,  // a redirect is a misconfigured endpoint, not a place to POST
            timeout: .init(connect: .seconds(10)))
        configuration.httpVersion = .automatic
        // Our scheduler owns retries and backoff: a refused connection must fail the request
        // now, not be retried inside the pool until the connect timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        if let proxy {
            configuration.proxy = .server(
                host: proxy.host, port: proxy.port,
                authorization: proxy.username.map { .basic(username: $0, password: proxy.password ?? "") })
        }
        return HTTPClient(eventLoopGroupProvider: .shared(group), configuration: configuration)
    }

    /// SIGHUP: reads the trust files again. New trust gets a new client (the old one closes
    /// its connections); files that cannot be used leave the old trust in place.
    package func reload(pool: BlockingPool) async -> String? {
        let files = current.withLockedValue { $0.trust.files }
        guard !files.isEmpty else { return nil }
        let trust: TLSTrust
        do {
            trust = try await pool.run { try TLSTrust.load(files) }
        } catch {
            return "\(error)"
        }
        let fresh = Self.makeClient(trust: trust, proxy: options.proxy, group: eventLoopGroup)
        let old = current.withLockedValue { current in
            defer { current = Current(client: fresh, trust: trust) }
            return current.client
        }
        try? await old.shutdown()
        return nil
    }

    /// `body` as it goes on the wire: gzip-compressed while the policy says so.
    package func prepare(_ body: [UInt8]) -> RequestBody {
        guard compression.withLockedValue({ $0.compresses }), let gzipped = Gzip.compress(body) else {
            return RequestBody(plain: body)
        }
        return RequestBody(plain: body, gzipped: gzipped)
    }

    /// Sends `body` (a JSON array) and reports how the API answered. A compressed body the
    /// API refuses as such is sent again plain at once (``CompressionPolicy``).
    package func send(_ body: RequestBody, token: String?) async -> DeliveryOutcome {
        let outcome = await exchange(body.wire, gzip: body.gzipped != nil, key: body.idempotencyKey, token: token)
        guard body.gzipped != nil, case .response(let status, _, _) = outcome else { return outcome }
        switch compression.withLockedValue({ $0.compressedAnswered(status) }) {
        case .done:
            return outcome
        case .resendPlain(let fellBack):
            if fellBack { announceFallBack(status: status) }
            let plain = await exchange(body.plain, gzip: false, key: body.idempotencyKey, token: token)
            if case .response(let plainStatus, _, _) = plain, compression.withLockedValue({ $0.plainAnswered(plainStatus) }) {
                announceFallBack(status: status)
            }
            return plain
        }
    }

    private func announceFallBack(status: Int) {
        logger.warning(
            "the API does not take gzip request bodies; sending them uncompressed from now on (until a restart)",
            metadata: ["http.status": "\(status)"])
    }

    /// One request with `bytes` as its body; `requestTimeout` bounds the whole exchange, the
    /// response body included: a server that sends a head and then stalls, or trickles its
    /// body, is a timeout like any other.
    private func exchange(_ bytes: [UInt8], gzip: Bool, key: String?, token: String?) async -> DeliveryOutcome {
        var request = HTTPClientRequest(url: options.endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if gzip { request.headers.add(name: "Content-Encoding", value: "gzip") }
        if let key { request.headers.add(name: "Idempotency-Key", value: key) }
        request.headers.add(name: "User-Agent", value: options.userAgent)
        if let token, !token.isEmpty {
            switch options.authHeader {
            case .bearer: request.headers.add(name: "Authorization", value: "Bearer \(token)")
            case .xAPIKey: request.headers.add(name: "x-api-key", value: token)
            }
        }
        request.body = .bytes(ByteBuffer(bytes: bytes))
        let timeout = options.requestTimeout
        let built = request
        do {
            return try await withThrowingTaskGroup(of: DeliveryOutcome?.self) { group in
                group.addTask { try await self.receive(built) }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first ?? .transportError("request timeout")
            }
        } catch {
            return await outcome(of: error)
        }
    }

    /// A failed request as the scheduler takes it: a TLS failure a person must fix is its
    /// own outcome (an alert), said in words; any other is a transport error.
    private func outcome(of error: any Error) async -> DeliveryOutcome {
        guard let failure = TLSFailure.classify(error, host: host) else {
            let through = options.proxy.map { "through the proxy \($0.shown): " } ?? ""
            return .transportError(through + Self.describe(error))
        }
        let trust = current.withLockedValue { $0.trust }
        var diagnosis: String?
        // Through a proxy the probe would meet the proxy, not the API: the message then
        // names no cause (often the proxy's own CA: it inspects TLS).
        if failure == .untrusted, options.proxy == nil,
            let chain = await TLSProbe.peerChain(host: host, port: port, configuration: trust.configuration, group: eventLoopGroup)
        {
            diagnosis = TLSProbe.diagnosis(chain.map(TLSProbe.Facts.init), nowSeconds: SystemClock.wallMillis() / 1000)
        }
        let message = failure.message(diagnosis: diagnosis, clientCertificateNotAfter: trust.clientCertificateNotAfter)
        return failure.needsPerson ? .tlsFailure(message) : .transportError(message)
    }

    /// The request and its whole answer; cancelled by ``exchange(_:gzip:key:token:)`` at the timeout.
    private func receive(_ request: HTTPClientRequest) async throws -> DeliveryOutcome {
        // AHC's own deadline is a backstop; ours in send() covers the body too.
        let client = current.withLockedValue { $0.client }
        let response = try await client.execute(request, timeout: TimeAmount(options.requestTimeout) + .seconds(1))
        var kept = ByteBuffer()
        for try await chunk in response.body {
            let room = options.maxKeptBodyBytes - kept.readableBytes
            if room > 0 { kept.writeImmutableBuffer(chunk.getSlice(at: chunk.readerIndex, length: min(room, chunk.readableBytes))!) }
        }
        var retryAfter: Duration?
        if let value = response.headers.first(name: "Retry-After") {
            let honoured = RetryAfter.honoured(value, nowMillis: SystemClock.wallMillis())
            retryAfter = honoured.wait
            let logNow = clamping.withLockedValue { wasClamping in
                defer { wasClamping = honoured.clamped }
                return honoured.clamped && !wasClamping
            }
            if logNow {
                logger.warning(
                    "the API asked to wait longer than an hour, or in a form that cannot be read; waiting an hour",
                    metadata: ["http.retry_after": "\(Printable.oneLine(value, limit: 64))"])
            }
        }
        return .response(status: Int(response.status.code), retryAfter: retryAfter, body: String(buffer: kept))
    }

    package func shutdown() async {
        try? await current.withLockedValue { $0.client }.shutdown()
    }

    /// A short, secret-free description of a transport failure.
    package static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connect timeout"
            case .deadlineExceeded: return "request timeout"
            case .readTimeout: return "read timeout"
            case .remoteConnectionClosed: return "connection closed by the server"
            case .cancelled: return "cancelled"
            case .proxyAuthenticationRequired:
                return "the proxy asked for credentials (407): give them in the proxy's URL, http://user:password@host:port"
            case .invalidProxyResponse: return "the proxy refused to connect to the API (check what it allows)"
            case .httpProxyHandshakeTimeout: return "the proxy did not answer in time"
            // shortDescription never holds associated values (a header value, the token).
            default: return error.shortDescription.lowercased()
            }
        }
        if let error = error as? IOError {
            return errnoDescription(error.errnoCode).lowercased()  // "connection refused"
        }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return describe(first.error)
        }
        if let error = error as? NIOSSLError, error == .uncleanShutdown {
            return "connection closed by the server (without closing TLS)"
        }
        // Another library's error: its description may hold anything it was given, so only
        // its type is named.
        return "transport error (\(type(of: error)))"
    }
}
