import Foundation
import TrackQueue

/// The tests talk to the daemon through the real socket only, with the same client
/// `trackq send` uses; these helpers add the tests' timeouts and errors.
typealias UnixClient = UnixLineConnection

extension UnixLineConnection {
    static func canConnect(_ path: String) -> Bool { (try? UnixClient(path: path)) != nil }

    /// Closes our sending side: the daemon sees EOF, answers, and closes.
    func shutdownWrite() { finishWriting() }

    /// The next answer line, waiting at most `timeout`; ``EndOfStream`` if the daemon closed.
    func readLine(timeout: Duration = .seconds(20)) throws -> String {
        do {
            guard let line = try nextLine(timeout: timeout) else { throw EndOfStream(partial: unreadText) }
            return line
        } catch is UnixLineConnection.ReadTimeout {
            throw TimedOut(what: "an answer from the daemon")
        }
    }

    /// `count` answer lines.
    func readLines(_ count: Int, timeout: Duration = .seconds(60)) throws -> [String] {
        try (0..<count).map { _ in try readLine(timeout: timeout) }
    }

    /// Starts a thread that writes `chunk` again and again, without reading, until a send
    /// waits a second (the daemon stopped reading this client) or `atMost` bytes are sent.
    func writeUntilStalled(_ chunk: [UInt8], atMost: Int = .max) -> Thread {
        let thread = Thread {
            var limit = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(self.fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            var sent = 0
            while sent < atMost, (try? self.write(chunk)) != nil { sent += chunk.count }
        }
        thread.start()
        return thread
    }

    /// Everything until the daemon closes the connection.
    func readToEnd() throws -> String {
        try readToEnd(timeout: .seconds(20))
    }
}

struct EndOfStream: Error { var partial: String }

/// A decoded answer line.
struct Answer: Equatable {
    var ok: Bool
    var accepted: Int?
    var error: String?
    var message: String?

    init(_ line: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw POSIXError(.EBADMSG)
        }
        ok = object["ok"] as? Bool ?? false
        accepted = object["accepted"] as? Int
        error = object["error"] as? String
        message = object["message"] as? String
    }
}
