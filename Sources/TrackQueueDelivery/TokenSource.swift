import TrackQueueConfig
import TrackQueueSupport
import TrackQueueSystem

/// Where the API token comes from: `TRACKQ_TOKEN`, or a file read again before each try.
///
/// A token is checked when read: surrounding white space is trimmed, and what is left must
/// be visible ASCII (`!` to `~`), since it goes into an HTTP header. A token that is not is
/// refused with a message naming where it came from, never its text, and the last good one
/// is kept. The token is never logged, never put in a message, never stored.
package final class TokenSource: @unchecked Sendable {
    // @unchecked: `last` is only touched by the delivery loop, one call at a time.

    /// One read of the token.
    package struct Reading: Sendable, Equatable {
        /// The token to send: the one just read, or the last good one if it was refused.
        package var token: String?
        /// Whether `token` differs from the previous read's.
        package var changed: Bool
        /// Why the token just read was refused, for a person; nil when it was not.
        package var problem: String?
    }

    private let fixed: String?
    package let file: String?
    private var last: String?

    package init(environment: [String: String], file: String?) {
        let fromEnvironment = environment["TRACKQ_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        self.fixed = fromEnvironment
        self.file = fromEnvironment == nil ? file : nil
    }

    /// Reads the token again (the file, if that is where it lives).
    package func read() -> Reading {
        let raw: String?
        let origin: String
        if let fixed {
            raw = fixed
            origin = "TRACKQ_TOKEN"
        } else if let file {
            raw = readSmallFile(file, limit: 64 << 10)
            origin = "the token file \(Printable.oneLine(file, limit: 200))"
        } else {
            raw = nil
            origin = ""
        }
        let token: String?
        switch raw.map(Self.check) {
        case .none, .some(.empty): token = nil
        case .some(.valid(let value)): token = value
        case .some(.invalid):
            return Reading(
                token: last, changed: false,
                problem: "the token in \(origin) holds characters other than visible ASCII (a second line, a space or a "
                    + "control character inside it); it was refused")
        }
        defer { last = token }
        return Reading(token: token, changed: token != last, problem: nil)
    }

    package enum Check: Equatable {
        case empty
        case valid(String)
        case invalid
    }

    /// `raw` trimmed of surrounding white space, and whether what is left can be a token.
    package static func check(_ raw: String) -> Check {
        let trimmed = raw.trimmingWhitespace()
        if trimmed.isEmpty { return .empty }
        return trimmed.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) ? .valid(trimmed) : .invalid
    }
}

extension String {
    package func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}

extension DaemonSettings {
    /// Why the configured token cannot be used, naming where it came from; nil when it can
    /// (or when there is none yet). `trackq daemon` refuses to start on it, with exit status 2.
    public func tokenProblem(environment: [String: String]) -> String? {
        TokenSource(environment: environment, file: tokenFile).read().problem
    }
}
