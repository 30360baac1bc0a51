import CSQLite
import Foundation
import Testing

@testable import TrackQueue

/// SQLite's default VFS with faults switched on by the test: a file system that has no
/// shared memory (so WAL is impossible), or that cannot delete a rollback journal (so a
/// ROLLBACK fails). Registered as the default VFS only while a test runs (the tests run one
/// at a time).
private enum FaultVFS {
    nonisolated(unsafe) static var real: UnsafeMutablePointer<sqlite3_vfs>?
    /// Heap memory: SQLite keeps these pointers, so they must not move.
    nonisolated(unsafe) static let vfs = UnsafeMutablePointer<sqlite3_vfs>.allocate(capacity: 1)
    nonisolated(unsafe) static var noSharedMemory = false
    nonisolated(unsafe) static var failWrites = false
    /// The real io-methods table, and the copy files get: writes can fail, shared memory can
    /// be missing.
    nonisolated(unsafe) static var realMethods: UnsafePointer<sqlite3_io_methods>?
    nonisolated(unsafe) static let methods = UnsafeMutablePointer<sqlite3_io_methods>.allocate(capacity: 1)

    static func install(noSharedMemory: Bool = false) {
        if real == nil {
            real = sqlite3_vfs_find(nil)
            vfs.initialize(to: real!.pointee)
            vfs.pointee.zName = UnsafePointer(strdup("trackq-fault"))
            vfs.pointee.xOpen = { _, path, file, flags, outFlags in
                let rc = FaultVFS.real!.pointee.xOpen(FaultVFS.real, path, file, flags, outFlags)
                guard rc == SQLITE_OK, let file, let opened = file.pointee.pMethods else { return rc }
                if FaultVFS.realMethods == nil {
                    FaultVFS.realMethods = opened
                    FaultVFS.methods.initialize(to: opened.pointee)
                    FaultVFS.methods.pointee.xWrite = { file, buffer, count, offset -> Int32 in
                        if FaultVFS.failWrites { return SQLITE_IOERR | (3 << 8) }  // SQLITE_IOERR_WRITE
                        return FaultVFS.realMethods!.pointee.xWrite(file, buffer, count, offset)
                    }
                }
                if opened == FaultVFS.realMethods {
                    if FaultVFS.noSharedMemory { FaultVFS.methods.pointee.xShmMap = nil }
                    file.pointee.pMethods = UnsafePointer(FaultVFS.methods)
                }
                return rc
            }
        }
        Self.noSharedMemory = noSharedMemory
        if let realMethods { methods.pointee.xShmMap = noSharedMemory ? nil : realMethods.pointee.xShmMap }
        sqlite3_vfs_register(vfs, 1)
    }

    static func uninstall() {
        noSharedMemory = false
        failWrites = false
        if let realMethods { methods.pointee.xShmMap = realMethods.pointee.xShmMap }
        sqlite3_vfs_register(real, 1)
        sqlite3_vfs_unregister(vfs)
    }
}

@Suite(.serialized) struct StoreFaultTests {
    /// A file system where WAL cannot work: the store refuses to open, saying why, instead of
    /// running in another journal mode with none of WAL's guarantees.
    @Test func aDatabaseThatCannotUseWALIsRefused() throws {
        let dir = try TestDirectory()
        FaultVFS.install(noSharedMemory: true)
        defer { FaultVFS.uninstall() }
        #expect {
            _ = try QueueStore(path: dir.database, durability: .full, bootID: "b")
        } throws: { error in
            "\(error)".contains("cannot put") && "\(error)".contains("WAL mode")
        }
    }

    /// A ROLLBACK whose write-back fails (pages already spilled to the file cannot be
    /// restored from the journal) is not passed over. SQLite's ROLLBACK statement itself
    /// returns OK then (sqlite3RollbackAll drops the pager's error) and puts the connection
    /// in an error state, so the failure shows as an error on the next statement: the store
    /// answers `unavailable` instead of trusting half-restored pages. Once writes work again,
    /// the table is exactly as before the transaction. `rollbackIfNeeded` also throws when
    /// ROLLBACK itself reports an error.
    @Test func aRollbackThatCannotWriteBackIsAnErrorUntilWritesWork() throws {
        let dir = try TestDirectory()
        FaultVFS.install()
        defer { FaultVFS.uninstall() }
        let db = try SQLiteConnection(path: dir.database)
        try db.execute("PRAGMA journal_mode = DELETE")
        try db.execute("PRAGMA cache_size = 1")  // so the transaction's pages spill to the file
        try db.execute("CREATE TABLE t (x)")
        try db.run("INSERT INTO t VALUES ('before')")
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try Database.transaction(db) {
                for i in 0..<2000 { try db.run("INSERT INTO t VALUES (?)", [.text(String(repeating: "x", count: 100 + i % 7))]) }
                FaultVFS.failWrites = true
                throw Boom()
            }
        }
        #expect(throws: SQLiteError.self) { _ = try db.queryRow("SELECT count(*) FROM t") { $0.int(0) } }
        FaultVFS.failWrites = false
        #expect(try db.queryRow("SELECT count(*) FROM t") { $0.int(0) } == 1)
        #expect(try db.queryRow("PRAGMA integrity_check") { $0.text(0) } == "ok")
    }
}
