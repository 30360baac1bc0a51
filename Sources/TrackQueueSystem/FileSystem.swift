#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The few file-system operations the daemon needs, as plain POSIX calls.
package enum FileSystem {
    /// Creates the directory holding `path`, and its missing parents, with `mode` (0750 by
    /// the contract). Existing directories are left as they are.
    ///
    /// A directory inside a world-writable one (`/tmp/trackq-$UID`) could have been made by
    /// someone else to catch our socket or database: it must be a real directory (not a
    /// link), owned by us, and writable by nobody else, or it is refused.
    package static func createParentDirectories(of path: String, mode: mode_t = 0o750) throws(FileSystemError) {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        let directory = String(path[..<slash])
        try createDirectories(directory, mode: mode)
        if let up = directory.lastIndex(of: "/") {
            let parent = up == directory.startIndex ? "/" : String(directory[..<up])
            var info = stat()
            if stat(parent, &info) == 0, info.st_mode & 0o002 != 0 {
                try checkOwnDirectory(directory)
            }
        }
    }

    /// Refuses `directory` unless it is a directory (not a symbolic link), owned by this
    /// user, and neither group- nor world-writable.
    package static func checkOwnDirectory(_ directory: String) throws(FileSystemError) {
        var info = stat()
        guard lstat(directory, &info) == 0 else { throw FileSystemError("cannot inspect \(directory): \(errnoDescription())") }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw FileSystemError("\(directory) is not a directory (a link?); remove it or choose another --socket/--database")
        }
        guard info.st_uid == getuid() else {
            throw FileSystemError(
                "\(directory) belongs to another user (uid \(info.st_uid)); remove it or choose another --socket/--database")
        }
        guard info.st_mode & 0o022 == 0 else {
            throw FileSystemError("\(directory) is writable by others (mode 0\(String(info.st_mode & 0o777, radix: 8))); chmod it 0750")
        }
    }

    package static func createDirectories(_ directory: String, mode: mode_t) throws(FileSystemError) {
        var isDirectory = stat()
        if stat(directory, &isDirectory) == 0 { return }
        if let slash = directory.lastIndex(of: "/"), slash != directory.startIndex {
            try createDirectories(String(directory[..<slash]), mode: mode)
        }
        if mkdir(directory, mode) != 0 && errno != EEXIST {
            throw FileSystemError("cannot create directory \(directory): \(errnoDescription())")
        }
        // mkdir applies the umask; the contract asks for exactly `mode`.
        _ = chmod(directory, mode)
    }
}

/// The text of the current `errno`.
package func errnoDescription(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}

/// A file or directory trackq needs is missing, of the wrong kind, owned by someone else, or
/// cannot be created: the message names the path and what to do.
public struct FileSystemError: Error, Sendable, CustomStringConvertible {
    public var description: String

    package init(_ description: String) { self.description = description }
}
