#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The few file-system operations the daemon needs, as plain POSIX calls.
enum FileSystem {
    /// Creates the directory holding `path`, and its missing parents, with `mode` (0750 by
    /// the contract). Existing directories are left as they are.
    static func createParentDirectories(of path: String, mode: mode_t = 0o750) throws(StoreError) {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        try createDirectories(String(path[..<slash]), mode: mode)
    }

    static func createDirectories(_ directory: String, mode: mode_t) throws(StoreError) {
        var isDirectory = stat()
        if stat(directory, &isDirectory) == 0 { return }
        if let slash = directory.lastIndex(of: "/"), slash != directory.startIndex {
            try createDirectories(String(directory[..<slash]), mode: mode)
        }
        if mkdir(directory, mode) != 0 && errno != EEXIST {
            throw .io("cannot create directory \(directory): \(errnoDescription())")
        }
        // mkdir applies the umask; the contract asks for exactly `mode`.
        _ = chmod(directory, mode)
    }
}

/// The text of the current `errno`.
func errnoDescription(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
