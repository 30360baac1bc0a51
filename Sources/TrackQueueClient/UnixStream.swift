#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One blocking `SOCK_STREAM` connection to a Unix-domain socket.
///
/// Not thread-safe on its own: `TrackQueueClient` only touches it while holding its lock.
///
/// The daemon's `UnixLineConnection` (used by `trackq send` and the tests) does the same job,
/// but this library stays apart on purpose: apps link it without the daemon's dependencies
/// (SwiftNIO, SQLite, async-http-client), and it adds what an app needs and the CLI does not:
/// a timeout on connect, on every write and on every answer.
/// Every call handles `EINTR`, partial writes and partial reads; writes never raise `SIGPIPE`.
final class UnixStream {
    private var fd: Int32
    /// Bytes received after the last complete line handed out.
    private var pending: [UInt8] = []
    private let timeout: Duration

    /// Connects to `path`, waiting at most `timeout` (the same bound applies to every later
    /// write that cannot proceed, and to every wait for an answer line).
    init(path: String, timeout: Duration) throws(TrackQueueClientError) {
        self.timeout = timeout
        var address = sockaddr_un()
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else {
            throw .unreachable(socketPath: path, reason: "not a usable socket path (1 to \(capacity - 1) bytes, no NUL)")
        }
        #if canImport(Darwin)
        address.sun_len = UInt8(MemoryLayout<sockaddr_un>.size)
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #else
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #endif
        guard fd >= 0 else { throw .unreachable(socketPath: path, reason: Self.errorText(errno)) }
        self.fd = fd
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }

        #if canImport(Darwin)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        // SO_SNDTIMEO bounds both a blocking connect (a full listen backlog) and a blocked send
        // (a daemon that stopped reading).
        var limit = Self.socketTimeout(timeout)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout.size(ofValue: limit)))

        while true {
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if rc == 0 { break }
            let code = errno
            if code == EINTR { continue }
            if code == EISCONN { break }  // an interrupted connect that completed meanwhile
            closeNow()
            let reason = (code == EAGAIN || code == EWOULDBLOCK) ? "timed out (the daemon's backlog is full)" : Self.errorText(code)
            throw .unreachable(socketPath: path, reason: reason)
        }
    }

    deinit { closeNow() }

    var isOpen: Bool { fd >= 0 }

    func closeNow() {
        guard fd >= 0 else { return }
        _ = close(fd)  // never retried on EINTR: on Linux the descriptor is gone either way
        fd = -1
    }

    /// Writes all of `bytes`.
    func write(_ bytes: [UInt8]) throws(TrackQueueClientError) {
        guard fd >= 0 else { throw .closed }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { buffer in
                #if canImport(Darwin)
                send(fd, buffer.baseAddress! + offset, buffer.count - offset, 0)
                #else
                send(fd, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                #endif
            }
            if n >= 0 {
                offset += n
                continue
            }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: throw .timedOut(timeout)
            case EPIPE, ECONNRESET, ENOTCONN: throw .closed
            default: throw .io(Self.errorText(code))
            }
        }
    }

    /// The next line the peer sends, without its `\n` (and `\r`), waiting at most `timeout`.
    func readLine() throws(TrackQueueClientError) -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                var line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                if line.last == 0x0D { line.removeLast() }
                return line
            }
            try fill(until: deadline)
        }
    }

    /// Receives at least one more byte, or throws.
    private func fill(until deadline: ContinuousClock.Instant) throws(TrackQueueClientError) {
        guard fd >= 0 else { throw .closed }
        while true {
            let left = deadline - ContinuousClock.now
            if left <= .zero { throw .timedOut(timeout) }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Self.milliseconds(left))
            if ready < 0 {
                let code = errno
                if code == EINTR { continue }
                throw .io(Self.errorText(code))
            }
            if ready == 0 { continue }  // re-checks the deadline
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                pending.append(contentsOf: chunk[..<n])
                return
            }
            if n == 0 { throw .closed }
            let code = errno
            switch code {
            case EINTR, EAGAIN, EWOULDBLOCK: continue
            case ECONNRESET, ENOTCONN, EPIPE: throw .closed
            default: throw .io(Self.errorText(code))
            }
        }
    }

    static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    /// `duration` rounded up to whole milliseconds, clamped to what `poll` takes.
    private static func milliseconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        let ms = seconds.multipliedReportingOverflow(by: 1000)
        if ms.overflow || ms.partialValue > Int64(Int32.max) - 1 { return Int32.max }
        return Int32(ms.partialValue + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }

    private static func socketTimeout(_ duration: Duration) -> timeval {
        let (seconds, attoseconds) = duration.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) {
            // Zero would mean "no timeout" to the kernel: use the smallest real one instead.
            return makeTimeval(seconds: 0, microseconds: 1)
        }
        let clamped = min(seconds, Int64(Int32.max))
        return makeTimeval(seconds: clamped, microseconds: Int64(attoseconds / 1_000_000_000_000))
    }
}

/// `timeval`'s field types differ between platforms.
private func makeTimeval(seconds: Int64, microseconds: Int64) -> timeval {
    var value = timeval()
    value.tv_sec = .init(seconds)
    value.tv_usec = .init(microseconds)
    return value
}
