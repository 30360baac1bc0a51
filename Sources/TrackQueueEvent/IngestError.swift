/// Why a request line (or part of the service) refused an event.
///
/// `code` is the stable wire code sent back to apps; `message` is for a person
/// and names the field or limit at fault.
public struct IngestError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable, machine-readable error code. Its `description` is the wire code. An enum, so
    /// every place that maps codes (HTTP statuses, exit codes) names each one.
    public enum Code: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
        /// The line is not strict RFC 8259 JSON (syntax, UTF-8, nesting depth).
        case invalidJSON = "invalid_json"
        /// The JSON is well formed but breaks an event rule.
        case invalidEvent = "invalid_event"
        /// An event or batch exceeds a size limit.
        case tooLarge = "too_large"
        /// The queue cannot take more events right now.
        case queueFull = "queue_full"
        /// The service cannot accept events at the moment.
        case unavailable = "unavailable"

        /// The wire code, e.g. `invalid_json`.
        public var description: String { rawValue }
    }

    /// The machine-readable code.
    public var code: Code
    /// A human-readable explanation naming the field or limit at fault.
    public var message: String

    /// Creates an error with a code and a human-readable message.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`, e.g. `invalid_event: user_id: must be a non-empty string`.
    public var description: String { "\(code): \(message)" }
}
