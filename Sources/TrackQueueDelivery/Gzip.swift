import CZlib

/// gzip (RFC 1952) of a request body, with the system's zlib (Debian's zlib1g).
package enum Gzip {
    /// zlib's default. On `Benchmarks/wire_bytes.py`'s varied events, 1000 a batch, measured
    /// here with the same zlib: level 1 leaves 26% of the bytes for 1.5 µs of CPU an event,
    /// 6 leaves 22% for 3.4 µs, 9 leaves 21% for 9.3 µs.
    package static let level: Int32 = 6

    /// `input` compressed; nil only if zlib cannot start (out of memory).
    package static func compress(_ input: [UInt8], level: Int32 = Gzip.level) -> [UInt8]? {
        var stream = z_stream()
        guard czlib_deflate_init_gzip(&stream, level) == Z_OK else { return nil }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, uLong(input.count)))
        var output = [UInt8](repeating: 0, count: bound)
        let result = input.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                stream.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
                stream.avail_in = uInt(source.count)
                stream.next_out = target.baseAddress
                stream.avail_out = uInt(target.count)
                return deflate(&stream, Z_FINISH)
            }
        }
        guard result == Z_STREAM_END else { return nil }
        output.removeLast(bound - Int(stream.total_out))
        return output
    }
}
