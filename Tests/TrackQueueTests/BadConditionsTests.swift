import Foundation
import Testing

@testable import TrackQueue

/// Clients and disks that misbehave: the daemon says so clearly and loses nothing else.
@Suite struct BadConditionsTests {
    static let event = #"{"event_name":"e","user_id":"u","properties":{"k":"v"}}"#

    @Test func aClientThatDoesNotReadItsAnswersStopsBeingRead() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        let chunk = Array(String(repeating: Self.event + "\n", count: 1000).utf8)
        var chunksStarted = 0
        var partial: ArraySlice<UInt8>?
        // Write without reading answers until the socket stays full for 2 s: the daemon has
        // stopped reading us. Without back-pressure it would keep reading (and buffering
        // answers) and 64 MB would go through.
        writing: while chunksStarted * chunk.count < 64 << 20 {
            var rest = chunk[...]
            chunksStarted += 1
            while !rest.isEmpty {
                let n = rest.withUnsafeBytes { send(client.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if n > 0 {
                    rest = rest.dropFirst(n)
                    continue
                }
                guard errno == EAGAIN || errno == EWOULDBLOCK else { throw POSIXError(.EIO) }
                var waiter = pollfd(fd: client.fd, events: Int16(POLLOUT), revents: 0)
                if poll(&waiter, 1, 2000) == 0 {
                    partial = rest
                    break writing
                }
            }
        }
        let stalled = try #require(partial, "the daemon kept reading a client that never read its answers")
        let sent = chunksStarted * 1000
        #expect(try DatabaseProbe(path: daemon.database).queued < Int64(sent))

        // Now read: the daemon resumes, and every line gets its ack.
        let finisher = Thread { try? client.write(Array(stalled)) }
        finisher.start()
        let answers = try client.readLines(sent, timeout: .seconds(60))
        #expect(answers.allSatisfy { $0.hasPrefix(#"{"ok":true,"accepted":1"#) } as Bool)
        #expect(try DatabaseProbe(path: daemon.database).queued == Int64(sent))
        try await daemon.stop()
    }

    @Test func aClientThatVanishesMidLineLosesOnlyThatLine() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        do {
            let client = try UnixClient(path: daemon.socket)
            try client.write(Self.event + "\n" + Self.event + "\n" + #"{"event_name":"cut","user_"#)
            _ = try client.readLines(2)
        }
        // Its half line was the last bytes before EOF: it counts as a line and is refused.
        let probe = DatabaseProbe(path: daemon.database)
        try await waitUntil("the vanished client's lines") { try probe.scalar("SELECT rejected FROM counters") == 1 }
        #expect(try probe.queued == 2)
        let next = try UnixClient(path: daemon.socket)
        try next.write(Self.event + "\n")
        #expect(try Answer(next.readLine()).ok)
        try await daemon.stop()
    }

    @Test(.enabled(if: Tmpfs.isAvailable, "needs permission to mount a tmpfs (root)"))
    func aFullDiskAnswersUnavailableAndAcceptsAgainOnceThereIsRoom() async throws {
        let dir = try TestDirectory()
        let mount = dir.file("small")
        try Tmpfs.mount(at: mount, size: "1m")
        defer { Tmpfs.unmount(mount) }
        // A filler file to free later, then a daemon whose database lives on the small disk.
        let filler = mount + "/filler"
        #expect(FileManager.default.createFile(atPath: filler, contents: Data(count: 256 << 10)))
        let daemon = try await InProcessDaemon(directory: dir) { $0.paths.database = mount + "/queue.db" }
        let client = try UnixClient(path: daemon.socket)
        let big = #"{"event_name":"e","user_id":"u","pad":""# + String(repeating: "x", count: 4000) + "\"}"
        var accepted = 0
        var last = try Answer("{}")
        repeat {
            try client.write(big + "\n")
            last = try Answer(client.readLine())
            if last.ok { accepted += 1 }
        } while last.ok && accepted < 1000
        #expect(last.error == "unavailable")
        #expect(last.message?.contains("disk is full") == true)
        #expect(accepted > 0)

        try FileManager.default.removeItem(atPath: filler)
        try client.write(Self.event + "\n")
        #expect(try Answer(client.readLine()).ok)
        try await daemon.stop()
        let probe = DatabaseProbe(path: mount + "/queue.db")
        #expect(try probe.queued == Int64(accepted + 1))
        #expect(try probe.strings("PRAGMA integrity_check") == ["ok"])
    }
}

/// A small RAM disk, for running out of space for real.
enum Tmpfs {
    static let isAvailable: Bool = {
        guard getuid() == 0, let dir = try? TestDirectory() else { return false }
        let point = dir.file("probe")
        guard (try? mount(at: point, size: "64k")) != nil else { return false }
        unmount(point)
        return true
    }()

    static func mount(at path: String, size: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let result = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size),mode=0755", "tmpfs", path])
        guard result.status == 0 else { throw POSIXError(.EPERM) }
    }

    /// Remounts read-only (as the kernel does with a failing SD card) or read-write again.
    static func remount(_ path: String, readOnly: Bool) throws {
        let result = try runCommand("/bin/mount", ["-o", readOnly ? "remount,ro" : "remount,rw", path])
        guard result.status == 0 else { throw POSIXError(.EPERM) }
    }

    static func unmount(_ path: String) {
        _ = try? runCommand("/bin/umount", [path])
    }
}
