import Foundation
import Testing

@testable import TrackQueue

/// `trackq top` (issue 23): the view from made-up reads, and the real command in a
/// pseudo-terminal (Python's pty), quit with q.
@Suite struct TopTests {
    private static let now = StatusReportTests.now

    /// Reads a second apart: `accepted` and `delivered` grow by the given rates, the queue by
    /// their difference.
    private static func view(
        seconds: Int, ingest: Int64, delivery: Int64, pending: Int64 = 100_000, bytesPerEvent: Int64 = 300,
        free: Int64? = 50_000_000_000, configure: (inout StatusReport, Int) -> Void = { _, _ in }
    ) -> TopView {
        var view = TopView()
        for second in 0...seconds {
            var report = StatusReportTests.healthy
            let s = Int64(second)
            report.totals.accepted = 10_000 + ingest * s
            report.totals.delivered = 8_000 + delivery * s
            report.queue.pending = pending + (ingest - delivery) * s
            report.queue.pendingBytes = report.queue.pending * bytesPerEvent
            configure(&report, second)
            view.add(.init(atMillis: now - Int64(seconds - second) * 1000, report: report, freeDiskBytes: free))
        }
        return view
    }

    @Test func ratesAndADrainingQueueSayWhenItIsEmpty() {
        let view = Self.view(seconds: 12, ingest: 1_000, delivery: 3_000)
        let rates = view.rates(over: 10)
        #expect(rates == .init(ingest: 1_000, delivery: 3_000, queueEvents: -2_000, queueBytes: -600_000))
        let lines = view.lines()
        #expect(lines.contains("ingest   1,000 events/s  (last 10 s: 1,000)"))
        #expect(lines.contains("deliver  3,000 events/s  (last 10 s: 3,000)"))
        // 100,000 - 2,000 × 12 = 76,000 left at 2,000 a second: 38 s.
        #expect(lines.contains("trend    −2,000 events/s; drained in about 38s"))
        #expect(lines.allSatisfy { $0.count <= 80 })
    }

    @Test func aGrowingQueueSaysWhenTheDiskIsFull() {
        let view = Self.view(seconds: 5, ingest: 5_000, delivery: 0, free: 3_000_000_000)
        // 5,000 events a second of 300 bytes: 1.5 MB/s into 3 GB: 2,000 s.
        #expect(view.lines().contains("trend    +5,000 events/s; the disk (2.8 GiB free) full in about 33m 20s"))
    }

    @Test func theLastAnswersAlertsAndTheWindowAreShownOnOneLineEach() {
        let view = Self.view(seconds: 3, ingest: 10, delivery: 0) { report, second in
            report.delivery.lastAttemptAtMillis = Self.now - Int64(3 - second) * 1000
            report.delivery.lastStatus = second % 2 == 0 ? 503 : nil
            report.delivery.lastError = second % 2 == 0 ? "down\nFAKE LINE" : "connection refused"
            report.delivery.state = .window
            report.alert = .init(kind: .tls, status: 0, sinceMillis: Self.now, message: "TLS: the API's certificate expired\non x")
        }
        let lines = view.lines()
        #expect(view.answers.count == 4)
        #expect(lines.contains("answers  just now: connection refused"))  // the newest first
        #expect(lines.contains("         3s ago: HTTP 503: down FAKE LINE"))
        #expect(lines.contains("ALERT    tls: TLS: the API's certificate expired on x"))
        #expect(lines.contains { $0.hasPrefix("delivery waiting for the send window") })
        #expect(!lines.joined().contains("\n"))
    }

    @Test func narrowTerminalsGetLinesCutAndAClockSteppedBackStartsTheRatesOver() {
        var view = Self.view(seconds: 3, ingest: 100, delivery: 100)
        #expect(view.lines(width: 40).allSatisfy { $0.count <= 40 })
        view.add(.init(atMillis: Self.now - 60_000, report: StatusReportTests.healthy))
        #expect(view.samples.count == 1)
        #expect(view.rates(over: 10) == nil)
        #expect(view.lines().contains("ingest   — events/s  (last 10 s: —)"))
    }

    @Test func countersFromADamagedFileAndAHostilePathNeitherTrapNorReachTheTerminal() {
        var view = TopView()
        var report = StatusReportTests.healthy
        report.totals.accepted = 0
        report.queue.pending = Int64.min
        view.add(.init(atMillis: Self.now - 1, report: report))
        report.totals.accepted = Int64.max
        report.queue.pending = Int64.max
        report.database.path = "/tmp/\u{1B}[2Jq.db"
        view.add(.init(atMillis: Self.now, report: report, freeDiskBytes: Int64.max))
        let lines = view.lines()
        #expect(lines.contains("ingest   — events/s  (last 10 s: —)"))
        #expect(lines.contains("trend    −1,000 events/s"))  // wrapped, not trapped; no time given
        #expect(!lines.joined().contains("\u{1B}"))
    }

    /// `trackq top` in a pseudo-terminal of 80 columns (Python's pty), ended after two frames
    /// by `end` (`q`, or a signal's name): what it wrote, then `EXIT n` (a signal: minus its
    /// number) and `ECHO 1` when the terminal has its echo back.
    private static func runInTerminal(database: String, end: String) throws -> String {
        let driver = """
            import os, pty, select, signal, sys, time, struct, fcntl, termios
            pid, fd = pty.fork()
            if pid == 0:
                os.execv(sys.argv[1], [sys.argv[1], "top", "--database", sys.argv[2]])
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            out = b""
            deadline = time.time() + 20
            frames = 0
            while time.time() < deadline and frames < 2:
                if select.select([fd], [], [], 0.5)[0]:
                    out += os.read(fd, 65536)
                    frames = out.count(b"\\x1b[H")
            if sys.argv[3] == "q":
                os.write(fd, b"q")
            else:
                os.kill(pid, getattr(signal, "SIG" + sys.argv[3]))
            while time.time() < deadline:
                if not select.select([fd], [], [], 0.2)[0]:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            echo = termios.tcgetattr(fd)[3] & termios.ECHO != 0
            _, status = os.waitpid(pid, 0)
            sys.stdout.write(out.decode(errors="replace"))
            sys.stdout.write("\\nEXIT %d ECHO %d\\n" % (os.waitstatus_to_exitcode(status), echo))
            """
        let result = try runCommand("/usr/bin/env", ["python3", "-c", driver, TrackqBinary.path, database, end])
        return result.stdout + result.stderr
    }

    /// It draws on the alternate screen, refreshes, and q quits with exit status 0 and the
    /// terminal restored.
    @Test(.enabled(if: which("python3") != nil, "python3 is not installed"))
    func theCommandDrawsInATerminalAndQuitsOnQ() async throws {
        let dir = try TestDirectory()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", "http://127.0.0.1:9/api/track", "--retry-max", "1h"], environment: ["TRACKQ_TOKEN": "t"])
        try DeliveryTests.enqueue(25, socket: dir.socket)
        let output = try Self.runInTerminal(database: dir.database, end: "q")
        #expect(output.hasSuffix("EXIT 0 ECHO 1\n"), "\(output.suffix(300))")
        #expect(output.contains("\u{1B}[?1049h") && output.contains("\u{1B}[?1049l"))
        #expect(output.components(separatedBy: "\u{1B}[H").count >= 3)  // two frames at least
        #expect(output.contains("queue    25 events"))
        #expect(output.contains("trackq top — "))
        // Every drawn line fits 80 columns.
        for frame in output.components(separatedBy: "\u{1B}[H").dropFirst() {
            for line in frame.components(separatedBy: "\r\n") {
                let visible = line.replacingOccurrences(of: "\u{1B}[K", with: "").replacingOccurrences(of: "\u{1B}[J", with: "")
                #expect(visible.count <= 80 || visible.contains("\u{1B}"), "\(visible)")
            }
        }
        // Ended by a signal (kill, timeout, a closed ssh session), it leaves the terminal as it was.
        for name in ["TERM", "HUP"] {
            let ended = try Self.runInTerminal(database: dir.database, end: name)
            #expect(ended.hasSuffix("ECHO 1\n"), "SIG\(name): \(ended.suffix(200))")
            #expect(ended.contains("EXIT -\(name == "TERM" ? SIGTERM : SIGHUP) "), "SIG\(name): \(ended.suffix(200))")
            let afterLastFrame = ended.components(separatedBy: "\u{1B}[H").last ?? ""
            #expect(afterLastFrame.contains("\u{1B}[?1049l"), "SIG\(name)")
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test func withoutATerminalItPrintsOneViewWithRates() async throws {
        let dir = try TestDirectory()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", "http://127.0.0.1:9/api/track", "--retry-max", "1h"], environment: ["TRACKQ_TOKEN": "t"])
        try DeliveryTests.enqueue(3, socket: dir.socket)
        let result = try runCommand(TrackqBinary.path, ["top", "--database", dir.database, "--sample", "1"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("queue    3 events"))
        #expect(result.stdout.contains("ingest   0 events/s"))
        #expect(!result.stdout.contains("\u{1B}"))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }
}
