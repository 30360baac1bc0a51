import NIOCore
import NIOPosix
import TrackQueueEvent

/// The one way trackq listens: the socket, the TCP face and the metrics listener are all
/// bootstrapped here, with the same options and the same admission.
package enum Listener {
    /// The bootstrap every listener binds.
    ///
    /// - Parameters:
    ///   - connections: the limit its connections count against; over it, a connection is
    ///     told `unavailable` (an answer line, or an HTTP 503 with `refusesInHTTP`) and closed. Admission is decided on the listening channel's loop
    ///     in the order connections were accepted (the child initializers run on the
    ///     children's loops in any order, so deciding there could refuse an app that came first).
    ///   - readBytes: the largest read: reads of at most this, one at a time (a line connection
    ///     asks for a burst only while the budget has room, ``IngestHandler``).
    ///   - serve: adds the connection's handlers.
    package static func bootstrap(
        group: any EventLoopGroup, connections: ConnectionTracker?, refusesInHTTP: Bool = false,
        readBytes: Int = LineLimits().readBytes,
        serve: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void
    ) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let connections {
                        try channel.pipeline.syncOperations.addHandler(AdmissionHandler(connections: connections))
                    }
                }
            }
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(
                .recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: readBytes)
            )
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let connections, !connections.isAdmitted(channel) {
                        // Over the limit: say so once the channel is active, and close; the
                        // client may retry.
                        let error = IngestError(.unavailable, "too many connections (\(connections.limit)); retry later")
                        return try channel.pipeline.syncOperations.addHandler(
                            RefusingHandler(error, http: refusesInHTTP))
                    }
                    try serve(channel.pipeline.syncOperations)
                }
            }
    }
}
