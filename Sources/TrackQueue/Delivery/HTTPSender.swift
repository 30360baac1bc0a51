import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOPosix

/// Posts batches to the Track API with one long-lived `HTTPClient` (keep-alive, TLS).
///
/// Knows nothing of retries: it turns one request into one ``DeliveryOutcome`` for the
/// scheduler to judge.
final class HTTPSender: DeliverySender {
    struct Options: Sendable {
        var endpoint: String
        var authHeader: AuthHeader
        var requestTimeout: Duration
        var userAgent = "trackq/\(TrackQueue.version)"
        /// How much of an answer's body is kept (for dead letters and logs).
        var maxKeptBodyBytes = 4096
    }

    private let client: HTTPClient
    let options: Options

    init(options: Options, eventLoopGroup: any EventLoopGroup) {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,  // a redirect is a misconfigured endpoint, not a place to POST
            timeout: .init(connect: .seconds(10)))
        configuration.httpVersion = .automatic
        // Our scheduler owns retries and backoff: a refused connection must fail the request
        // now, not be retried inside the pool until the connect timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: configuration)
        self.options = options
    }

    /// Sends `body` (a JSON array) and reports how the API answered.
    func send(_ body: [UInt8], token: String?) async -> DeliveryOutcome {
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
        do {
            let response = try await client.execute(request, timeout: TimeAmount(options.requestTimeout))
            var kept = ByteBuffer()
            for try await chunk in response.body {
                let room = options.maxKeptBodyBytes - kept.readableBytes
                if room > 0 { kept.writeImmutableBuffer(chunk.getSlice(at: chunk.readerIndex, length: min(room, chunk.readableBytes))!) }
            }
            let retryAfter = response.headers.first(name: "Retry-After").flatMap {
                RetryAfter.parse($0, nowMillis: SystemClock.wallMillis())
            }
            return .response(status: Int(response.status.code), retryAfter: retryAfter, body: String(buffer: kept))
        } catch {
            return .transportError(Self.describe(error))
        }
    }

    func shutdown() async {
        try? await client.shutdown()
    }

    /// A short, secret-free description of a transport failure.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connect timeout"
            case .deadlineExceeded: return "request timeout"
            case .readTimeout: return "read timeout"
            case .remoteConnectionClosed: return "connection closed by the server"
            case .cancelled: return "cancelled"
            default: return "\(error)"
            }
        }
        if let error = error as? IOError {
            return errnoDescription(error.errnoCode).lowercased()  // "connection refused"
        }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return describe(first.error)
        }
        return "\(error)"
    }
}
