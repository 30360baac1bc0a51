/// Limits and defaults that more than one part of trackq uses, each written once here. (The
/// Track API's own bounds are `TrackAPI`'s; a setting's default is its row in the settings
/// table, which refers here where a part outside Config needs the same value.)
package enum Defaults {
    /// The HTTP face: from a request's head to its last byte.
    package static let httpRequestTimeout: Duration = .seconds(30)
    /// The HTTP face: how long a keep-alive connection may wait for its next request.
    package static let httpIdleTimeout: Duration = .seconds(60)
    /// Open connections to the socket (and the TCP face) at once.
    package static let maxConnections = 1024
    /// `--max-dead-letters`: past it the oldest dead letters are dropped.
    package static let maxDeadLetters = 10_000
}
