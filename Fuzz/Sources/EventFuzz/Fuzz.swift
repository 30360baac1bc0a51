import NIOCore
import TrackQueueEvent

/// libFuzzer's entry point: the input is a byte stream as an app would write it to the
/// socket, cut into reads at sizes taken from its first byte.
///
/// Properties checked on every input (a failure traps, which libFuzzer reports as a crash):
/// - the framer and the parser never trap, whatever the bytes;
/// - every event the parser accepts is valid JSON of its own kind: parsing its normalized
///   text again accepts it and gives back exactly the same bytes;
/// - every refusal carries one of the five wire codes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let chunk = max(1, Int(bytes.first ?? 1))
    var framer = LineFrameDecoder(maxLineBytes: 4096)
    let parser = EventParser(maxEventBytes: 2048)
    var buffer = ByteBufferAllocator().buffer(capacity: size)
    var offset = bytes.isEmpty ? 0 : 1
    var frames: [LineFrame] = []
    while offset < bytes.count {
        let end = min(bytes.count, offset + chunk)
        buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[offset..<end])))
        offset = end
        while let frame = framer.nextFrame(&buffer) { frames.append(frame) }
    }
    if let last = framer.lastFrame(&buffer) { frames.append(last) }

    let codes = ["invalid_json", "invalid_event", "too_large", "queue_full", "unavailable"]
    for frame in frames {
        guard case .line(let line) = frame else { continue }
        var batch = EventBatch()
        let result = line.withUnsafeReadableBytes { parse($0, parser, into: &batch) }
        switch result {
        case .success(let count):
            precondition(count == batch.ends.count, "one end per event")
            var start = 0
            for end in batch.ends {
                let event = Array(batch.bytes[start..<end])
                var again = EventBatch()
                let reparsed = event.withUnsafeBytes { parse($0, parser, into: &again) }
                guard case .success(1) = reparsed, again.bytes == event else {
                    preconditionFailure("normalized text parses to itself")
                }
                start = end
            }
        case .failure(let error):
            precondition(codes.contains(error.code.description), "a wire code")
            precondition(batch.bytes.isEmpty, "a refused line leaves nothing behind")
        }
    }
    return 0
}

private func parse(_ bytes: UnsafeRawBufferPointer, _ parser: EventParser, into batch: inout EventBatch) -> Result<Int, IngestError> {
    do throws(IngestError) {
        return .success(try parser.parse(bytes, stampMillis: 1_795_150_800_123, into: &batch))
    } catch {
        return .failure(error)
    }
}

// SwiftPM links an executable target's entry point as `<Target>_main`; hand control to
// libFuzzer's driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("EventFuzz_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in
        guard let data else { return 0 }
        return fuzz(data, size)
    }
}
