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
    private let socketPath: [UInt8]?

    public init(environment: [String: String]) {
        if let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.first == "/" || path.first == "@" {
            socketPath = Array(path.utf8)
        } else {
            socketPath = nil
        }
    }

    public var isActive: Bool { socketPath != nil }

    /// Sends `message` (e.g. `"READY=1\nSTATUS=accepting events"`); failures are ignored, as
    /// systemd's own client does.
    public func notify(_ message: String) {
        guard var path = socketPath else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.count < capacity else { return }
        // An abstract name (`@name`) starts with a NUL byte, and its length is exact: padding
        // it to sizeof(sockaddr_un) would name a different socket.
        let abstract = path.first == UInt8(ascii: "@")
        if abstract { path[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
        let length = socklen_t(pathOffset + path.count + (abstract ? 0 : 1))
        let bytes = Array(message.utf8)
        _ = withUnsafePointer(to: &address) { addressPointer in
            addressPointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
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
