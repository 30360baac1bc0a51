import CSQLite
import TrackQueueSystem

/// An error reported by SQLite, with its primary result code.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// The extended result code (`SQLITE_FULL`, `SQLITE_IOERR_FSYNC`, ...).
    public var code: Int32
    public var message: String

    public var description: String { "SQLite error \(code): \(message)" }

    /// True when the disk (or the database's size limit) is full.
    public var isFull: Bool { code & 0xff == SQLITE_FULL }

    /// True when a read-only connection met a hot rollback journal: a write a crash or power
    /// cut left half done, which only a read-write connection may roll back
    /// (`SQLITE_READONLY_ROLLBACK`; sqlite3.h's macro is a shift, which Swift does not import).
    public var isHotJournal: Bool { code == SQLITE_READONLY | (3 << 8) }

    /// True when a read-only connection met the WAL's index while a writer was changing it
    /// (`SQLITE_READONLY_RECOVERY`): a moment's state beside a running daemon; trying again
    /// reads it.
    public var isWALIndexBusy: Bool { code == SQLITE_READONLY | (1 << 8) }
}

/// One SQLite connection over the C API.
///
/// Not thread-safe: a connection is owned by one thread at a time (the writer thread,
/// or the caller of a read-only command). Statements are cached by SQL text.
///
/// The daemon's connections set ``confinedToBlockingThreads``: debug builds then assert
/// that every statement runs on a thread where blocking is allowed (the store's writer
/// thread or a ``BlockingPool`` thread), never on an event loop or the cooperative pool.
package final class SQLiteConnection {
    private let handle: OpaquePointer
    private var cache: [String: SQLiteStatement] = [:]
    package var confinedToBlockingThreads = false

    package init(path: String, readOnly: Bool = false) throws(SQLiteError) {
        var db: OpaquePointer?
        let flags =
            (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE))
            | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: "\(path): \(message)")
        }
        sqlite3_extended_result_codes(db, 1)
        self.handle = db
    }

    deinit {
        cache.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Runs one or more statements that return no rows we need.
    package func execute(_ sql: String) throws(SQLiteError) {
        assertOnBlockingThread()
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? lastMessage
            sqlite3_free(error)
            throw SQLiteError(code: rc, message: message)
        }
    }

    /// A prepared statement for `sql`, reset and with its bindings cleared, cached for reuse.
    package func statement(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        assertOnBlockingThread()
        if let cached = cache[sql] {
            cached.reset()
            return cached
        }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc) }
        let statement = SQLiteStatement(stmt, connection: self)
        cache[sql] = statement
        return statement
    }

    /// Runs a statement that returns at most one row, handing the row to `read`.
    package func queryRow<T>(_ sql: String, _ bindings: [SQLiteValue] = [], _ read: (SQLiteStatement) -> T) throws(SQLiteError) -> T? {
        let stmt = try statement(sql)
        try stmt.bind(bindings)
        defer { stmt.reset() }
        return try stmt.step() ? read(stmt) : nil
    }

    /// Runs a statement that returns no rows.
    package func run(_ sql: String, _ bindings: [SQLiteValue] = []) throws(SQLiteError) {
        let stmt = try statement(sql)
        try stmt.bind(bindings)
        defer { stmt.reset() }
        while try stmt.step() {}
    }

    /// Runs `body`, interrupting SQLite (`SQLITE_INTERRUPT`) once `nanoseconds` have passed.
    package func withTimeLimit<T>(nanoseconds: Int64, _ body: () throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        let deadline = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
        deadline.initialize(to: SystemClock.monotonicNanos() &+ nanoseconds)
        sqlite3_progress_handler(
            handle, 1000,
            { context in
                guard let context else { return 0 }
                return SystemClock.monotonicNanos() > context.assumingMemoryBound(to: Int64.self).pointee ? 1 : 0
            }, deadline)
        defer {
            sqlite3_progress_handler(handle, 0, nil, nil)
            deadline.deallocate()
        }
        return try body()
    }

    package var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Keeps the WAL file when the connection closes (`SQLITE_FCNTL_PERSIST_WAL`): its space
    /// is the reserve the next start writes into, even on a full disk.
    package func persistWAL() {
        var on: Int32 = 1
        _ = sqlite3_file_control(handle, "main", SQLITE_FCNTL_PERSIST_WAL, &on)
    }
    package var changes: Int { Int(sqlite3_changes(handle)) }
    package var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    fileprivate var lastMessage: String { String(cString: sqlite3_errmsg(handle)) }

    package func error(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: sqlite3_extended_errcode(handle) == 0 ? rc : sqlite3_extended_errcode(handle), message: lastMessage)
    }

    /// Rolls back an open transaction, if any.
    ///
    /// Throws when the ROLLBACK fails (an I/O error; the transaction may still be open): the
    /// caller must not carry on as if nothing happened.
    package func rollbackIfNeeded() throws(SQLiteError) {
        guard isInTransaction else { return }
        let rc = sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
        if rc != SQLITE_OK { throw error(rc) }
    }

    private func assertOnBlockingThread() {
        assert(
            !confinedToBlockingThreads || BlockingThreads.isCurrentThreadMarked,
            "a daemon's SQLite call ran off the writer thread and the blocking pool")
    }
}

@available(*, unavailable)
extension SQLiteConnection: Sendable {}

/// A value to bind to a statement parameter.
package enum SQLiteValue {
    case integer(Int64)
    case text(String)
    case null
}

/// A prepared statement. Valid while its connection lives.
package final class SQLiteStatement {
    private let stmt: OpaquePointer
    private unowned let connection: SQLiteConnection

    fileprivate init(_ stmt: OpaquePointer, connection: SQLiteConnection) {
        self.stmt = stmt
        self.connection = connection
    }

    deinit { sqlite3_finalize(stmt) }

    package func reset() {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
    }

    package func bind(_ values: [SQLiteValue]) throws(SQLiteError) {
        for (i, value) in values.enumerated() { try bind(value, at: Int32(i + 1)) }
    }

    package func bind(_ value: SQLiteValue, at index: Int32) throws(SQLiteError) {
        switch value {
        case .integer(let v): try bind(v, at: index)
        case .text(let v): try bind(v, at: index)
        case .null: try check(sqlite3_bind_null(stmt, index))
        }
    }

    /// Binds bytes as TEXT, copied: they need not outlive the call. SQLite does not check
    /// that they are UTF-8 (recovery keeps damaged bytes as they were).
    package func bindTextCopy(_ bytes: [UInt8], at index: Int32) throws(SQLiteError) {
        try bytes.withUnsafeBufferPointer { buffer throws(SQLiteError) in
            let base = UnsafeRawPointer(buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!).assumingMemoryBound(to: CChar.self)
            try check(sqlite3_bind_text(stmt, index, base, Int32(buffer.count), csqlite_transient()))
        }
    }

    /// Binds bytes as a BLOB, copied: they need not outlive the call.
    package func bindBlobCopy(_ bytes: [UInt8], at index: Int32) throws(SQLiteError) {
        try bytes.withUnsafeBufferPointer { buffer throws(SQLiteError) in
            let base = UnsafeRawPointer(buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!)
            try check(sqlite3_bind_blob(stmt, index, base, Int32(buffer.count), csqlite_transient()))
        }
    }

    package func bind(_ value: Int64, at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_int64(stmt, index, value))
    }

    package func bind(_ value: Int, at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_int64(stmt, index, Int64(value)))
    }

    package func bind(_ value: String, at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_text(stmt, index, value, -1, csqlite_transient()))
    }

    /// Binds UTF-8 bytes as TEXT without copying them: they must stay valid until the next
    /// `step()` has returned.
    package func bindText(_ bytes: UnsafeRawBufferPointer, at index: Int32) throws(SQLiteError) {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self) else {
            return try check(sqlite3_bind_text(stmt, index, "", 0, nil))
        }
        try check(sqlite3_bind_text(stmt, index, base, Int32(bytes.count), nil))
    }

    /// Binds bytes as a BLOB without copying them: they must stay valid until the next
    /// `step()` has returned.
    package func bindBlob(_ bytes: UnsafeRawBufferPointer, at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_blob(stmt, index, bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(bytes.count), nil))
    }

    /// Advances; true when a row is available.
    package func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(stmt)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.error(rc)
        }
    }

    package func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(stmt, column) }
    package func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(stmt, column)) }
    package func isNull(_ column: Int32) -> Bool { sqlite3_column_type(stmt, column) == SQLITE_NULL }
    package func optionalInt64(_ column: Int32) -> Int64? { isNull(column) ? nil : int64(column) }

    package func text(_ column: Int32) -> String? {
        guard let p = sqlite3_column_text(stmt, column) else { return nil }
        return String(cString: p)
    }

    /// The column's bytes, valid until the next step or reset.
    package func withBytes<T, E: Error>(_ column: Int32, _ body: (UnsafeRawBufferPointer) throws(E) -> T) throws(E) -> T {
        let p = sqlite3_column_blob(stmt, column)
        let n = Int(sqlite3_column_bytes(stmt, column))
        return try body(UnsafeRawBufferPointer(start: p, count: n))
    }

    private func check(_ rc: Int32) throws(SQLiteError) {
        if rc != SQLITE_OK { throw connection.error(rc) }
    }
}

@available(*, unavailable)
extension SQLiteStatement: Sendable {}
