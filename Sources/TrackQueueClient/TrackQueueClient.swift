import Foundation

/// A blocking client for trackq's Unix socket, for apps written in Swift.
///
/// Each `send` writes one line (one event, or one atomic batch) and returns the daemon's answer
/// for it. An answer with `ok == true` is sent only after the events are committed to the
/// daemon's database, so once `send` returns it, they survive a crash or a power cut and will be
/// delivered to the Track API. An answer with `ok == false` means nothing from that line was
/// stored: `error` says why (`invalid_json`, `invalid_event`, `too_large`, `queue_full`,
/// `unavailable`) and `message` names the field or limit at fault.
///
/// ```swift
/// import TrackQueueClient
///
/// let client = try TrackQueueClient()           // $TRACKQ_SOCKET, else /run/trackq/trackq.sock
/// defer { client.close() }
/// let answer = try client.send(TrackEvent(
///     eventName: "signed_in", userID: "u1", properties: ["plan": "pro", "seats": 3]))
/// if !answer.ok { print("refused: \(answer.error ?? "") \(answer.message ?? "")") }
///
/// let batch = try client.send(batch: [
///     TrackEvent(eventName: "page_viewed", userID: "u1"),
///     TrackEvent(eventName: "page_viewed", userID: "u2"),
/// ])                                             // both stored, or neither
/// ```
///
/// ## Threads
/// A `TrackQueueClient` is `Sendable`: any thread or task may call it at any time. It holds one
/// connection, and a lock serialises requests on it, so each `send` waits for the one before it
/// (one line, then its answer). Every call blocks its thread until the answer arrives or
/// `timeout` passes; from Swift concurrency, call it from a task that may block (or give each
/// busy thread its own client), not from the main actor.
///
/// ## Failures
/// A thrown `TrackQueueClientError` means the line's fate is unknown (it may or may not have
/// been stored). The client then drops its connection and opens a new one on the next `send`,
/// so a daemon restart costs one error, not a new client. Retrying after an error can store an
/// event twice; retrying after a refusal (`ok == false`) cannot.
public final class TrackQueueClient: @unchecked Sendable {
    // @unchecked: `stream` and `isClosed` are only touched while holding `lock`; everything
    // else is immutable.

    /// The socket this client connects to.
    public let socketPath: String
    /// The longest a connect, a write, or a wait for one answer may take.
    public let timeout: Duration

    private let lock = NSLock()
    private var stream: UnixStream?
    private var isClosed = false

    /// The socket path used when none is given: `$TRACKQ_SOCKET` when set and non-empty, else
    /// `/run/trackq/trackq.sock`.
    public static func defaultSocketPath(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        if let path = environment["TRACKQ_SOCKET"], !path.isEmpty { return path }
        return "/run/trackq/trackq.sock"
    }

    /// Connects to the daemon.
    ///
    /// - Parameters:
    ///   - socketPath: `nil` for `$TRACKQ_SOCKET`, else `/run/trackq/trackq.sock`.
    ///   - timeout: the longest a connect, a write, or a wait for one answer may take. The
    ///     daemon answers after a durable commit, normally within milliseconds.
    /// - Throws: `.unreachable` naming the socket path when nothing accepts connections there.
    public init(socketPath: String? = nil, timeout: Duration = .seconds(30)) throws(TrackQueueClientError) {
        let path = socketPath ?? Self.defaultSocketPath()
        self.socketPath = path
        self.timeout = timeout
        self.stream = try UnixStream(path: path, timeout: timeout)
    }

    /// Sends one event: any `Encodable` that encodes as a JSON object, such as `TrackEvent`.
    ///
    /// `Date` values are encoded as RFC 3339 UTC strings with milliseconds.
    public func send<E: Encodable>(_ event: E) throws(TrackQueueClientError) -> TrackQueueAnswer {
        try request(Self.encode(event))
    }

    /// Sends one event given as a JSON object built from `String`, numbers, `Bool`, `NSNull`,
    /// arrays and dictionaries (encoded with `JSONSerialization`).
    ///
    /// ```swift
    /// try client.send(["event_name": "signed_in", "user_id": "u1", "properties": ["plan": "pro"]])
    /// try client.send(["event_name": "upgraded", "user_id": "u1",
    ///                  "properties": ["plan": "pro", "seats": 3] as [String: any Sendable]])
    /// ```
    /// (A nested literal mixing value types needs the `as [String: any Sendable]`.)
    /// Throws `.encoding` when a value is none of these; nothing is sent then.
    public func send(_ event: [String: any Sendable]) throws(TrackQueueClientError) -> TrackQueueAnswer {
        try request(Self.serialize(event))
    }

    /// Sends `events` as one line: a batch of at most 1000 events, stored all together or not
    /// at all. The answer's `accepted` is the number stored; `firstID...lastID` their queue ids.
    public func send<E: Encodable>(batch events: [E]) throws(TrackQueueClientError) -> TrackQueueAnswer {
        try request(Self.encode(events))
    }

    /// Sends one line of JSON text as it is: an object (one event) or an array of objects (one
    /// batch). It must not contain a line feed (JSON never needs one) nor be blank.
    public func send(json line: String) throws(TrackQueueClientError) -> TrackQueueAnswer {
        var bytes = Array(line.utf8)
        if bytes.last == 0x0A { bytes.removeLast() }
        if bytes.contains(0x0A) {
            throw .encoding("a line must not contain a line feed (it would be two lines)")
        }
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) {
            throw .encoding("a blank line gets no answer")
        }
        return try request(bytes)
    }

    /// Closes the connection. Later calls throw `.closed`. Safe to call more than once; a
    /// client that is dropped closes itself.
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        isClosed = true
        stream?.closeNow()
        stream = nil
    }

    // MARK: - Internals

    private func request(_ line: [UInt8]) throws(TrackQueueClientError) -> TrackQueueAnswer {
        lock.lock()
        defer { lock.unlock() }
        if isClosed { throw .closed }
        let stream: UnixStream
        if let open = self.stream, open.isOpen {
            stream = open
        } else {
            self.stream = nil
            stream = try UnixStream(path: socketPath, timeout: timeout)
            self.stream = stream
        }
        do {
            try stream.write(line + [0x0A])
            return try TrackQueueAnswer(line: stream.readLine())
        } catch {
            // Whatever is still in flight on this connection would pair with the wrong
            // request: never reuse it.
            stream.closeNow()
            self.stream = nil
            throw error
        }
    }

    private static func encode<E: Encodable>(_ value: E) throws(TrackQueueClientError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(RFC3339.string(from: date))
        }
        do {
            return Array(try encoder.encode(value))
        } catch {
            throw .encoding(String(describing: error))
        }
    }

    private static func serialize(_ object: [String: any Sendable]) throws(TrackQueueClientError) -> [UInt8] {
        let any = object as [String: Any]
        guard JSONSerialization.isValidJSONObject(any) else {
            throw .encoding("not a JSON object: values must be String, numbers, Bool, NSNull, arrays or dictionaries")
        }
        do {
            return Array(try JSONSerialization.data(withJSONObject: any, options: [.withoutEscapingSlashes]))
        } catch {
            throw .encoding(String(describing: error))
        }
    }
}

/// The daemon's answer to one line.
public struct TrackQueueAnswer: Sendable, Equatable, CustomStringConvertible {
    /// `true`: every event of the line is committed to the daemon's database.
    public var ok: Bool
    /// How many events were stored (0 when refused).
    public var accepted: Int
    /// The queue id of the first stored event, when any was stored.
    public var firstID: Int64?
    /// The queue id of the last stored event, when any was stored.
    public var lastID: Int64?
    /// When refused: `invalid_json`, `invalid_event`, `too_large`, `queue_full` or `unavailable`.
    public var error: String?
    /// When refused: a text for a person, naming the field or limit at fault.
    public var message: String?

    public init(ok: Bool, accepted: Int = 0, firstID: Int64? = nil, lastID: Int64? = nil, error: String? = nil, message: String? = nil) {
        self.ok = ok
        self.accepted = accepted
        self.firstID = firstID
        self.lastID = lastID
        self.error = error
        self.message = message
    }

    /// A refusal that may succeed later unchanged (`queue_full`, `unavailable`).
    public var isRetryable: Bool { !ok && (error == "queue_full" || error == "unavailable") }

    public var description: String {
        ok
            ? "accepted \(accepted)" + (firstID.map { " (ids \($0)...\(lastID ?? $0))" } ?? "")
            : "refused: \(error ?? "?"): \(message ?? "")"
    }

    private struct Wire: Decodable {
        var ok: Bool
        var accepted: Int?
        var firstID: Int64?
        var lastID: Int64?
        var error: String?
        var message: String?

        enum CodingKeys: String, CodingKey {
            case ok, accepted, error, message
            case firstID = "first_id"
            case lastID = "last_id"
        }
    }

    init(line: [UInt8]) throws(TrackQueueClientError) {
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: Data(line))
        } catch {
            throw .invalidAnswer(String(decoding: line.prefix(200), as: UTF8.self))
        }
        self.init(
            ok: wire.ok, accepted: wire.accepted ?? 0, firstID: wire.firstID, lastID: wire.lastID,
            error: wire.error, message: wire.message)
    }
}

/// Why a request failed without an answer. After any of these but `.encoding` (nothing was
/// sent), the line's fate is unknown.
public struct TrackQueueClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Nothing accepts connections at the path (no daemon, wrong path, no permission).
        case unreachable(socketPath: String, reason: String)
        /// The connection closed before the answer came (daemon stopped), or `close()` was called.
        case closed
        /// No answer, or no progress writing, within the client's timeout.
        case timedOut(Duration)
        /// The daemon sent a line that is not an answer.
        case invalidAnswer(String)
        /// The event could not be encoded as one JSON line; nothing was sent.
        case encoding(String)
        /// Another socket error.
        case io(String)
    }

    public var kind: Kind

    public init(_ kind: Kind) { self.kind = kind }

    public static func unreachable(socketPath: String, reason: String) -> Self {
        .init(.unreachable(socketPath: socketPath, reason: reason))
    }
    public static var closed: Self { .init(.closed) }
    public static func timedOut(_ after: Duration) -> Self { .init(.timedOut(after)) }
    public static func invalidAnswer(_ line: String) -> Self { .init(.invalidAnswer(line)) }
    public static func encoding(_ reason: String) -> Self { .init(.encoding(reason)) }
    public static func io(_ reason: String) -> Self { .init(.io(reason)) }

    public var description: String {
        switch kind {
        case .unreachable(let path, let reason): "cannot connect to trackq at \(path): \(reason)"
        case .closed: "the connection to trackq is closed"
        case .timedOut(let after): "no answer from trackq within \(after)"
        case .invalidAnswer(let line): "trackq sent something that is not an answer: \(line)"
        case .encoding(let reason): "cannot encode the event as one JSON line: \(reason)"
        case .io(let reason): "socket error talking to trackq: \(reason)"
        }
    }
}
