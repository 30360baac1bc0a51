import AsyncHTTPClient
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
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

        /// Creates a value with every property given (or its default).
        package init(
            endpoint: String, authHeader: AuthHeader, requestTimeout: Duration, userAgent: String = "trackq/\(TrackQueue.version)",
            maxKeptBodyBytes: Int = 4096
        ) {
            self.endpoint = endpoint
            self.authHeader = authHeader
            self.requestTimeout = requestTimeout
            self.userAgent = userAgent
            self.maxKeptBodyBytes = maxKeptBodyBytes
        }
    }

    private let client: HTTPClient
    package let options: Options
    private let logger: Logger
    /// Whether the last `Retry-After` was clamped, so a run of them is logged once.
    private let clamping = NIOLockedValueBox(false)

    package init(options: Options, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,  // a redirect is a misconfigured endpoint, not a place to POST
            timeout: .init(connect: .seconds(10)))
        configuration.httpVersion = .automatic
        // Our scheduler owns retries and backoff: a refused connection must fail the request
        // now, not be retried inside the pool until the connect timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: configuration)
        self.options = options
        self.logger = logger
    }

    /// Sends `body` (a JSON array) and reports how the API answered.
    ///
    /// `requestTimeout` bounds the whole exchange, the response body included: a server that
    /// sends a head and then stalls, or trickles its body, is a timeout like any other.
    package func send(_ body: [UInt8], token: String?) async -> DeliveryOutcome {
        var request = HTTPClientRequest(url: options.endpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: options.userAgent)
        if let token, !token.isEmpty {
            switch options.authHeader {
            case .bearer: request.headers.add(name: "Authorization", value: "Bearer \(token)")
            case .xAPIKey: request.headers.add(name: "x-api-key", value: token)
            }
        }
        request.body = .bytes(ByteBuffer(bytes: body))
        let timeout = options.requestTimeout
        let built = request
        do {
            return try await withThrowingTaskGroup(of: DeliveryOutcome?.self) { group in
                group.addTask { try await self.exchange(built) }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first ?? .transportError("request timeout")
            }
        } catch {
            return .transportError(Self.describe(error))
        }
    }

    /// The request and its whole answer; cancelled by ``send(_:token:)`` at the timeout.
    private func exchange(_ request: HTTPClientRequest) async throws -> DeliveryOutcome {
        // AHC's own deadline is a backstop; ours in send() covers the body too.
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
        try? await client.shutdown()
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
        // Another library's error: its description may hold anything it was given, so only
        // its type is named.
        return "transport error (\(type(of: error)))"
    }
}
