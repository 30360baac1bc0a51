#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A `sockaddr_un` for a path, for `bind`, `connect` and `sendto` on Unix-domain sockets.
public enum UnixSocketAddress {
    /// Calls `body` with the address of `path` and its exact length.
    ///
    /// - Parameters:
    ///   - abstract: when true, a leading `@` names a Linux abstract socket (as in systemd's
    ///     `NOTIFY_SOCKET`): it becomes a NUL byte and the length counts no terminator, since
    ///     padding would name a different socket.
    /// - Returns: what `body` returns, or nil when `path` is empty or does not fit.
    public static func with<T>(
        _ path: String, abstract: Bool = false, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T
    ) -> T? {
        var bytes = Array(path.utf8)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else { return nil }
        let isAbstract = abstract && bytes[0] == UInt8(ascii: "@")
        if isAbstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let offset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
        let length = socklen_t(offset + bytes.count + (isAbstract ? 0 : 1))
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}
