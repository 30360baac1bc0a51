import ArgumentParser
import Foundation
import TrackQueue

#if canImport(Glibc)
import Glibc
#endif

struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "A live view in the terminal: rates, the queue and its trend, the last answers, alerts.",
        discussion: """
            Reads the status every second, read-only, as `trackq status` does. q (or Ctrl-C) \
            quits. Fits 80 columns. When standard output is not a terminal, prints one view \
            (with rates over --sample seconds) and exits.
            """)

    @OptionGroup var location: LocationOptions

    @Option(help: "Without a terminal: seconds to watch before the one view is printed (rates need two reads).")
    var sample: Int = 2

    func validate() throws {
        guard (1...60).contains(sample) else { throw ValidationError("--sample must be 1 to 60 seconds") }
    }

    func run() throws {
        let path = location.paths.database
        let endpoint = ProcessInfo.processInfo.environment["TRACKQ_ENDPOINT"]
        var view = TopView()
        var failure: String?
        func read() {
            do {
                let report = try StatusReader.read(database: path, endpoint: endpoint)
                view.add(.init(atMillis: SystemClock.wallMillis(), report: report, freeDiskBytes: Self.freeBytes(near: path)))
                failure = nil
            } catch {
                failure = "status unknown: \(error)"
            }
        }
        guard isatty(STDOUT_FILENO) == 1 else {
            for second in 0...sample {
                if second > 0 { Thread.sleep(forTimeInterval: 1) }
                read()
            }
            if let failure {
                printError(failure)
                throw ExitCode(3)
            }
            print(view.lines().joined(separator: "\n"))
            return
        }
        let terminal = RawTerminal()
        defer { terminal.restore() }
        while true {
            read()
            let size = RawTerminal.size()
            var lines = view.lines(width: size.columns)
            if let failure { lines.insert(StatusReport.oneLine(failure), at: 0) }
            terminal.draw(Array(lines.prefix(max(1, size.rows))))
            if terminal.quitPressed(within: 1000) { return }
        }
    }

    /// Free bytes on the file system holding `path`'s directory.
    static func freeBytes(near path: String) -> Int64? {
        var stats = statvfs()
        let directory = (path as NSString).deletingLastPathComponent
        guard statvfs(directory.isEmpty ? "." : directory, &stats) == 0 else { return nil }
        // A file system may report anything (FUSE, network ones: all ones): clamped, never a trap.
        let (bytes, overflow) = Int64(clamping: stats.f_bavail).multipliedReportingOverflow(by: Int64(clamping: stats.f_frsize))
        return overflow ? Int64.max : bytes
    }
}

/// The terminal's settings before raw mode, for a signal handler to put back: globals, since
/// a C handler captures nothing. Written once before the handlers are installed.
nonisolated(unsafe) private var savedTerminal = termios()
nonisolated(unsafe) private var terminalIsRaw = false

/// Shows the cursor again and leaves the alternate screen.
private let leaveScreen: StaticString = "\u{1B}[?25h\u{1B}[?1049l"

/// SIGTERM, SIGHUP, SIGQUIT (a `kill`, `timeout`, a closed ssh session): the terminal as it
/// was, then the signal's own end. Only async-signal-safe calls.
private func restoreTerminalAndEnd(_ signal: Int32) {
    if terminalIsRaw { _ = tcsetattr(STDIN_FILENO, TCSANOW, &savedTerminal) }
    _ = write(STDOUT_FILENO, leaveScreen.utf8Start, leaveScreen.utf8CodeUnitCount)
    _ = Glibc.signal(signal, SIG_DFL)
    _ = raise(signal)
}

/// The terminal in raw mode on the alternate screen, restored on the way out (and on the
/// signals that would end the command without it).
private final class RawTerminal {
    private var saved = termios()
    private let rawInput: Bool

    init() {
        rawInput = isatty(STDIN_FILENO) == 1 && tcgetattr(STDIN_FILENO, &saved) == 0
        savedTerminal = saved
        terminalIsRaw = rawInput
        for number in [SIGTERM, SIGHUP, SIGQUIT] { _ = signal(number, restoreTerminalAndEnd) }
        if rawInput {
            var raw = saved
            // Keys one at a time, not echoed; Ctrl-C arrives as a byte (3), so the terminal
            // is always restored.
            raw.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG)
            _ = tcsetattr(STDIN_FILENO, TCSANOW, &raw)
        }
        write("\u{1B}[?1049h\u{1B}[?25l")
    }

    func restore() {
        write("\(leaveScreen)")
        if rawInput { _ = tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
    }

    func draw(_ lines: [String]) {
        write("\u{1B}[H" + lines.map { $0 + "\u{1B}[K" }.joined(separator: "\r\n") + "\u{1B}[J")
    }

    /// Waits up to `millis` for a key; whether it was q, Q or Ctrl-C.
    func quitPressed(within millis: Int32) -> Bool {
        guard rawInput else {
            Thread.sleep(forTimeInterval: Double(millis) / 1000)
            return false
        }
        var poller = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, millis) > 0 else { return false }
        var byte: UInt8 = 0
        let n = read(STDIN_FILENO, &byte, 1)
        // End of input (the terminal went away) quits too.
        return n <= 0 || byte == UInt8(ascii: "q") || byte == UInt8(ascii: "Q") || byte == 3
    }

    static func size() -> (columns: Int, rows: Int) {
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return (80, 24) }
        return (Int(size.ws_col), Int(size.ws_row))
    }

    private func write(_ text: String) {
        writeAll(Array(text.utf8), to: STDOUT_FILENO)
    }
}
