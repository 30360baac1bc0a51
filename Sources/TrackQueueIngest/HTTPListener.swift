import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TrackQueueConfig
import TrackQueueEvent

/// The optional TCP listener (`--http-address`): the socket's HTTP face, for clients that
/// cannot reach a Unix socket (a container without the bind mount, an SDK that only takes a
/// URL). Loopback only unless the operator opts in; with `--http-token-file`, every request
/// must carry the bearer token.
///
/// Its connections count against the socket's limit and are drained with the socket's
/// (they share its ``ConnectionTracker``); as a `Service` it only closes the listener.
package final class HTTPListener: Service {
    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    package static func bind(
        _ address: HostAndPort, face: HTTPFace, connections: ConnectionTracker, group: any EventLoopGroup
    ) async throws -> HTTPListener {
        let channel = try await Listener.bootstrap(group: group, connections: connections, refusesInHTTP: true) {
            try face.configure($0)
        }.bind(host: address.host, port: address.port).get()
        return HTTPListener(channel: channel)
    }

    package func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    package func close() async {
        try? await channel.close()
    }
}
