import Foundation
import Testing

@testable import TrackQueue

/// trackq's own reader of the SQLite file format against SQLite itself: what the salvage reads
/// of a sound file is exactly what SQLite returns, WAL frames, overflow chains and all.
@Suite struct SQLiteFileImageTests {
    @Test func readsTheRowsSQLiteReturnsFromTheFileAndItsWAL() throws {
        let dir = try TestDirectory()
        let path = dir.file("image.db")
        let db = try SQLiteConnection(path: path)
        try db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _ = try db.queryRow("PRAGMA journal_mode = WAL") { $0.text(0) }
        db.persistWAL()
        try db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x TEXT, b BLOB)")
        var random = SplitMix64(seed: 11)
        func insert(_ ids: Range<Int>) throws {
            try db.execute("BEGIN")
            for id in ids {
                // Small rows and rows that spill onto overflow pages (up to 3 of them).
                let size = Int.random(in: 0...13_000, using: &random)
                let text = String((0..<size).map { _ in Character(UnicodeScalar(UInt8.random(in: 97...122, using: &random))) })
                try db.run(
                    "INSERT INTO t (id, n, x, b) VALUES (?, ?, ?, randomblob(?))",
                    [.integer(Int64(id)), .integer(Int64.random(in: .min ... .max, using: &random)), .text(text), .integer(Int64(id % 7))])
            }
            try db.execute("COMMIT")
        }
        try insert(0..<300)
        try db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  // these rows in the main file
        try insert(300..<400)  // these only in the WAL
        try db.execute("DELETE FROM t WHERE id % 5 = 0")  // freed pages, stale cells
        try insert(400..<420)

        var expected: [Int64: [SQLiteFileImage.Value]] = [:]
        let rows = try db.statement("SELECT id, n, x, b FROM t")
        while try rows.step() {
            expected[rows.int64(0)] = [
                .null, .integer(rows.int64(1)), .text(rows.withBytes(2) { Array($0) }), .blob(rows.withBytes(3) { Array($0) }),
            ]
        }
        rows.reset()
        #expect(expected.count == 400 - 80 + 20)

        let image = try SQLiteFileImage(path: path)
        defer { image.close() }
        var found: [Int64: [SQLiteFileImage.Value]] = [:]
        image.forEachRow { row in
            // Only t's rows have four columns here (sqlite_master's have five).
            if row.values.count == 4 { found[row.rowid] = row.values }
            return true
        }
        #expect(found.count == expected.count)
        #expect(found == expected, "the rows the image reads are SQLite's, to the byte")
        #expect(image.missingPages == 0)
    }
}
