import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the daemon's blocking work runs: SQLite reads, file reads and process spawns.
///
/// Never on a NIO event loop (it serves the ingest socket) and never on Swift's cooperative
/// pool (it has one thread per core, two here). A `NIOThreadPool` of its own, started on
/// creation and shut down by ``shutdown()``.
package final class BlockingPool: Sendable {
    private let pool: NIOThreadPool

    package init(threads: Int = 2) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
    }

    /// Runs `body` on a pool thread and returns its result.
    package func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive {
            BlockingThreads.markCurrentThread()
            return try body()
        }
    }

    /// Runs `body` on a pool thread; the future completes on `eventLoop`.
    package func run<T: Sendable>(on eventLoop: any EventLoop, _ body: @escaping @Sendable () throws -> T) -> EventLoopFuture<T> {
        pool.runIfActive(eventLoop: eventLoop) {
            BlockingThreads.markCurrentThread()
            return try body()
        }
    }

    package func shutdown() async {
        try? await pool.shutdownGracefully()
    }
}

/// Marks the threads where blocking calls are allowed (the store's writer thread and the
/// ``BlockingPool``'s threads), so debug builds can assert that the daemon's SQLite calls
/// never run elsewhere (see ``SQLiteConnection/confinedToBlockingThreads``).
package enum BlockingThreads {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    package static func markCurrentThread() {
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
    }

    package static var isCurrentThreadMarked: Bool {
        pthread_getspecific(key) != nil
    }
}
