// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "trackq",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "trackq", targets: ["trackq"]),
        .library(name: "TrackQueue", targets: ["TrackQueue"]),
        // For apps written in Swift: a small client with no dependencies but Foundation.
        .library(name: "TrackQueueClient", targets: ["TrackQueueClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // Already in the graph through async-http-client; named for the trust settings (CA
        // files, client certificates) and for saying why a certificate was not trusted.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        // Also in the graph already: SHA-256 for the Idempotency-Key of a request's events.
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
    ],
    targets: [
        // The system SQLite (Debian's libsqlite3-dev), linked, never vendored.
        .systemLibrary(
            name: "CSQLite",
            path: "Sources/CSQLite",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // adjtimex(2), which Swift's Glibc module leaves out: is the wall clock synchronized?
        .systemLibrary(name: "CClock", path: "Sources/CClock"),
        // The system zlib (Debian's zlib1g-dev), for gzip request bodies (--compression).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        // The layers, one target each, so the compiler enforces the arrows ARCHITECTURE.md
        // draws: a target may use only those below it. Everything testable lives in them; the
        // executable only parses arguments.
        // Small pure helpers: JSON text, the civil calendar, saturating arithmetic, limits.
        .target(name: "TrackQueueSupport", dependencies: []),
        // POSIX edges: sd_notify, file system, the system clocks, the blocking pool.
        .target(name: "TrackQueueSystem", dependencies: ["TrackQueueSupport", "CClock", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log")]),
        // The host's clocks behind one seam, and judging them.
        .target(name: "TrackQueueClock", dependencies: ["TrackQueueSupport", "TrackQueueSystem", "CClock"]),
        // Parse, validate and normalize events; what ingest hands the store. Pure.
        .target(name: "TrackQueueEvent", dependencies: ["TrackQueueSupport"]),
        // The settings table, parsing, precedence, paths.
        .target(name: "TrackQueueConfig", dependencies: ["TrackQueueSupport", "TrackQueueSystem", "TrackQueueEvent"]),
        // `trackq status`'s report and its renderings. Pure.
        .target(name: "TrackQueueStatus", dependencies: ["TrackQueueSupport", "TrackQueueClock", "TrackQueueEvent"]),
        // The daemon's swift-metrics names.
        .target(name: "TrackQueueMetrics", dependencies: ["TrackQueueEvent", .product(name: "CoreMetrics", package: "swift-metrics")]),
        // Every SQL statement: the queue file, its writer thread and readers, damaged files.
        .target(name: "TrackQueueStore", dependencies: ["TrackQueueSupport", "TrackQueueSystem", "TrackQueueClock", "TrackQueueEvent", "TrackQueueConfig", "TrackQueueStatus", "TrackQueueMetrics", "CSQLite", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log")]),
        // The socket and the HTTP face: connections as state machines, the budget. Never the store.
        .target(name: "TrackQueueIngest", dependencies: ["TrackQueueSupport", "TrackQueueSystem", "TrackQueueClock", "TrackQueueEvent", "TrackQueueConfig", "TrackQueueMetrics", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        // Draining the queue: the scheduler and plan (pure values), the loop and the sender. Never ingest.
        .target(name: "TrackQueueDelivery", dependencies: ["TrackQueueSupport", "TrackQueueSystem", "TrackQueueClock", "TrackQueueEvent", "TrackQueueConfig", "TrackQueueStatus", "TrackQueueMetrics", "TrackQueueStore", "CZlib", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "Metrics", package: "swift-metrics"), .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "X509", package: "swift-certificates"), .product(name: "Crypto", package: "swift-crypto")]),
        // The daemon: wires the layers into one ServiceGroup; re-exports them for the executable
        // and the tests.
        .target(
            name: "TrackQueue",
            dependencies: [
                "TrackQueueSupport", "TrackQueueSystem", "TrackQueueClock", "TrackQueueEvent", "TrackQueueConfig",
                "TrackQueueStatus", "TrackQueueMetrics", "TrackQueueStore", "TrackQueueIngest", "TrackQueueDelivery",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(name: "TrackQueueClient"),
        .executableTarget(
            name: "trackq",
            dependencies: [
                "TrackQueue",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "TrackQueueTests",
            dependencies: [
                "TrackQueue",
                "CSQLite",
                "CZlib",
                "TrackQueueClient",
                "trackq",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            // C source built by the tests themselves (a fault library for LD_PRELOAD).
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
