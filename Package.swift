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
        // Everything testable lives here; the executable only parses arguments.
        .target(
            name: "TrackQueue",
            dependencies: [
                "CSQLite",
                "CClock",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
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
            ],
            // C source built by the tests themselves (a fault library for LD_PRELOAD).
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
