import NIOCore

extension ChannelHandler where Self: SendableMetatype {
    /// A callback from another thread that runs `body` on this handler's loop.
    package func onLoop<Value: Sendable>(
        _ context: ChannelHandlerContext, with: Value.Type,
        _ body: @escaping (Self, ChannelHandlerContext, Value) -> Void
    ) -> @Sendable (Value) -> Void {
        let bound = NIOLoopBound((self, context, body), eventLoop: context.eventLoop)
        return { value in
            bound.eventLoop.execute {
                let (handler, context, body) = bound.value
                body(handler, context, value)
            }
        }
    }

    /// A callback from another thread that runs `body` on this handler's loop.
    package func onLoop(
        _ context: ChannelHandlerContext, _ body: @escaping (Self, ChannelHandlerContext) -> Void
    ) -> @Sendable () -> Void {
        let call = onLoop(context, with: Bool.self) { handler, context, _ in body(handler, context) }
        return { call(true) }
    }
}

extension Channel {
    /// Closes once `lastWrite` has gone out (at once without one). NIO's close fails writes
    /// still pending: a client that half-closed and reads slowly would lose the tail of its
    /// answers.
    package func close(after lastWrite: EventLoopFuture<Void>?) {
        guard let lastWrite else { return close(promise: nil) }
        lastWrite.whenComplete { _ in self.close(promise: nil) }
    }
}
