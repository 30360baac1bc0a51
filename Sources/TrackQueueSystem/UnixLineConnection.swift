import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A blocking client connection to a Unix-domain socket speaking a line protocol, as a
/// plain app would write one: `trackq send` and the tests talk to the daemon through it.
///
/// One thread may write while another reads (`trackq send -` streams standard input while
/// it prints the answers): writes touch only ``fd``, reads own the buffer of received bytes.
public final class UnixLineConnection: @unchecked Sendable {
    // @unchecked: `fd` is immutable; `pending` is touched only by the one reading thread.

    /// The connected socket.
    public let fd: Int32
    private var pending: [UInt8] = []

    /// A read that waited its whole timeout.
    public struct ReadTimeout: Error, CustomStringConvertible {
        public var description: String { "timed out waiting for an answer line" }
    }

    /// Connects to the socket at `path`; throws the `POSIXError` of `socket` or `connect`.
    public init(path: String) throws {
        // A local descriptor until connected: a throwing init of a fully initialized class
        // still runs deinit, which would close it a second time (and maybe someone else's).
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        guard let rc = UnixSocketAddress.with(path, { connect(fd, $0, $1) }) else {
            close(fd)
            throw POSIXError(.ENAMETOOLONG)
        }
        if rc != 0 {
            let code = errno
            close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Writes all of `bytes`; throws the `POSIXError` of `send` (`EPIPE` once the daemon closed).
    public func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            }
            offset += n
        }
    }

    /// Writes `text` as UTF-8.
    public func write(_ text: String) throws { try write(Array(text.utf8)) }

    /// Tells the daemon we are done (`shutdown(SHUT_WR)`): it answers the rest, then closes.
    public func finishWriting() { shutdown(fd, Int32(SHUT_WR)) }

    /// The next line without its `\n`, or nil once the peer closed the connection.
    ///
    /// - Parameter timeout: the longest wait for more bytes; nil waits as long as it takes.
    public func nextLine(timeout: Duration? = nil) throws -> String? {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            guard try fill(until: deadline) else { return nil }
        }
    }

    /// The next `count` bytes, or nil if the peer closed the connection first (for an HTTP
    /// body after its headers were read as lines).
    public func nextBytes(_ count: Int, timeout: Duration? = nil) throws -> [UInt8]? {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while pending.count < count {
            guard try fill(until: deadline) else { return nil }
        }
        defer { pending.removeSubrange(..<count) }
        return Array(pending[..<count])
    }

    /// Everything received until the peer closes the connection, including what
    /// ``nextLine(timeout:)`` had buffered.
    public func readToEnd(timeout: Duration?) throws -> String {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while try fill(until: deadline) {}
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Bytes received after the last line handed out.
    public var unreadText: String { String(decoding: pending, as: UTF8.self) }

    /// Reads more bytes; false at the end of the stream (or a reset).
    private func fill(until deadline: ContinuousClock.Instant?) throws -> Bool {
        if let deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = ContinuousClock.now.duration(to: deadline)
            let ms = Int32(clamping: max(0, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            let ready = poll(&poller, 1, ms)
            if ready == 0 { throw ReadTimeout() }
            if ready < 0 && errno == EINTR { return true }
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            if errno == EINTR { return true }
            if errno == ECONNRESET { return false }
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        if n == 0 { return false }
        pending.append(contentsOf: chunk[..<n])
        return true
    }
}
