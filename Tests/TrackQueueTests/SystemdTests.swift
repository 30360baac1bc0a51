import Foundation
import Testing

@testable import TrackQueue

/// The daemon under systemd's protocols: sd_notify and socket activation.
@Suite struct SystemdTests {
    /// A datagram socket standing in for systemd's notify socket.
    final class NotifyReceiver {
        let fd: Int32
        let path: String

        /// - Parameter path: a file path, or `@name` for an abstract socket.
        init(path: String) throws {
            self.path = path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            let rc = UnixSocketAddress.with(path, abstract: true) { bind(fd, $0, $1) }
            guard rc == 0 else { throw POSIXError(.EADDRINUSE) }
        }

        /// Every message received so far (non-blocking).
        func drain() -> [String] {
            var out: [String] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n <= 0 { return out }
                out.append(String(decoding: buffer[..<n], as: UTF8.self))
            }
        }

        deinit { close(fd) }
    }

    @Test func notifiesReadyStatusAndStopping() async throws {
        let dir = try TestDirectory()
        let receiver = try NotifyReceiver(path: dir.file("notify"))
        let daemon = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", dir.database, "--endpoint", DaemonProcessTests.nowhere],
            environment: ["NOTIFY_SOCKET": receiver.path, "TRACKQ_TOKEN": "t"], stderrFile: dir.file("log"))
        var messages: [String] = []
        try await waitUntil("READY=1") {
            messages += receiver.drain()
            return messages.contains { $0.split(separator: "\n").contains("READY=1") }
        }
        // Ready means ready: the socket takes events now.
        let client = try UnixClient(path: dir.socket)
        try client.write(#"{"event_name":"e","user_id":"u"}"# + "\n")
        #expect(try Answer(client.readLine()).ok)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        messages += receiver.drain()
        #expect(messages.contains { $0.contains("STOPPING=1") })
        #expect(messages.contains { $0.contains("STATUS=") })
    }

    @Test func notifiesAnAbstractSocketByItsExactName() throws {
        // The name's length is exact: padded to sizeof(sockaddr_un) it would name another socket.
        let receiver = try NotifyReceiver(path: "@trackq-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.path]).notify("READY=1")
        #expect(receiver.drain() == ["READY=1"])
    }

    @Test(.enabled(if: which("systemd-socket-activate") != nil, "systemd-socket-activate is not installed"))
    func adoptsASocketPassedBySocketActivation() async throws {
        let dir = try TestDirectory()
        let activated = dir.file("activated.sock")
        // systemd-socket-activate binds the socket, then execs trackq with LISTEN_FDS=1 on fd 3.
        let launcher = try TrackqProcess.launch(
            executable: try #require(which("systemd-socket-activate")),
            [
                "-l", activated, "-E", "TRACKQ_TOKEN=t", TrackqBinary.path, "daemon",
                "--socket", dir.file("unused.sock"), "--database", dir.database, "--endpoint", DaemonProcessTests.nowhere,
            ],
            stderrFile: dir.file("log"))
        try await waitUntil("the activated socket") { FileManager.default.fileExists(atPath: activated) }
        // The first connection starts trackq, which takes over the listening socket.
        let client = try UnixClient(path: activated)
        try client.write(#"{"event_name":"activated","user_id":"u"}"# + "\n")
        #expect(try Answer(client.readLine()).accepted == 1)
        #expect(!FileManager.default.fileExists(atPath: dir.file("unused.sock")))
        #expect(try DatabaseProbe(path: dir.database).queued == 1)
        launcher.signal(SIGTERM)
        #expect(try await launcher.waitForExit() == 0)
        // The socket's file belongs to whoever bound it (systemd): the daemon leaves it.
        var info = stat()
        #expect(lstat(activated, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK)
    }

    /// Under systemd, stderr is the journal (`JOURNAL_STREAM` names its device and inode):
    /// every line starts with its syslog priority, so `journalctl -p warning` works.
    @Test func linesCarryTheirSyslogPriorityWhenStderrIsTheJournal() async throws {
        let dir = try TestDirectory()
        // The shell sets JOURNAL_STREAM to its own stderr's device:inode, as systemd does.
        let script = #"JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$0" "$@""#
        let daemon = try TrackqProcess.launch(
            executable: "/bin/sh",
            [
                "-c", script, TrackqBinary.path, "daemon", "--socket", dir.socket, "--database", dir.database,
                "--endpoint", DaemonProcessTests.nowhere,
            ],
            stderrFile: dir.file("log"))
        try await waitUntil("the daemon's socket") { UnixClient.canConnect(dir.socket) }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        let lines = daemon.stderr.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let prefix = #"^<[2-7]>(trace|debug|info|notice|warning|error|critical): "#
            #expect(line.range(of: prefix, options: .regularExpression) != nil, "\(line)")
        }
        #expect(lines.contains { $0.hasPrefix("<5>notice: ready") })
        // No token configured: a warning, at priority 4.
        #expect(lines.contains { $0.hasPrefix("<4>warning: ") })
    }

    @Test func aJournalStreamThatIsNotStderrLeavesLinesPlain() async throws {
        let dir = try TestDirectory()
        let daemon = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", dir.database, "--endpoint", DaemonProcessTests.nowhere],
            environment: ["JOURNAL_STREAM": "1:1"], stderrFile: dir.file("log"))
        try await waitUntil("the daemon's socket") { UnixClient.canConnect(dir.socket) }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        #expect(!daemon.stderr.isEmpty)
        #expect(!daemon.stderr.contains("<5>"))
    }

    @Test func aJournalLineIsOneLineWithItsPriority() {
        #expect(
            JournalLogHandler.line(level: .critical, message: "a\nb\rc", metadata: ["k": "v\n", "a": "1"])
                == #"<2>critical: a\nb\rc a=1 k=v\n"#)
        #expect(JournalLogHandler.priority(.trace) == 7 && JournalLogHandler.priority(.debug) == 7)
        #expect(JournalLogHandler.priority(.info) == 6 && JournalLogHandler.priority(.notice) == 5)
        #expect(JournalLogHandler.priority(.warning) == 4 && JournalLogHandler.priority(.error) == 3)
    }

    /// systemd starts services with a soft limit of 1024 open files, fewer than the 1024
    /// connections the daemon admits plus its own: the daemon raises it to the hard limit.
    @Test func raisesItsOpenFilesLimitAboveItsConnectionLimit() async throws {
        let dir = try TestDirectory()
        let daemon = try TrackqProcess.launch(
            executable: "/bin/sh",
            [
                "-c", #"ulimit -Sn 1024 && ulimit -Hn 4096 && exec "$0" "$@""#, TrackqBinary.path, "daemon",
                "--socket", dir.socket, "--database", dir.database, "--endpoint", DaemonProcessTests.nowhere,
            ],
            stderrFile: dir.file("log"))
        try await waitUntil("the daemon's socket") { UnixClient.canConnect(dir.socket) }
        let limits = try String(contentsOfFile: "/proc/\(daemon.pid)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let soft = line.split(separator: " ", omittingEmptySubsequences: true)[3]
        #expect(soft == "4096", "\(line)")
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }
}
