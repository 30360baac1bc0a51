import Crypto
import TrackQueueStore

/// A request's `Idempotency-Key`: the first 16 bytes of the SHA-256 of its events' ids, in
/// hex. The same events give the same key, on a retry, after a restart or a requeue (their
/// ids are stored); a half of a bisected batch, other events, gets its own.
package enum IdempotencyKey {
    package static func of(_ events: ArraySlice<OutgoingBatch.Event>) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16 * events.count)
        for event in events { event.uuid.appendBytes(to: &bytes) }
        let digest = SHA256.hash(data: bytes)
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(32)
        for byte in digest.prefix(16) {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0xF)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
