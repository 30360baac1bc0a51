import TrackQueueSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The single-instance lock: an exclusive `flock` on `<database>.lock`, held for the
/// daemon's life and released by the kernel when the process dies, however it dies.
///
/// The file holds the owner's pid for people and for `trackq status`, which can tell a
/// live daemon from a stale state record by trying the same lock.
public final class DatabaseLock: Sendable {
    public let path: String
    private let fd: Int32

    /// Takes the lock or throws ``StoreError/locked(path:pid:)`` naming the holder.
    public init(database: String) throws(StoreError) {
        path = database + ".lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw .io("cannot open \(path): \(errnoDescription())") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = readSmallFile(path).flatMap { Int32($0.filter { !$0.isWhitespace }) }
            close(fd)
            throw .locked(path: database, pid: holder)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = fd
    }

    /// Whether some process holds the lock on `database` now (for `trackq status`).
    public static func isHeld(database: String) -> Bool {
        let fd = open(database + ".lock", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return true
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
