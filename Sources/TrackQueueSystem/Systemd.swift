import TrackQueueSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `sd_notify(3)` without libsystemd: one datagram to `$NOTIFY_SOCKET` per message.
///
/// Does nothing when the daemon was not started by systemd with `Type=notify`.
public struct SystemdNotifier: Sendable {
    private let socketPath: String?

    public init(environment: [String: String]) {
        if let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.first == "/" || path.first == "@" {
            socketPath = path
        } else {
            socketPath = nil
        }
    }

    /// systemd's one-line status, `STATUS=`: `text` is made one printable line first, so
    /// nothing in it can become an assignment of its own (`\nSTOPPING=1`).
    public func status(_ text: String) {
        notify("STATUS=" + Printable.oneLine(text, limit: 200))
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC=` stamp systemd (253 and later) asks for; follow
    /// it with `READY=1` when the reload is done.
    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        notify("RELOADING=1\nMONOTONIC_USEC=\(Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000)")
    }

    /// Sends `message` (e.g. `"READY=1\nSTATUS=accepting events"`), trackq's own text only;
    /// failures are ignored, as systemd's own client does.
    public func notify(_ message: String) {
        guard let path = socketPath else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(message.utf8)
        _ = UnixSocketAddress.with(path, abstract: true) { address, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), address, length) }
        }
    }
}

/// systemd socket activation: the listening socket passed as fd 3.
public enum SocketActivation {
    /// The first inherited listening fd when `LISTEN_PID` names this process, else nil.
    public static func listeningSocket(environment: [String: String], pid: Int32 = getpid()) -> Int32? {
        guard let pidText = environment["LISTEN_PID"], Int32(pidText) == pid,
            let countText = environment["LISTEN_FDS"], let count = Int(countText), count >= 1
        else { return nil }
        return 3  // SD_LISTEN_FDS_START
    }

    /// The watchdog interval from `WATCHDOG_USEC` (when `WATCHDOG_PID`, if set, is us).
    public static func watchdogInterval(environment: [String: String], pid: Int32 = getpid()) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = Int64(text), usec > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], Int32(owner) != pid { return nil }
        return .microseconds(usec)
    }
}
