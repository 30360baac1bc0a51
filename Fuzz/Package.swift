// swift-tools-version:6.0
// The fuzz target for trackq's edge: the line framer and the event parser, compiled from the
// daemon's own sources (symbolic links into ../Sources) so no copy can drift. Build and run
// it with ../scripts/fuzz.sh; it needs -sanitize=fuzzer, so it is not part of `swift test`.
import PackageDescription

let package = Package(
    name: "trackq-fuzz",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2")
    ],
    targets: [
        // The daemon's own layers, by symbolic links: the same module names, so the sources
        // compile here unchanged.
        .target(name: "TrackQueueSupport"),
        .target(name: "TrackQueueEvent", dependencies: ["TrackQueueSupport"]),
        .executableTarget(
            name: "EventFuzz",
            dependencies: ["TrackQueueEvent", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    ],
    swiftLanguageModes: [.v6]
)
