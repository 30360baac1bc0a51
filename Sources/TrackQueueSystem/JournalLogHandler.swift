import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Log lines for systemd's journal: each stderr line starts with its syslog priority
/// (`<2>critical: …` … `<7>debug: …`), which journald strips and records, so
/// `journalctl -p warning -u trackq` shows warnings and worse. The journal stamps the time
/// and the unit itself, so a line carries neither.
///
/// Used when ``isJournal(environment:fd:)`` says stderr is connected to the journal; a
/// terminal or a file keeps swift-log's `StreamLogHandler`.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level

    private let fd: Int32

    /// - Parameter fd: where lines go (stderr).
    public init(logLevel: Logger.Level = .info, fd: Int32 = 2) {
        self.logLevel = logLevel
        self.fd = fd
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        var bytes = Array(Self.line(level: event.level, message: event.message.description, metadata: merged).utf8)
        bytes.append(UInt8(ascii: "\n"))
        // One write per line, so lines from several threads never interleave mid-line.
        writeAll(bytes, to: fd)
    }

    /// syslog's priority for a level (`sd-daemon.h`'s `SD_CRIT` … `SD_DEBUG`).
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// `<P>level: message key=value …`, one line: a line break inside becomes `\n`, so one
    /// event is one journal entry with one priority.
    package static func line(level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        var line = "<\(priority(level))>\(level): \(message)"
        for key in metadata.keys.sorted() {
            line += " \(key)=\(metadata[key]!)"
        }
        guard line.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }) else { return line }
        return line.replacingLineBreaks()
    }

    /// Whether `fd` is the journal's stream: systemd sets `JOURNAL_STREAM` to the device and
    /// inode of the stream it connects stdout/stderr to (`"dev:inode"`); if stderr was
    /// redirected since, they differ (systemd.exec(5)).
    public static func isJournal(environment: [String: String], fd: Int32 = 2) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}

extension String {
    fileprivate func replacingLineBreaks() -> String {
        var out = ""
        out.reserveCapacity(utf8.count + 8)
        for scalar in unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
