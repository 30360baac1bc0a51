import Foundation
import Testing

@testable import TrackQueue

/// The host around the daemon: signals that come early, files others could read, sockets
/// and directories others made.
@Suite struct HostileHostTests {
    static let nowhere = DaemonProcessTests.nowhere

    @Test func theDatabaseAndItsFilesAreReadableByTheDaemonsUserOnly() async throws {
        let dir = try TestDirectory()
        let database = dir.path + "/state/deeper/queue.db"
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--database", database, "--endpoint", Self.nowhere], environment: ["TRACKQ_TOKEN": "t"])
        try DeliveryTests.enqueue(1, socket: dir.socket)
        for file in [database, database + "-wal", database + "-shm", database + ".lock"] {
            var info = stat()
            #expect(stat(file, &info) == 0, "\(file)")
            #expect(info.st_mode & 0o077 == 0, "\(file): 0\(String(info.st_mode & 0o777, radix: 8))")
        }
        for directory in [dir.path + "/state", dir.path + "/state/deeper"] {
            var info = stat()
            #expect(stat(directory, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o750, "\(directory): 0\(String(info.st_mode & 0o777, radix: 8))")
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// `systemctl reload` right after start: SIGHUP is taken care of before anything slow
    /// (the database, the socket), so one that comes while the daemon starts cannot end it.
    @Test func signalHandlingComesFirstSoASIGHUPDuringStartDoesNotKill() async throws {
        let dir = try TestDirectory()
        let daemon = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", dir.database, "--endpoint", Self.nowhere],
            environment: ["TRACKQ_TOKEN": "t"], stderrFile: dir.file("log"))
        // Watch closely for the moment SIGHUP stops being deadly (SigIgn's bit 0).
        let deadline = ContinuousClock.now + .seconds(20)
        var socketExisted: Bool?
        while ContinuousClock.now < deadline && daemon.process.isRunning {
            guard let status = try? String(contentsOfFile: "/proc/\(daemon.pid)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigIgn:") }),
                let mask = UInt64(line.dropFirst("SigIgn:".count).trimmingCharacters(in: .whitespaces), radix: 16)
            else { continue }
            if mask & 1 != 0 {
                socketExisted = FileManager.default.fileExists(atPath: dir.socket)
                break
            }
            try await Task.sleep(for: .microseconds(200))
        }
        #expect(socketExisted == false, "SIGHUP was still deadly once the socket existed")
        let socket = dir.socket
        try await waitUntil("the socket, under a storm of SIGHUPs") {
            daemon.signal(SIGHUP)
            guard daemon.process.isRunning else { throw EndOfStream(partial: "ended: \(daemon.process.terminationReason)") }
            return UnixClient.canConnect(socket)
        }
        try DeliveryTests.enqueue(1, socket: dir.socket)
        #expect(daemon.process.isRunning)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// Only a refused connection proves a socket stale: another program's datagram socket at
    /// the path (connect fails with EPROTOTYPE) is left alone.
    @Test func aSocketThatIsNotProvablyStaleIsNotDeleted() async throws {
        let dir = try TestDirectory()
        let other = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(other) }
        #expect(UnixSocketAddress.with(dir.socket, { bind(other, $0, $1) }) == 0)
        let daemon = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", dir.database, "--endpoint", Self.nowhere],
            environment: ["TRACKQ_TOKEN": "t"], stderrFile: dir.file("log"))
        #expect(try await daemon.waitForExit() == 1)
        #expect(daemon.stderr.contains("cannot tell whether"))
        var info = stat()
        #expect(lstat(dir.socket, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK, "still there")
    }

    /// `/tmp/trackq-$UID` could have been made by another user, to catch the socket: a
    /// directory inside a world-writable one must be ours and writable by nobody else.
    @Test func aDirectoryOthersCouldHavePreparedIsRefused() async throws {
        let dir = try TestDirectory()
        let shared = dir.file("tmp")
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: false)
        chmod(shared, 0o1777)
        let planted = shared + "/trackq-\(getuid())"
        try FileManager.default.createDirectory(atPath: planted, withIntermediateDirectories: false)
        chmod(planted, 0o777)
        let daemon = try TrackqProcess(
            ["daemon", "--socket", planted + "/trackq.sock", "--database", dir.database, "--endpoint", Self.nowhere],
            environment: ["TRACKQ_TOKEN": "t"], stderrFile: dir.file("log"))
        #expect(try await daemon.waitForExit() == 1)
        #expect(daemon.stderr.contains("writable by others"))
        #expect(!FileManager.default.fileExists(atPath: planted + "/trackq.sock"))

        // Made private, the same directory is fine.
        chmod(planted, 0o700)
        let fine = try TrackqProcess(
            ["daemon", "--socket", planted + "/trackq.sock", "--database", dir.database, "--endpoint", Self.nowhere],
            environment: ["TRACKQ_TOKEN": "t"], stderrFile: dir.file("fine.log"))
        try await waitUntil("the socket in the private directory") {
            guard fine.process.isRunning else { throw EndOfStream(partial: fine.stderr) }
            return UnixClient.canConnect(planted + "/trackq.sock")
        }
        fine.signal(SIGTERM)
        #expect(try await fine.waitForExit() == 0)
    }

    /// The watchdog is fed only while the database writer answers: a write that never
    /// returns (storage that stopped answering) lets systemd restart the daemon.
    @Test(.enabled(if: FailingWrites.library != nil, "needs a C compiler (cc) to build the fault library"))
    func theWatchdogStarvesWhileTheWriterHangs() async throws {
        let dir = try TestDirectory()
        let hang = dir.file("hang")
        let receiver = try SystemdTests.NotifyReceiver(path: dir.file("notify"))
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", Self.nowhere],
            environment: [
                "TRACKQ_TOKEN": "t", "NOTIFY_SOCKET": receiver.path, "WATCHDOG_USEC": "400000",
                "LD_PRELOAD": FailingWrites.library!, "TRACKQ_FAULT_FILE": hang, "TRACKQ_FAULT_MODE": "hang",
            ])
        func pings() -> Int { receiver.drain().filter { $0.split(separator: "\n").contains("WATCHDOG=1") }.count }
        var fed = 0
        try await waitUntil("the watchdog fed") {
            fed += pings()
            return fed >= 2
        }

        #expect(FileManager.default.createFile(atPath: hang, contents: nil))
        let client = try UnixClient(path: dir.socket)
        try client.write(#"{"event_name":"e","user_id":"u"}"# + "\n")  // the writer hangs in its commit
        // One ping may already be on its way; then silence, for five watchdog periods.
        let start = ContinuousClock.now
        var during = 0
        try await waitUntil("two seconds of a hung writer") {
            during += pings()
            return ContinuousClock.now - start >= .seconds(2)
        }
        #expect(during <= 1, "\(during) pings while the writer hung")
        #expect(daemon.stderr.contains("does not answer"))

        try FileManager.default.removeItem(atPath: hang)
        #expect(try Answer(client.readLine()).ok)
        fed = 0
        try await waitUntil("the watchdog fed again") {
            fed += pings()
            return fed >= 1
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }
}
