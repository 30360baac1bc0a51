import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import TrackQueue

/// A damaged queue file, as a failing SD card or eMMC leaves it, tried on the real `trackq`
/// binary: the daemon keeps what it can read, says what it lost, and serves again; `trackq
/// status` and `trackq check` say so. Each test failed on the code before recovery existed.
@Suite(.serialized) struct StorageRecoveryTests {
    static let nowhere = "http://127.0.0.1:9/api/track"
    static let pad = String(repeating: "p", count: 200)

    /// One event line, its `seq` the marker the tests look for.
    static func event(_ seq: Int) -> String {
        #"{"event_name":"stored","user_id":"u","properties":{"seq":\#(seq),"pad":"\#(pad)"}}"#
    }

    /// Starts a daemon on `dir`, writes events `seqs` (all acked), and stops it cleanly.
    /// Then a second run writes one more event (`extra`): its first write starts the WAL over,
    /// so the queue's pages live in the main file only, as on a host that has run a while.
    static func fill(_ dir: borrowing TestDirectory, _ seqs: Range<Int>, extra: Int? = nil) async throws {
        try await fill(dir, seqs, then: extra.map { $0..<($0 + 1) })
    }

    /// ``fill(_:_:extra:)`` with a second run that writes `then` (into the WAL).
    static func fill(_ dir: borrowing TestDirectory, _ seqs: Range<Int>, then: Range<Int>?) async throws {
        try await write(dir, seqs, name: "fill")
        if let then { try await write(dir, then, name: "fill2") }
    }

    private static func write(_ dir: borrowing TestDirectory, _ seqs: Range<Int>, name: String) async throws {
        let daemon = try await TrackqProcess.startDaemon(dir, ["--endpoint", nowhere], environment: [:], logName: name)
        let client = try UnixClient(path: dir.socket)
        // 50 lines a write: segments of at most 50 events, several to a leaf page.
        for chunk in stride(from: seqs.lowerBound, to: seqs.upperBound, by: 50) {
            let part = chunk..<min(chunk + 50, seqs.upperBound)
            try client.write(part.map { event($0) + "\n" }.joined())
            let answers = try client.readLines(part.count).map(Answer.init)
            #expect(answers.allSatisfy { $0.ok })
        }
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    /// `trackq ARGS` to completion.
    static func trackq(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runCommand(TrackqBinary.path, arguments)
    }

    /// `trackq status --json`'s exit status and its `storage` object.
    static func storage(_ dir: borrowing TestDirectory) throws -> (status: Int32, storage: [String: Any]) {
        let (status, stdout, stderr) = try trackq(["status", "--json", "--database", dir.database])
        let object = try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any]
        guard let storage = object?["storage"] as? [String: Any] else {
            Issue.record("no storage in status: \(stdout) \(stderr)")
            return (status, [:])
        }
        return (status, storage)
    }

    /// The `seq` of every event in the queue.
    static func queuedSeqs(_ database: String) throws -> Set<Int> {
        Set(
            try DatabaseProbe(path: database).strings("SELECT json_extract(body, '$.properties.seq') FROM queue").compactMap {
                Int($0)
            })
    }

    /// Writes `bytes` over `database` at `offset`.
    static func overwrite(_ database: String, at offset: Int, with bytes: [UInt8]) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: database))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        handle.write(Data(bytes))
        try handle.synchronize()
    }

    static func damagedFiles(_ dir: borrowing TestDirectory) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).filter {
            $0.hasPrefix("queue.db.damaged-") && !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm")
        }.map { dir.file($0) }
    }

    /// Waits until the daemon's check of its file after the start has ended, and the
    /// recovery it started, if it found damage.
    static func waitForStorageCheck(_ daemon: TrackqProcess) async throws {
        try await waitUntil("the daemon's storage check") {
            let log = daemon.stderr
            guard log.contains("storage check:") else { return false }
            return !log.contains("storage check: damage found")
                || log.contains("storage: the queue file was damaged") || log.contains("cannot recover")
        }
    }

    /// Starts the daemon on a damaged queue of `events` events and waits for its recovery;
    /// an app is served, status warns, and every event is salvaged, set aside or lost.
    static func startAndRecover(
        _ dir: borrowing TestDirectory, events: Int
    ) async throws -> (daemon: TrackqProcess, salvaged: Int, lost: Int, damaged: Int) {
        let daemon = try await TrackqProcess.startDaemon(dir, ["--endpoint", nowhere], environment: [:])
        try await waitForStorageCheck(daemon)
        try appIsServed(dir, seq: 5000)
        let (status, storage) = try self.storage(dir)
        #expect(status == 1)
        #expect(storage["state"] as? String == "recovered")
        let salvaged = storage["salvaged"] as? Int ?? -1
        let lost = storage["lost"] as? Int ?? -1
        let damaged = storage["damaged_events"] as? Int ?? -1
        #expect(salvaged + lost + damaged == events, "\(storage)")
        return (daemon, salvaged, lost, damaged)
    }

    /// An app writes one event and is answered `ok`.
    static func appIsServed(_ dir: borrowing TestDirectory, seq: Int) throws {
        let client = try UnixClient(path: dir.socket)
        try client.write(event(seq) + "\n")
        let answer = try Answer(client.readLine(timeout: .seconds(10)))
        #expect(answer.ok, "after recovery an app must be served: \(answer)")
    }

    // MARK: The four cases

    @Test func aFileThatIsNotADatabaseIsMovedAsideAndTheDaemonServes() async throws {
        let dir = try TestDirectory()
        var random = SplitMix64(seed: 22)
        let garbage = (0..<65536).map { _ in UInt8.random(in: 0...255, using: &random) }
        #expect(FileManager.default.createFile(atPath: dir.database, contents: Data(garbage)))

        // Before: "file is not a database", exit 1, never serving.
        let daemon = try await TrackqProcess.startDaemon(dir, ["--endpoint", Self.nowhere], environment: [:])
        try Self.appIsServed(dir, seq: 1)
        #expect(daemon.stderr.contains("critical"))
        #expect(daemon.stderr.contains("the queue file was damaged"))

        let moved = try Self.damagedFiles(dir)
        #expect(moved.count == 1)
        #expect(try moved.first.map { try Data(contentsOf: URL(fileURLWithPath: $0)) } == Data(garbage), "moved aside unchanged")
        let (status, storage) = try Self.storage(dir)
        #expect(storage["state"] as? String == "recovered")
        #expect(storage["salvaged"] as? Int == 0)
        #expect(storage["lost"] is NSNull, "a file with no readable counters: how many were lost is unknown")
        #expect(storage["damaged_file"] as? String == moved.first)
        #expect(status == 1, "a warning while it stands (the daemon runs, nothing else is wrong but delivery's backoff)")

        // The operator archives the damaged file: the warning clears.
        for file in moved { try FileManager.default.removeItem(atPath: file) }
        #expect(try Self.storage(dir).storage["state"] as? String == "ok")
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test func oneRottenPageLosesOnlyTheEventsOnItAndCheckSaysWhere() async throws {
        let dir = try TestDirectory()
        try await Self.fill(dir, 0..<3000, extra: 3000)
        let probe = DatabaseProbe(path: dir.database)
        #expect(try probe.strings("PRAGMA integrity_check") == ["ok"])
        #expect(try Self.trackq(["check", "--database", dir.database]).status == 0)
        // A leaf page of the queue's segments, rotten: random bytes.
        let leaf = try probe.scalar(
            "SELECT pageno FROM dbstat WHERE name = 'segments' AND pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET 2")
        let cellsOnIt = try probe.scalar("SELECT ncell FROM dbstat WHERE pageno = \(leaf)")
        let largestSegment = try probe.scalar("SELECT max(count) FROM segments")
        var random = SplitMix64(seed: 7)
        try Self.overwrite(
            dir.database, at: Int(leaf - 1) * 4096, with: (0..<4096).map { _ in UInt8.random(in: 0...255, using: &random) })

        // Before: no `trackq check`; nothing reported anywhere.
        let check = try Self.trackq(["check", "--database", dir.database])
        #expect(check.status == 1)
        #expect(check.stdout.hasPrefix("damaged: \(dir.database)"))
        #expect(check.stdout.lowercased().contains("page \(leaf)"), "check says where: \(check.stdout)")

        // Found by the check of the whole file the daemon runs once it has started.
        let (daemon, salvaged, lost, damaged) = try await Self.startAndRecover(dir, events: 3001)
        // At most the segments whose cells were on that page.
        #expect(lost + damaged <= Int(cellsOnIt * largestSegment), "lost \(lost) on one page of \(cellsOnIt) cells")
        #expect(lost > 0)
        let queued = try Self.queuedSeqs(dir.database)
        #expect(queued.count == salvaged + 1)
        #expect(queued.isSubset(of: Set(0...3000).union([5000])), "salvaged events are the events sent, not garbage")
        #expect(try probe.strings("PRAGMA integrity_check") == ["ok"])
        #expect(try Self.trackq(["check", "--database", dir.database]).status == 0)
        let moved = try Self.damagedFiles(dir)
        #expect(moved.count == 1)
        for file in moved { #expect(try Self.trackq(["check", "--database", file]).status == 1) }
        let human = try Self.trackq(["status", "--database", dir.database])
        #expect(human.stdout.contains("storage recovered from damage"))
        #expect(human.stdout.contains("archive or remove it to clear this"))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test func aFileCutShortIsFoundAtTheStartNotReportedOK() async throws {
        let dir = try TestDirectory()
        try await Self.fill(dir, 0..<3000, extra: 3000)
        let size = try FileManager.default.attributesOfItem(atPath: dir.database)[.size] as? Int ?? 0
        #expect(truncate(dir.database, off_t(size * 6 / 10)) == 0)

        // Before: the daemon started, and `trackq status` said OK, exit 0.
        // Damaged, and the daemon not running: a report that says so (exit 2), or, when the cut
        // took pages the report itself needs, "unknown" with the reason (exit 3).
        let before = try Self.trackq(["status", "--json", "--database", dir.database])
        switch before.status {
        case 2: #expect(before.stdout.contains(#""storage":{"state":"damaged""#), "\(before.stdout)")
        case 3: #expect(before.stdout.contains("is damaged"), "\(before.stdout)")
        default: Issue.record("status exited \(before.status): \(before.stdout)")
        }

        let (daemon, salvaged, lost, _) = try await Self.startAndRecover(dir, events: 3001)
        #expect(salvaged >= 1500, "the first 60% of the file is intact: \(salvaged)")
        #expect(lost > 0)
        #expect(try DatabaseProbe(path: dir.database).strings("PRAGMA integrity_check") == ["ok"])
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test func pagesRottingUnderARunningDaemonAreRecoveredAndDeliveryGoesOn() async throws {
        let dir = try TestDirectory()
        // Larger than a connection's page cache (2000 KiB): the pages in the middle of the
        // queue are cached by no connection of the daemon when they rot, so the next one to
        // need them reads them from the file. (A cached page that rots is written back whole
        // by the next change to it, which heals it.)
        let total = 20_000
        try await Self.fill(dir, 0..<total)
        // Everything into the main file and the WAL emptied, as on a host that has run a
        // while: the pages below are read from the main file only.
        let busy = try await onOwnThread {
            let db = try SQLiteConnection(path: dir.database)
            return try db.queryRow("PRAGMA wal_checkpoint(TRUNCATE)") { $0.int64(0) }
        }
        #expect(busy == 0)
        let probe = DatabaseProbe(path: dir.database)
        // Two pages in the middle of the queue: a leaf of the segments and an overflow page.
        let leaves = try probe.strings("SELECT pageno FROM dbstat WHERE name = 'segments' AND pagetype = 'leaf' ORDER BY pageno")
        let overflow = try probe.strings(
            "SELECT pageno FROM dbstat WHERE name = 'segments' AND pagetype = 'overflow' ORDER BY pageno")
        let rotten = [leaves[leaves.count / 2], overflow[overflow.count / 2]].compactMap { Int($0) }
        #expect(rotten.count == 2)

        let refuse = NIOLockedValueBox(true)
        let api = try await TestHTTPServer.start { _, _ in refuse.withLockedValue { $0 } ? .status(503) : .ok() }
        defer { Task { try? await api.stop() } }
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", api.url, "--retry-initial", "100ms", "--retry-max", "200ms"],
            environment: ["TRACKQ_TOKEN": "t"])
        // While the API refuses the first batch, the pages rot.
        try await waitUntil("the first request") { api.requestCount > 0 }
        for page in rotten { try Self.overwrite(dir.database, at: (page - 1) * 4096, with: Array(repeating: 0, count: 4096)) }
        let damagedNow = try Self.trackq(["check", "--database", dir.database])
        #expect(damagedNow.status == 1, "\(damagedNow.stdout)")
        refuse.withLockedValue { $0 = false }

        // Before: lines were answered `unavailable` and delivery backed off for good with
        // "cannot write to the database".
        try Self.appIsServed(dir, seq: 50_000)
        // Until the daemon has recovered, `trackq status` may read the damaged file (exit 3).
        do {
            try await waitUntil(timeout: .seconds(30), "the storage recovery") {
                try Self.trackq(["status", "--json", "--database", dir.database]).stdout.contains(#""state":"recovered""#)
            }
        } catch {
            Issue.record("\(error): \(daemon.stderr)")
            throw error
        }
        let storage = try Self.storage(dir).storage
        let salvaged = storage["salvaged"] as? Int ?? -1
        let lost = storage["lost"] as? Int ?? -1
        let damaged = storage["damaged_events"] as? Int ?? -1
        #expect(lost >= 0 && damaged >= 0)
        #expect(lost + damaged <= 2 * 256, "two pages hold at most two segments' cells here: \(storage)")
        #expect(daemon.stderr.components(separatedBy: "moving it aside").count == 2, "one recovery, not a loop")

        // What was salvaged is delivered, with the app's new event; nothing else is lost.
        try await waitUntil(timeout: .seconds(60), "delivery of the salvaged queue") {
            try probe.scalar("SELECT pending_events FROM counters") == 0
        }
        let delivered = Set(
            api.requests.flatMap { $0.jsonArray ?? [] }.compactMap { ($0["properties"] as? [String: Any])?["seq"] as? Int })
        #expect(delivered.contains(50_000))
        #expect(delivered.isSubset(of: Set(0..<total).union([50_000])))
        #expect(delivered.count + lost + damaged >= total, "delivered \(delivered.count), salvaged \(salvaged), \(storage)")
        #expect(try probe.strings("PRAGMA integrity_check") == ["ok"])
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test func aColumnRenamedByAFlippedBitInTheSchemaIsDamageToo() async throws {
        let dir = try TestDirectory()
        try await Self.fill(dir, 0..<500, extra: 500)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir.database))
        let at = try #require(bytes.range(of: Data("reason ".utf8)))
        bytes[at.lowerBound + 5] ^= 0x01  // "reason" → "reasoo": SQLite reports nothing
        try bytes.write(to: URL(fileURLWithPath: dir.database))
        #expect(try DatabaseProbe(path: dir.database).strings("PRAGMA quick_check") == ["ok"])

        // Before: the daemon served, but `trackq status` and every dead letter failed for good
        // with "no such column: reason".
        let daemon = try await TrackqProcess.startDaemon(dir, ["--endpoint", Self.nowhere], environment: [:])
        try Self.appIsServed(dir, seq: 5000)
        let (status, storage) = try Self.storage(dir)
        #expect(status == 1)
        #expect(storage["state"] as? String == "recovered")
        #expect(storage["salvaged"] as? Int == 501)
        #expect(storage["lost"] as? Int == 0)
        #expect(try Self.trackq(["dead", "list", "--database", dir.database]).status == 0)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test(.enabled(if: Tmpfs.isAvailable, "needs permission to mount a tmpfs (root)"))
    func aDamagedFileWithNoRoomForACopyStartsAnEmptyQueueAndKeepsItWhole() async throws {
        let dir = try TestDirectory()
        try await Self.fill(dir, 0..<3000, extra: 3000)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir.database))
        bytes.replaceSubrange(40 * 4096..<41 * 4096, with: Data(count: 4096))
        // A small disk that holds the damaged file and not much more.
        let disk = dir.file("disk")
        try Tmpfs.mount(at: disk, size: "\(bytes.count + (384 << 10))")
        defer { Tmpfs.unmount(disk) }
        let database = disk + "/queue.db"
        try bytes.write(to: URL(fileURLWithPath: database))

        let daemon = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", database, "--endpoint", Self.nowhere],
            stderrFile: dir.file("small-disk.log"))
        try await waitUntil("the daemon's socket") {
            if !daemon.process.isRunning { throw EndOfStream(partial: daemon.stderr) }
            return UnixClient.canConnect(dir.socket)
        }
        try await Self.waitForStorageCheck(daemon)
        try Self.appIsServed(dir, seq: 5000)
        let (status, stdout, _) = try Self.trackq(["status", "--json", "--database", database])
        let storage = try #require(
            (try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any])?["storage"] as? [String: Any])
        #expect(status == 1)
        #expect(storage["state"] as? String == "damaged", "nothing could be salvaged: \(storage)")
        #expect(storage["lost"] is NSNull)
        let kept = try #require(storage["damaged_file"] as? String)
        #expect(try Data(contentsOf: URL(fileURLWithPath: kept)) == bytes, "kept whole, for a salvage once there is room")
        #expect((storage["reason"] as? String ?? "").contains("salvage failed"))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test func theStorageAlertReachesTheLogSystemdAndTheAlertCommand() async throws {
        let dir = try TestDirectory()
        #expect(FileManager.default.createFile(atPath: dir.database, contents: Data(repeating: 0x5A, count: 8192)))
        let receiver = try SystemdTests.NotifyReceiver(path: dir.file("notify"))
        let alertFile = dir.file("alert.env")
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", Self.nowhere, "--alert-command", "env > \(alertFile).part && mv \(alertFile).part \(alertFile)"],
            environment: ["NOTIFY_SOCKET": receiver.path])
        try await waitUntil("the alert command") { FileManager.default.fileExists(atPath: alertFile) }
        let environment = try String(contentsOfFile: alertFile, encoding: .utf8).split(separator: "\n")
        #expect(environment.contains("TRACKQ_ALERT_KIND=storage"))
        #expect(environment.contains("TRACKQ_ALERT_STATE=raised"))
        #expect(environment.contains { $0.hasPrefix("TRACKQ_ALERT_MESSAGE=storage: the queue file was damaged") })
        var messages: [String] = []
        try await waitUntil("STATUS= with the storage alert") {
            messages += receiver.drain()
            return messages.contains { $0.contains("STATUS=storage: the queue file was damaged") }
        }
        #expect(daemon.stderr.contains("critical"))
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test func aHeaderThatCountsTwoBillionPagesIsDamageFoundAtOnce() async throws {
        let dir = try TestDirectory()
        try await Self.fill(dir, 0..<501)
        // No WAL: while one holds a commit, its size is the one SQLite (and trackq) use.
        try await onOwnThread {
            let db = try SQLiteConnection(path: dir.database)
            try db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir.database))
        #expect(bytes[24..<28] == bytes[92..<96], "SQLite trusts the count when these agree")
        bytes.replaceSubrange(28..<32, with: [0x7F, 0xFF, 0xFF, 0xFF])
        try bytes.write(to: URL(fileURLWithPath: dir.database))

        // Counted, not walked: a start does not step through two billion pages first (the
        // walk this replaced kept a debug build busy for longer than a start may take).
        #expect(StorageRecovery.checkFile(dir.database)?.contains("2147483") == true)
        let (daemon, salvaged, lost, _) = try await Self.startAndRecover(dir, events: 501)
        #expect(salvaged == 501 && lost == 0)
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }
}
