/// Where the API token comes from: `TRACKQ_TOKEN`, or a file read again before each try.
///
/// The token is never logged, never put in a message, never stored.
final class TokenSource: @unchecked Sendable {
    // @unchecked: `last` is only touched by the delivery loop, one call at a time.
    private let fixed: String?
    let file: String?
    private var last: String?

    init(environment: [String: String], file: String?) {
        let fromEnvironment = environment["TRACKQ_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        self.fixed = fromEnvironment
        self.file = fromEnvironment == nil ? file : nil
    }

    /// The current token, re-reading the file; `changed` is true when it differs from the
    /// previous read.
    func read() -> (token: String?, changed: Bool) {
        let token: String?
        if let fixed {
            token = fixed
        } else if let file, let text = readSmallFile(file, limit: 64 << 10) {
            let trimmed = text.trimmingWhitespace()
            token = trimmed.isEmpty ? nil : trimmed
        } else {
            token = nil
        }
        defer { last = token }
        return (token, token != last)
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
