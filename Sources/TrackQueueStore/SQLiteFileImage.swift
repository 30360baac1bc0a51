import TrackQueueSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A damaged SQLite file read page by page, without SQLite: what recovery reads when SQLite
/// itself refuses the file (SQLITE_CORRUPT, SQLITE_NOTADB) or the B-tree no longer reaches
/// every page.
///
/// Debian's libsqlite3 (3.40) offers no recovery API: `sqlite3_recover_*` lives in the
/// `sqlite3` shell's sources only, and the library is built without the `sqlite_dbpage`
/// table. So this reads the file format itself (sqlite.org/fileformat2.html): the header,
/// the WAL's committed frames over the main file's pages (checksums checked, as SQLite does
/// when it opens a WAL), and every table leaf page's cells with their overflow chains.
///
/// Nothing read is trusted: every offset, length, page number and chain is bounded by the
/// file's size, and a page that does not parse is skipped, never a trap.
package struct SQLiteFileImage {
    /// Bytes of a page (512 to 65536).
    package let pageSize: Int
    /// Bytes of a page that hold data (the page size less the header's reserved bytes).
    package let usableSize: Int
    /// Pages in the image: the main file's, or the last committed WAL frame's database size.
    package let pageCount: Int
    /// `PRAGMA user_version`, from the header (0 if page 1 is unreadable).
    package private(set) var userVersion = 0
    /// The header's database size in pages, when the header says it is valid.
    package let headerPageCount: Int?
    /// Pages on the free list (their content is stale), as far as the list could be read.
    package private(set) var freePages: Set<Int> = []

    private let file: Int32
    private let fileSize: Int
    /// Page number → offset of its latest committed frame in the WAL.
    private let walFrames: [Int: Int]
    /// The database size the WAL's last commit recorded, if it has one.
    private let walDatabasePages: Int?
    private let wal: Int32

    /// The most bytes a row may have here (a segment is at most 256 KiB; a dead letter's
    /// body 2 MB): longer payloads are damage.
    package static let maxPayload = 16 << 20

    /// The first 100 bytes of a database file, as far as they can be trusted.
    package struct Header {
        package static let magic = Array("SQLite format 3\0".utf8)

        package let pageSize: Int
        /// Bytes at the end of each page that hold no data.
        package let reserved: Int
        /// The database size in pages the header gives (maybe 0 or anything, if damaged).
        package let countedPages: Int
        /// Whether SQLite trusts ``countedPages``: the change counter and the "version valid
        /// for" number agree.
        package let countValid: Bool

        /// Nil unless `bytes` holds SQLite's magic and a page size SQLite allows.
        package init?(_ bytes: [UInt8]) {
            guard bytes.count >= 100, bytes[0..<16].elementsEqual(Self.magic) else { return nil }
            let raw = Int(bytes[16]) << 8 | Int(bytes[17])
            let size = raw == 1 ? 65536 : raw
            guard size >= 512, size <= 65536, size & (size - 1) == 0 else { return nil }
            pageSize = size
            reserved = Int(bytes[20])
            countedPages = Int(SQLiteFileImage.u32(bytes, 28))
            countValid = SQLiteFileImage.u32(bytes, 24) == SQLiteFileImage.u32(bytes, 92)
        }

        /// The first 100 bytes of `path` (fewer if it is shorter); nil if it cannot be read.
        package static func read(_ path: String) -> [UInt8]? {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return nil }
            defer { closeDescriptor(fd) }
            return read(fd)
        }

        package static func read(_ fd: Int32) -> [UInt8]? {
            var bytes = [UInt8](repeating: 0, count: 100)
            let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 100, 0) }
            return got < 0 ? nil : Array(bytes[0..<got])
        }
    }

    /// Opens `path` (and `path-wal` when it exists) read-only. Never writes either file.
    package init(path: String) throws(StoreError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io("cannot open \(path): \(errnoDescription())") }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            closeDescriptor(fd)
            throw .io("cannot read \(path): \(errnoDescription())")
        }
        file = fd
        fileSize = Int(info.st_size)
        wal = open(path + "-wal", O_RDONLY | O_CLOEXEC)

        // A header that is not SQLite's: the page size the WAL gives, else SQLite's default.
        let header = Header.read(fd).flatMap(Header.init)
        let walInfo = Self.readWAL(wal, pageSizeHint: header?.pageSize)
        let size = header?.pageSize ?? walInfo.pageSize ?? 4096
        pageSize = size
        usableSize = max(480, size - (header?.reserved ?? 0))
        walFrames = walInfo.frames
        walDatabasePages = walInfo.databasePages
        let filePages = fileSize / size
        headerPageCount = header.flatMap { $0.countValid && $0.countedPages > 0 ? $0.countedPages : nil }
        // The WAL's word on the size, bounded by the pages that can hold anything at all.
        let lastPage = max(filePages, walInfo.frames.keys.max() ?? 0)
        pageCount = min(walInfo.databasePages ?? filePages, lastPage)
        // Page 1 as the database sees it now (the WAL may hold a newer one): the schema
        // version and the free list.
        if header != nil, let first = page(1), first[0..<16].elementsEqual(Header.magic) {
            userVersion = Int(Self.u32(first, 60))
            freePages = readFreeList(firstTrunk: Int(Self.u32(first, 32)), count: Int(Self.u32(first, 36)))
        }
    }

    /// The main file's pages: what SQLite reads past them is zeros, that is, damage, unless
    /// the WAL holds them.
    package var filePageCount: Int { fileSize / pageSize }

    /// Whether every page the header counts is in the main file or the WAL.
    package var missingPages: Int {
        guard let counted = walDatabasePages ?? headerPageCount, counted > filePageCount else { return 0 }
        // By arithmetic, not a walk: the count comes from the file and may be anything.
        return counted - filePageCount - walFrames.keys.count { $0 > filePageCount && $0 <= counted }
    }

    package func close() {
        closeDescriptor(file)
        if wal >= 0 { closeDescriptor(wal) }
    }

    /// Page `number` (1-based) as the database sees it now: the WAL's committed frame for it,
    /// else the main file's bytes; nil past the end or on a short read.
    package func page(_ number: Int) -> [UInt8]? {
        guard number >= 1, number <= pageCount else { return nil }
        var bytes = [UInt8](repeating: 0, count: pageSize)
        let (fd, offset) = walFrames[number].map { (wal, $0) } ?? (file, (number - 1) * pageSize)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, pageSize, off_t(offset)) }
        return got == pageSize ? bytes : nil
    }

    // MARK: Rows

    /// One column of a row, as the record format stores it.
    package enum Value: Equatable {
        case null
        case integer(Int64)
        case real(Double)
        case text([UInt8])
        case blob([UInt8])

        package var integer: Int64? {
            if case .integer(let v) = self { return v }
            return nil
        }
    }

    /// A row of a table B-tree's leaf page: its rowid and its columns.
    package struct Row {
        package var page: Int
        package var rowid: Int64
        package var values: [Value]
    }

    /// Every row of every table leaf page that is not on the free list, page by page.
    /// `visit` returns false to stop. Pages and cells that do not parse are skipped; so are
    /// rows that spill onto overflow pages unless `followOverflow`.
    package func forEachRow(followOverflow: Bool = true, _ visit: (Row) -> Bool) {
        var number = 1
        while number <= pageCount {
            defer { number += 1 }
            if freePages.contains(number) { continue }
            guard let page = page(number) else { continue }
            let headerStart = number == 1 ? 100 : 0
            guard page.count > headerStart + 8, page[headerStart] == 0x0D else { continue }
            let cells = Int(page[headerStart + 3]) << 8 | Int(page[headerStart + 4])
            let pointers = headerStart + 8
            guard cells > 0, pointers + 2 * cells <= usableSize else { continue }
            for cell in 0..<cells {
                let at = pointers + 2 * cell
                let offset = Int(page[at]) << 8 | Int(page[at + 1])
                guard offset >= pointers + 2 * cells, offset < usableSize,
                    let (rowid, payload) = cellPayload(page, at: offset, followOverflow: followOverflow),
                    let values = Self.record(payload)
                else { continue }
                if !visit(Row(page: number, rowid: rowid, values: values)) { return }
            }
        }
    }

    /// A table leaf cell's rowid and whole payload (overflow pages followed), or nil.
    private func cellPayload(_ page: [UInt8], at start: Int, followOverflow: Bool) -> (Int64, [UInt8])? {
        var at = start
        guard let (size, n1) = Self.varint(page, at, limit: usableSize) else { return nil }
        at += n1
        guard let (rowid, n2) = Self.varint(page, at, limit: usableSize) else { return nil }
        at += n2
        guard size >= 0, size <= Int64(Self.maxPayload) else { return nil }
        let total = Int(size)
        let local = localPayload(total)
        guard at + local <= usableSize else { return nil }
        var payload = Array(page[at..<(at + local)])
        guard local < total else { return (rowid, payload) }
        guard followOverflow else { return nil }
        guard at + local + 4 <= usableSize else { return nil }
        payload.reserveCapacity(total)
        var next = Int(Self.u32(page, at + local))
        var hops = 0
        while payload.count < total {
            hops += 1
            guard next >= 1, next <= pageCount, hops <= pageCount, let overflow = self.page(next) else { return nil }
            let take = min(total - payload.count, usableSize - 4)
            payload.append(contentsOf: overflow[4..<(4 + take)])
            next = Int(Self.u32(overflow, 0))
        }
        return (rowid, payload)
    }

    /// How much of a table leaf cell's payload of `total` bytes is on the page itself.
    private func localPayload(_ total: Int) -> Int {
        let maxLocal = usableSize - 35
        guard total > maxLocal else { return total }
        let minLocal = (usableSize - 12) * 32 / 255 - 23
        let k = minLocal + (total - minLocal) % (usableSize - 4)
        return k <= maxLocal ? k : minLocal
    }

    /// The columns of a record, or nil if its header does not agree with its body.
    package static func record(_ payload: [UInt8]) -> [Value]? {
        guard let (headerSize, n) = varint(payload, 0, limit: payload.count), headerSize >= 1,
            headerSize <= Int64(payload.count)
        else { return nil }
        var types: [Int64] = []
        var at = n
        while at < Int(headerSize) {
            guard let (type, used) = varint(payload, at, limit: Int(headerSize)), type >= 0, type != 10, type != 11 else {
                return nil
            }
            types.append(type)
            at += used
            guard types.count <= 64 else { return nil }
        }
        var body = Int(headerSize)
        var values: [Value] = []
        values.reserveCapacity(types.count)
        for type in types {
            let width: Int
            switch type {
            case 0, 8, 9: width = 0
            case 1...4: width = Int(type)
            case 5: width = 6
            case 6, 7: width = 8
            default: width = Int((type - 12) / 2)
            }
            guard width <= payload.count - body else { return nil }
            let bytes = payload[body..<(body + width)]
            switch type {
            case 0: values.append(.null)
            case 8: values.append(.integer(0))
            case 9: values.append(.integer(1))
            case 1...6:
                var v: Int64 = Int64(Int8(bitPattern: bytes.first!))
                for b in bytes.dropFirst() { v = v << 8 | Int64(b) }
                values.append(.integer(v))
            case 7:
                var bits: UInt64 = 0
                for b in bytes { bits = bits << 8 | UInt64(b) }
                values.append(.real(Double(bitPattern: bits)))
            default:
                values.append(type & 1 == 0 ? .blob(Array(bytes)) : .text(Array(bytes)))
            }
            body += width
        }
        return body == payload.count ? values : nil
    }

    // MARK: Free list

    /// The pages of the free list, as far as its trunk pages can be followed.
    private func readFreeList(firstTrunk: Int, count: Int) -> Set<Int> {
        var free = Set<Int>()
        var trunk = firstTrunk
        while trunk >= 1, trunk <= pageCount, !free.contains(trunk), free.count <= count, let page = page(trunk) {
            free.insert(trunk)
            let leaves = Int(Self.u32(page, 4))
            guard leaves >= 0, 8 + 4 * leaves <= usableSize else { break }
            for i in 0..<leaves {
                let leaf = Int(Self.u32(page, 8 + 4 * i))
                if leaf >= 1 && leaf <= pageCount { free.insert(leaf) }
            }
            trunk = Int(Self.u32(page, 0))
        }
        return free
    }

    // MARK: The WAL

    /// The committed frames of a WAL: for each page, the offset of its latest frame up to the
    /// last valid commit, and the database size that commit recorded. Frames after a bad
    /// checksum or salt are ignored, as SQLite ignores them.
    private static func readWAL(_ fd: Int32, pageSizeHint: Int?) -> (frames: [Int: Int], databasePages: Int?, pageSize: Int?) {
        guard fd >= 0 else { return ([:], nil, nil) }
        var header = [UInt8](repeating: 0, count: 32)
        guard header.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 32, 0) }) == 32 else { return ([:], nil, nil) }
        let magic = u32(header, 0)
        guard magic == 0x377f_0682 || magic == 0x377f_0683 else { return ([:], nil, nil) }
        let bigEndian = magic & 1 == 1
        let size = Int(u32(header, 8))
        guard size >= 512, size <= 65536, size & (size - 1) == 0, pageSizeHint == nil || pageSizeHint == size else {
            return ([:], nil, nil)
        }
        var sum = checksum(header[0..<24], bigEndian: bigEndian, start: (0, 0))
        guard sum.0 == u32(header, 24), sum.1 == u32(header, 28) else { return ([:], nil, size) }
        let salt = (u32(header, 16), u32(header, 20))
        var frames: [Int: Int] = [:]
        var pending: [Int: Int] = [:]
        var databasePages: Int?
        var frame = [UInt8](repeating: 0, count: 24 + size)
        var offset = 32
        while frame.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 24 + size, off_t(offset)) }) == 24 + size {
            guard u32(frame, 8) == salt.0, u32(frame, 12) == salt.1 else { break }
            sum = checksum(frame[0..<8], bigEndian: bigEndian, start: sum)
            sum = checksum(frame[24...], bigEndian: bigEndian, start: sum)
            guard sum.0 == u32(frame, 16), sum.1 == u32(frame, 20) else { break }
            let number = Int(u32(frame, 0))
            guard number >= 1 else { break }
            pending[number] = offset + 24
            let commitSize = Int(u32(frame, 4))
            if commitSize > 0 {
                frames.merge(pending) { $1 }
                pending.removeAll()
                databasePages = commitSize
            }
            offset += 24 + size
        }
        return (frames, databasePages, size)
    }

    /// The WAL's checksum over `bytes` (a multiple of 8), from `start`.
    private static func checksum(_ bytes: ArraySlice<UInt8>, bigEndian: Bool, start: (UInt32, UInt32)) -> (UInt32, UInt32) {
        var (s0, s1) = start
        var at = bytes.startIndex
        while at + 8 <= bytes.endIndex {
            let x0 = word(bytes, at, bigEndian)
            let x1 = word(bytes, at + 4, bigEndian)
            s0 = s0 &+ x0 &+ s1
            s1 = s1 &+ x1 &+ s0
            at += 8
        }
        return (s0, s1)
    }

    private static func word(_ bytes: ArraySlice<UInt8>, _ at: Int, _ bigEndian: Bool) -> UInt32 {
        let (a, b, c, d) = (UInt32(bytes[at]), UInt32(bytes[at + 1]), UInt32(bytes[at + 2]), UInt32(bytes[at + 3]))
        return bigEndian ? a << 24 | b << 16 | c << 8 | d : d << 24 | c << 16 | b << 8 | a
    }

    // MARK: Numbers

    /// A big-endian 32-bit number at `at` (0 if out of bounds).
    package static func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        guard at >= 0, at + 4 <= bytes.count else { return 0 }
        return UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3])
    }

    /// SQLite's varint at `at` (1 to 9 bytes, not past `limit`): its value and length.
    package static func varint(_ bytes: [UInt8], _ at: Int, limit: Int) -> (Int64, Int)? {
        var value: UInt64 = 0
        let end = min(limit, bytes.count)
        for i in 0..<9 {
            guard at + i < end, at + i >= 0 else { return nil }
            let byte = bytes[at + i]
            if i == 8 { return (Int64(bitPattern: value << 8 | UInt64(byte)), 9) }
            value = value << 7 | UInt64(byte & 0x7f)
            if byte & 0x80 == 0 { return (Int64(bitPattern: value), i + 1) }
        }
        return nil
    }
}

private func closeDescriptor(_ fd: Int32) { _ = close(fd) }
