import TrackQueueSupport
import TrackQueueSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `trackq check`: whether a queue file can be trusted, read-only.
///
/// It checks, in order: the header and the file's length (``StorageRecovery/checkFile(_:)``),
/// SQLite's `PRAGMA integrity_check` (every page, every B-tree), that every segment's columns
/// agree and each event in it is an object where the array says, and that the counters
/// agree with the segments (the queue's size, its last id, its mark). It opens the file
/// read-only and never writes to it (SQLite may create the `-shm` beside a WAL database).
public struct StorageCheck: Sendable, Equatable {
    public var path: String
    /// What is wrong, each saying where; empty when the file is sound.
    public var problems: [String] = []
    /// Segments and events read, when the segments could be read at all.
    public var segments: Int64 = 0
    public var pendingEvents: Int64 = 0
    public var deadLetters: Int64 = 0

    public var isSound: Bool { problems.isEmpty }

    /// The most problems listed of each kind.
    package static let maxListed = 20

    /// Checks the queue file at `path`.
    /// - Throws: when the check cannot run (no file, no permission, a newer schema).
    public static func run(database path: String) throws(StoreError) -> StorageCheck {
        var info = stat()
        guard stat(path, &info) == 0 else { throw .io("no database at \(path): \(errnoDescription())") }
        guard access(path, R_OK) == 0 else { throw .io(StatusReader.notReadable(path)) }
        var check = StorageCheck(path: path)
        if let problem = StorageRecovery.checkFile(path) { check.problems.append(problem) }
        let db: SQLiteConnection
        do {
            db = try Database.open(path, .readOnly)
        } catch {
            guard StorageRecovery.isDamage(error) else { throw error }
            check.problems.append("SQLite cannot read it: \(error)")
            return check
        }
        do {
            let integrity = try db.statement("PRAGMA integrity_check(\(maxListed))")
            while try integrity.step() {
                let line = integrity.text(0) ?? ""
                if line != "ok" {
                    check.problems += line.split(separator: "\n").map { "integrity_check: \($0)" }
                }
            }
            integrity.reset()
        } catch {
            check.problems.append("integrity_check stopped: \(error)")
        }
        guard (try? Database.schemaVersion(db)) ?? 0 >= 5 else { return check }
        check.checkSegments(db)
        check.deadLetters = (try? db.queryRow("SELECT count(*) FROM dead_letters") { $0.int64(0) }) ?? nil ?? 0
        return check
    }

    /// Every segment in order: its columns agree, and the counters agree with all of them.
    private mutating func checkSegments(_ db: SQLiteConnection) {
        let counters: QueueCounters
        var gaps = Set<Int64>()
        do {
            counters = try QueueCounters.read(db)
            let rows = try db.statement("SELECT id FROM gaps WHERE id > ?")
            try rows.bind(counters.doneThrough, at: 1)
            while try rows.step() { gaps.insert(rows.int64(0)) }
            rows.reset()
        } catch {
            problems.append("the counters or the gaps cannot be read: \(error)")
            return
        }
        var pendingBytes: Int64 = 0
        var highest: Int64 = 0
        var damaged = 0
        var lastRead: Int64?
        do {
            let stmt = try db.statement(
                "SELECT first_id, count, body, ends, stamped, bytes, accepted_at_ms, accepted_boottime_ms, boot FROM segments ORDER BY first_id"
            )
            defer { stmt.reset() }
            while try stmt.step() {
                let segment = QueueSalvage.Segment(
                    firstID: stmt.int64(0), count: stmt.int(1),
                    body: stmt.withBytes(2) { Array($0) }, ends: stmt.isNull(3) ? nil : stmt.withBytes(3) { Array($0) },
                    stamped: stmt.isNull(4) ? nil : stmt.withBytes(4) { Array($0) }, bytes: stmt.int64(5),
                    acceptedAtMillis: stmt.int64(6), boottimeMillis: stmt.int64(7), boot: stmt.int64(8), clockState: nil)
                lastRead = segment.firstID
                segments += 1
                highest = max(highest, segment.lastID)
                let live = segment.liveEvents(after: counters.doneThrough, gaps: gaps)
                guard segment.count >= 1, let sizes = segment.eventSizes() else {
                    damaged += 1
                    if damaged <= Self.maxListed {
                        problems.append(
                            "the segment of ids \(segment.firstID) to \(segment.lastID) does not parse (\(live.count) of its events are queued)"
                        )
                    }
                    continue
                }
                pendingEvents += Int64(live.count)
                pendingBytes += live.reduce(0) { $0 + Int64(sizes[$1]) }
            }
        } catch {
            problems.append(
                "the segments after id \(lastRead.map(String.init) ?? "0") cannot be read: \(error)")
            return
        }
        if damaged > Self.maxListed { problems.append("\(damaged - Self.maxListed) more segments do not parse") }
        guard damaged == 0 else { return }
        if pendingEvents != counters.pendingEvents || pendingBytes != counters.pendingBytes {
            problems.append(
                "the counters say \(counters.pendingEvents) events (\(counters.pendingBytes) bytes) are queued; "
                    + "the segments hold \(pendingEvents) (\(pendingBytes) bytes)")
        }
        if highest > counters.lastID {
            problems.append("a segment holds id \(highest), past the last id given (\(counters.lastID))")
        }
        if counters.doneThrough > counters.lastID {
            problems.append("the delivered mark (\(counters.doneThrough)) is past the last id given (\(counters.lastID))")
        }
    }

    /// What a person reads: a verdict, then each problem on a line of its own.
    public func human() -> String {
        let summary =
            "\(segments) segments, \(pendingEvents) events queued, \(deadLetters) dead letters"
        guard !isSound else { return "sound: \(Printable.oneLine(path, limit: 500)) (\(summary))" }
        var lines = ["damaged: \(Printable.oneLine(path, limit: 500))"]
        lines += problems.map { "  " + Printable.oneLine($0, limit: 500) }
        lines.append(
            "the daemon recovers its own queue file when it finds it damaged: it moves it aside and starts a new queue "
                + "with what it can read")
        return lines.joined(separator: "\n")
    }
}
