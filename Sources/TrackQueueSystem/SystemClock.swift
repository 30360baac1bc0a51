import CClock

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Readings of the machine's clocks, for stamping accepted events.
///
/// Edge hosts without a real-time clock boot with a wrong wall clock until NTP syncs, so each
/// event also records `CLOCK_BOOTTIME` (which counts suspend and never jumps) and the boot
/// it was taken in: later code can then measure an event's age, or repair its wall time,
/// without trusting the wall clock alone.
public enum SystemClock {
    /// Milliseconds since the Unix epoch, from the wall clock.
    public static func wallMillis() -> Int64 {
        millis(CLOCK_REALTIME)
    }

    /// Milliseconds since boot, including time suspended.
    public static func boottimeMillis() -> Int64 {
        #if os(Linux)
        millis(CLOCK_BOOTTIME)
        #else
        millis(CLOCK_MONOTONIC)
        #endif
    }

    /// Nanoseconds on `CLOCK_MONOTONIC`, for measuring short intervals in the process.
    public static func monotonicNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// What is stored for a boot whose id cannot be read: every such boot shares this row of
    /// `boots`.
    package static let unknownBootID = "unknown"

    /// This boot's id (`/proc/sys/kernel/random/boot_id`), or `"unknown"` where there is none.
    public static let bootID: String = readBootID() ?? unknownBootID

    /// This boot's id, or nil where it cannot be read. Only a UUID's characters are taken,
    /// so a strange file cannot put anything else into the database or a log.
    package static func readBootID() -> String? {
        guard let text = readSmallFile("/proc/sys/kernel/random/boot_id", limit: 64) else { return nil }
        let trimmed = text.filter { !$0.isWhitespace }
        guard (1...40).contains(trimmed.count), trimmed.allSatisfy({ $0.isHexDigit || $0 == "-" }) else { return nil }
        return trimmed
    }

    /// Whether the kernel says the wall clock is synchronized (`adjtimex`: no `STA_UNSYNC`).
    /// Under systemd's `ProtectClock=`, which refuses `adjtimex` even to read, the flag
    /// systemd-timesyncd leaves in `/run/systemd/timesync/synchronized` says synced; with
    /// neither, nil: the kernel cannot be asked.
    @Sendable public static func kernelSynced() -> Bool? {
        switch cclock_kernel_synced() {
        case 1: return true
        case 0: return false
        default: return access("/run/systemd/timesync/synchronized", F_OK) == 0 ? true : nil
        }
    }

    private static func millis(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// Reads a small text file with plain POSIX calls; nil when it cannot be read.
package func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    guard case .success(let bytes) = readFileBytes(path, limit: limit) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

/// Why a file could not be read: the `errno` of the call that failed.
package struct FileReadError: Error, Sendable, Equatable {
    package var code: Int32

    /// `no such file or directory`.
    package var reason: String { errnoDescription(code).lowercased() }
}

/// Reads a file with plain POSIX calls, 4 KiB at a time, until its end or until `limit` bytes
/// or more are in (a caller that must refuse a larger file asks for one byte more).
package func readFileBytes(_ path: String, limit: Int) -> Result<[UInt8], FileReadError> {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return .failure(FileReadError(code: errno)) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(FileReadError(code: errno))
        }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return .success(bytes)
}

/// Writes all of `bytes` to `fd`, again after an interruption; false once the descriptor
/// takes no more (stderr or the terminal is gone: nothing better to do).
@discardableResult
package func writeAll(_ bytes: [UInt8], to fd: Int32) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n > 0 {
            offset += n
        } else if n < 0 && errno == EINTR {
            continue
        } else {
            return false
        }
    }
    return true
}

/// Seconds since local midnight at `wallMillis`, in the host's time zone (`TZ`, else
/// /etc/localtime), as `localtime_r` says: for `--send-window`.
package func localSecondOfDay(wallMillis: Int64) -> Int {
    var seconds = time_t(wallMillis / 1000)
    var parts = tm()
    guard localtime_r(&seconds, &parts) != nil else {
        return Int(((wallMillis / 1000) % 86_400 + 86_400) % 86_400)
    }
    return Int(parts.tm_hour) * 3600 + Int(parts.tm_min) * 60 + Int(parts.tm_sec)
}
