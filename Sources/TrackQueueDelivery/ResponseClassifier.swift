/// How the API answered one request.
///
/// The delivery loop builds one of these for every request it sends and hands it to
/// ``DeliveryScheduler/handle(_:now:using:)``.
public enum DeliveryOutcome: Sendable, Equatable {
    /// An HTTP answer.
    ///
    /// - Parameters:
    ///   - status: The HTTP status code.
    ///   - retryAfter: The `Retry-After` header as a duration from now (see ``RetryAfter``), if any.
    ///   - body: The response body, already truncated by the caller.
    case response(status: Int, retryAfter: Duration?, body: String)
    /// No HTTP answer: connect, TLS, timeout or reset. The string describes it, without secrets.
    case transportError(String)
    /// A TLS failure a person must fix (an untrusted certificate, a client certificate asked
    /// for or refused), in words: a `tls` alert.
    case tlsFailure(String)
}

/// What an HTTP status means for delivery (README, "Delivery").
public enum ResponseClass: Sendable, Equatable {
    /// 2xx: the sent events are delivered.
    case success
    /// 400, 413, 422: some event is refused for good; the range is split.
    case rejected
    /// 401, 403: the token is wrong; alert and retry at the maximum interval.
    case credentials
    /// 404, 405 and every other 4xx not listed elsewhere: the endpoint is wrong; alert and retry.
    case endpoint
    /// 408, 429, 5xx and anything else (1xx, 3xx, out of range): retry with backoff.
    case retryable
}

/// Sorts HTTP statuses into ``ResponseClass`` values.
///
/// ```swift
/// ResponseClassifier.classify(status: 422)  // .rejected
/// ResponseClassifier.classify(status: 503)  // .retryable
/// ```
public enum ResponseClassifier {
    /// The class of an HTTP status code.
    public static func classify(status: Int) -> ResponseClass {
        switch status {
        case 200...299:
            return .success
        case 400, 413, 422:
            return .rejected
        case 401, 403:
            return .credentials
        case 408, 429:
            return .retryable
        case 400...499:
            return .endpoint
        default:
            return .retryable
        }
    }
}
