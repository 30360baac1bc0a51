// What delivery's state record holds and `trackq status` shows: kept by the store as text,
// typed everywhere else.

/// What the sender is doing, as `trackq status` shows it.
public enum DeliveryState: String, Sendable, CaseIterable {
    /// No batch in progress and nothing to wait for.
    case idle
    /// A batch is in progress and may be sent now.
    case sending
    /// Waiting after retryable failures.
    case backoff
    /// Waiting while an alert is active.
    case alert
    /// Outside `--send-window`: events are kept until it opens.
    case window

    /// The state for a person: its word, but `waiting for the send window` for ``window``.
    public var words: String { self == .window ? "waiting for the send window" : rawValue }
}

/// The kind of a delivery alert (README, "Delivery").
public enum AlertKind: String, Sendable, Equatable {
    /// 401 or 403: the token is wrong.
    case auth
    /// 404, 405 or another 4xx: the endpoint is wrong.
    case endpoint
    /// The queue file was found damaged (raised by the store, never by an answer).
    case storage
    /// TLS with the API failed in a way a person must fix (its certificate not trusted, a
    /// client certificate asked for or refused), or a trust file could not be read again.
    case tls
}
