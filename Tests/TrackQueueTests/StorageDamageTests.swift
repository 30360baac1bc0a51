import Foundation
import Testing

@testable import TrackQueue

/// Fault injection for damage: a queue file the real daemon wrote, damaged at random (bit
/// flips, a zeroed or random page, a truncation, bad WAL frames, a segment that does not
/// parse), then the real daemon started on it. For every seed: it never traps (exits 0 on
/// SIGTERM), recovers at most once (no loop on the same error), serves an app within 10 s, and
/// keeps every event but those that lived on the damaged pages.
///
/// The loss bound, measured with SQLite's own `dbstat` on the undamaged file (not with
/// trackq's page reader): a page holds at most `cellsPerLeaf` segments' cells and a segment
/// at most `largestSegment` events, so damage to `n` pages of the main file loses at most
/// `n × cellsPerLeaf × largestSegment` events (an interior or free page loses none: the
/// salvage reads every leaf). Damage to the WAL loses at most what the WAL holds: SQLite
/// itself stops at the first frame whose checksum fails.
///
/// `TRACKQ_DAMAGE_SEEDS=1000 swift test --no-parallel --filter StorageDamage` is the long form.
@Suite(.serialized) struct StorageDamageTests {
    static let seeds = Int(ProcessInfo.processInfo.environment["TRACKQ_DAMAGE_SEEDS"] ?? "") ?? 50
    static let inMainFile = 0..<2000
    static let inWAL = 2000..<2200
    static let kinds = ["bit flips", "zeroed page", "random page", "truncation", "bad WAL frames", "segment not JSON"]

    struct Template {
        var database: [UInt8]
        var wal: [UInt8]
        var cellsPerLeaf: Int
        var largestSegment: Int
        var firstSegments: [(firstID: Int64, count: Int64)]
    }

    @Test func randomDamageNeverStopsTheDaemonNorLosesMoreThanTheDamagedPagesHeld() async throws {
        let source = try TestDirectory()
        try await StorageRecoveryTests.fill(source, Self.inMainFile, then: Self.inWAL)
        let probe = DatabaseProbe(path: source.database)
        let segments = try probe.strings("SELECT first_id || ' ' || count FROM segments ORDER BY first_id LIMIT 10").map {
            let parts = $0.split(separator: " ")
            return (firstID: Int64(parts[0])!, count: Int64(parts[1])!)
        }
        let template = Template(
            database: Array(try Data(contentsOf: URL(fileURLWithPath: source.database))),
            wal: Array(try Data(contentsOf: URL(fileURLWithPath: source.database + "-wal"))),
            cellsPerLeaf: Int(try probe.scalar("SELECT max(ncell) FROM dbstat WHERE pagetype = 'leaf'")),
            largestSegment: Int(try probe.scalar("SELECT max(count) FROM segments")), firstSegments: segments)
        #expect(template.wal.count > 4096, "the WAL holds the second run's events")
        let total = Self.inMainFile.count + Self.inWAL.count

        var tally: [String: (runs: Int, recovered: Int, lost: Int, damaged: Int)] = [:]
        var slowest: Duration = .zero
        var undetected = 0
        for seed in 0..<Self.seeds {
            let dir = try TestDirectory()
            var random = SplitMix64(seed: UInt64(seed) &* 0x9E37_79B9 &+ 22)
            var database = template.database
            var wal = template.wal
            let kind = seed % Self.kinds.count
            // How many events the damage may cost, by the bound above.
            var bound = 0
            let pageCount = database.count / 4096
            switch kind {
            case 0:
                var pages = Set<Int>()
                for _ in 0..<Int.random(in: 1...16, using: &random) {
                    let bit = Int.random(in: 0..<(database.count * 8), using: &random)
                    database[bit / 8] ^= 1 << UInt8(bit % 8)
                    pages.insert(bit / 8 / 4096)
                }
                bound = pages.count * template.cellsPerLeaf * template.largestSegment
            case 1, 2:
                let page = Int.random(in: 0..<pageCount, using: &random)
                for i in page * 4096..<(page + 1) * 4096 {
                    database[i] = kind == 1 ? 0 : UInt8.random(in: 0...255, using: &random)
                }
                bound = template.cellsPerLeaf * template.largestSegment
            case 3:
                let keep = Int.random(in: pageCount / 10..<pageCount, using: &random) * 4096 + Int.random(in: 0..<4096, using: &random)
                bound = (pageCount - keep / 4096) * template.cellsPerLeaf * template.largestSegment
                database.removeSubrange(keep...)
            case 4:
                for _ in 0..<Int.random(in: 1...8, using: &random) {
                    let at = Int.random(in: 32..<wal.count, using: &random)
                    wal[at] ^= UInt8.random(in: 1...255, using: &random)
                }
                bound = Self.inWAL.count
            default:
                break
            }
            try Data(database).write(to: URL(fileURLWithPath: dir.database))
            try Data(wal).write(to: URL(fileURLWithPath: dir.database + "-wal"))
            var expectDamaged: Int64 = 0
            if kind == 5 {
                // A segment whose body is no longer its events: SQLite finds nothing wrong.
                let segment = template.firstSegments[Int.random(in: 0..<template.firstSegments.count, using: &random)]
                try await onOwnThread {
                    let db = try SQLiteConnection(path: dir.database)
                    try db.execute(#"UPDATE segments SET body = '[{"broken' WHERE first_id = \#(segment.firstID)"#)
                }
                expectDamaged = segment.count
            }

            let started = ContinuousClock.now
            let daemon = try await TrackqProcess.startDaemon(
                dir, ["--endpoint", StorageRecoveryTests.nowhere], environment: [:], logName: "seed-\(seed)")
            let client = try UnixClient(path: dir.socket)
            try client.write(StorageRecoveryTests.event(9999) + "\n")
            let answer = try Answer(client.readLine(timeout: .seconds(10)))
            let served = started.duration(to: .now)
            slowest = max(slowest, served)
            try await StorageRecoveryTests.waitForStorageCheck(daemon)
            let context = "seed \(seed) (\(Self.kinds[kind])): \(daemon.stderr.suffix(2000))"
            #expect(answer.ok, "\(context)")
            #expect(served < .seconds(10), "served after \(served); \(context)")
            if kind == 5 {
                try await waitUntil(timeout: .seconds(10), "the damaged segment found by delivery; \(context)") {
                    try StorageRecoveryTests.storage(dir).storage["state"] as? String == "recovered"
                }
            }
            let storage = try StorageRecoveryTests.storage(dir).storage
            let recovered = storage["state"] as? String == "recovered"
            let damaged = Int64(storage["damaged_events"] as? Int ?? 0)
            // Kept: queued (less the app's new event) or set aside as damaged dead letters.
            // Counted from the segments, not the counters: a flipped bit in the counters row
            // is damage SQLite does not see (`trackq check` does); nothing was delivered, so
            // every event in a segment is queued. A flip that raised a count is no loss.
            guard let queued = try? DatabaseProbe(path: dir.database).scalar("SELECT coalesce(sum(count), 0) FROM segments") else {
                // Damage the daemon has not met yet (its check of the file ran out of time
                // before reaching it, and no read went there): `trackq status` must say so.
                #expect(storage["state"] as? String == "damaged", "\(context)")
                undetected += 1
                daemon.signal(SIGTERM)
                #expect(try await daemon.waitForExit() == 0, "\(context)")
                continue
            }
            let lost = max(0, Int64(total) - (queued - 1) - damaged)
            #expect(lost <= bound, "lost \(lost), at most \(bound); \(context)")
            if kind == 5 { #expect(damaged == expectDamaged && lost == 0, "\(context)") }
            #expect(daemon.stderr.components(separatedBy: "moving it aside").count <= 2, "one recovery at most; \(context)")
            #expect(
                try DatabaseProbe(path: dir.database).strings("PRAGMA integrity_check") == ["ok"], "\(context)")
            daemon.signal(SIGTERM)
            #expect(try await daemon.waitForExit() == 0, "\(context)")

            var entry = tally[Self.kinds[kind]] ?? (0, 0, 0, 0)
            entry.runs += 1
            entry.recovered += recovered ? 1 : 0
            entry.lost += Int(lost)
            entry.damaged += Int(damaged)
            tally[Self.kinds[kind]] = entry
        }
        // The figures RELIABILITY.md quotes.
        let summary = Self.kinds.compactMap { kind in
            tally[kind].map { "\(kind): \($0.runs) runs, \($0.recovered) recovered, \($0.lost) lost, \($0.damaged) damaged" }
        }
        print(
            "damage: seeds=\(Self.seeds) slowest_served=\(slowest) not_yet_met=\(undetected) "
                + summary.joined(separator: "; "))
    }
}
