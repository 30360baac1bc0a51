import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import TrackQueue

/// Small edge disks: a daemon that starts on a full one, dead letters that cannot fill it,
/// and a database that gives space back once a backlog is gone.
@Suite struct DiskTests {
    static let event = #"{"event_name":"e","user_id":"u"}"#

    /// A clean stop, then the disk fills up: the daemon still starts, says `unavailable`
    /// instead of refusing connections, delivers what is queued, and accepts again from the
    /// room that freed.
    @Test(.enabled(if: Tmpfs.isAvailable, "needs permission to mount a tmpfs (root)"))
    func theDaemonStartsOnAFullDiskDeliversAndAcceptsAgain() async throws {
        let dir = try TestDirectory()
        let mount = dir.file("disk")
        try Tmpfs.mount(at: mount, size: "4m")
        defer { Tmpfs.unmount(mount) }
        let database = mount + "/queue.db"
        let accept = NIOLockedValueBox(false)
        let server = try await TestHTTPServer.start { _, _ in accept.withLockedValue { $0 } ? .ok() : .status(503) }
        let arguments = ["--database", database, "--endpoint", server.url, "--retry-initial", "50ms", "--retry-max", "200ms"]

        var daemon = try await TrackqProcess.startDaemon(dir, arguments, environment: ["TRACKQ_TOKEN": "t"])
        for _ in 0..<5 {
            try DeliveryTests.enqueue(100, socket: dir.socket, extra: { _ in #","pad":"\#(String(repeating: "p", count: 1000))""# })
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)

        // Fill what is left of the disk.
        #expect(FileManager.default.createFile(atPath: mount + "/filler", contents: nil))
        let filler = try #require(FileHandle(forWritingAtPath: mount + "/filler"))
        while (try? filler.write(contentsOf: Data(count: 4096))) != nil {}
        try? filler.close()

        daemon = try await TrackqProcess.startDaemon(dir, arguments, environment: ["TRACKQ_TOKEN": "t"], logName: "full")
        let client = try UnixClient(path: dir.socket)
        try client.write(Self.event + "\n")
        let answer = try Answer(client.readLine())
        #expect(answer.ok || answer.error == "unavailable", "\(answer)")

        accept.withLockedValue { $0 = true }
        let probe = DatabaseProbe(path: database)
        try await waitUntil("the queue delivered from a full disk") { try probe.queued == 0 }
        // Delivered rows freed pages: new events fit again, the filler still there.
        try await waitUntil("accepting again") {
            try client.write(Self.event + "\n")
            return try Answer(client.readLine()).ok
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        #expect(try probe.strings("PRAGMA integrity_check") == ["ok"])
        try await server.stop()
    }

    /// Dead letters are bounded: past `--max-dead-letters` the oldest go, counted.
    @Test func deadLettersAreBoundedOldestFirstAndCounted() async throws {
        let server = try await TestHTTPServer.start { request, _ in
            request.bodyText.contains("poison") ? .status(400, body: String(repeating: "e", count: 10_000)) : .ok()
        }
        let dir = try TestDirectory()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", server.url, "--max-dead-letters", "3", "--batch-max-events", "1"],
            environment: ["TRACKQ_TOKEN": "t"])
        try DeliveryTests.enqueue(12, socket: dir.socket, extra: { $0 % 2 == 0 ? #","poison":true"# : "" })
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("every event handled") { try probe.queued == 0 }
        #expect(try probe.scalar("SELECT count(*) FROM dead_letters") == 3)
        #expect(try probe.strings("SELECT json_extract(body, '$.seq') FROM dead_letters ORDER BY id") == ["6", "8", "10"])
        #expect(try probe.scalar("SELECT dead_dropped FROM counters") == 3)
        #expect(try probe.scalar("SELECT max(length(response)) FROM dead_letters") <= 4096)
        let status = try runCommand(TrackqBinary.path, ["status", "--json", "--database", dir.database])
        let object = try #require(JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        #expect((object["totals"] as? [String: Any])?["dead_letters_dropped"] as? Int == 3)
        #expect(object["dead_letters"] as? Int == 3)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        try await server.stop()
    }

    /// A long backlog delivered: the database file shrinks back instead of staying at its
    /// high-water mark.
    @Test func theDatabaseGivesSpaceBackAfterABacklogDrains() async throws {
        let deliver = NIOLockedValueBox(false)
        let server = try await TestHTTPServer.start { _, _ in deliver.withLockedValue { $0 } ? .ok() : .status(503) }
        let dir = try TestDirectory()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", server.url, "--retry-initial", "50ms", "--retry-max", "100ms"],
            environment: ["TRACKQ_TOKEN": "t"])
        let pad = String(repeating: "z", count: 2000)
        for _ in 0..<12 { try DeliveryTests.enqueue(1000, socket: dir.socket, extra: { _ in #","pad":"\#(pad)""# }) }
        let full = Self.fileSize(dir.database)
        #expect(full > 20 << 20, "\(full)")

        deliver.withLockedValue { $0 = true }
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil(timeout: .seconds(60), "the backlog delivered") { try probe.queued == 0 }
        // The main file gives back what was freed, a step at a time, with nothing else to do.
        try await waitUntil(timeout: .seconds(60), "the file to shrink") { Self.fileSize(dir.database) < full / 4 }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        #expect(try probe.strings("PRAGMA integrity_check") == ["ok"])
        try await server.stop()
    }

    static func fileSize(_ path: String) -> Int {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    }
}
