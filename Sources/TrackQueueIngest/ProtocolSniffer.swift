import NIOCore

/// The first bytes of a connection decide what it speaks: an HTTP method and a space
/// (`POST `, `GET `, ...) make it HTTP/1.1; anything else is the line protocol, exactly as
/// before. A JSON line never starts with an upper-case letter, so a line-protocol
/// connection is decided by its first byte and waits for nothing.
///
/// Once decided, the sniffer installs the protocol's handlers after itself, hands them the
/// bytes it read, and leaves the pipeline.
package final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer

    package enum WireProtocol: Equatable {
        case lines
        case http
    }

    /// The request methods that make a connection HTTP.
    package static let methods: Set<String> = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]

    /// What a connection whose first bytes are `bytes` speaks; nil until the bytes tell.
    package static func decide(_ bytes: some Collection<UInt8>) -> WireProtocol? {
        var method = ""
        for byte in bytes {
            if byte == UInt8(ascii: " ") { return methods.contains(method) ? .http : .lines }
            guard (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte), method.utf8.count < 7 else { return .lines }
            method.unicodeScalars.append(Unicode.Scalar(byte))
        }
        return nil
    }

    private let install: (WireProtocol, ChannelPipeline.SynchronousOperations) throws -> Void
    private var received: ByteBuffer?
    /// Set once: the connection may close while the first bytes are being handed on, and
    /// that close must not install a second protocol.
    private var decided = false

    /// - Parameter install: adds the handlers of a protocol at the end of the pipeline.
    package init(install: @escaping (WireProtocol, ChannelPipeline.SynchronousOperations) throws -> Void) {
        self.install = install
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !decided else { return context.fireChannelRead(data) }
        var incoming = Self.unwrapInboundIn(data)
        if received == nil {
            received = incoming
        } else {
            received!.writeBuffer(&incoming)
        }
        if let wire = Self.decide(received!.readableBytesView) { become(wire, context: context) }
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard !decided else { return context.fireUserInboundEventTriggered(event) }
        // EOF or a drain before the bytes told: what was sent is a (short) line.
        become(.lines, context: context) { $0.fireUserInboundEventTriggered(event) }
    }

    package func channelInactive(context: ChannelHandlerContext) {
        guard !decided else { return context.fireChannelInactive() }
        become(.lines, context: context) { $0.fireChannelInactive() }
    }

    /// Installs `wire`'s handlers, passes them the bytes read and then `andThen`'s event,
    /// and leaves (a context fires nothing once removed).
    private func become(
        _ wire: WireProtocol, context: ChannelHandlerContext, andThen: (ChannelHandlerContext) -> Void = { _ in }
    ) {
        decided = true
        do {
            try install(wire, context.pipeline.syncOperations)
        } catch {
            context.close(promise: nil)
            return
        }
        if let received {
            self.received = nil
            context.fireChannelRead(Self.wrapInboundOut(received))
        }
        andThen(context)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

@available(*, unavailable)
extension ProtocolSniffer: Sendable {}
