import NIOCore
import TrackQueueEvent

extension LineEntry {
    /// `bytes` parsed by `parser` into `batch`: its events, or the error that refused it.
    package init(
        parsing bytes: ByteBuffer, with parser: EventParser, stampMillis: Int64, into batch: inout EventBatch,
        warnings: inout ParseWarnings
    ) {
        self = bytes.withUnsafeReadableBytes { raw in
            do throws(IngestError) {
                return .events(count: try parser.parse(raw, stampMillis: stampMillis, into: &batch, warnings: &warnings))
            } catch {
                return .refused(error)
            }
        }
    }
}
