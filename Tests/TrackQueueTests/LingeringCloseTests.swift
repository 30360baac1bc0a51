import Foundation
import Testing

/// A request refused before its body is read gets its answer even while its client is still
/// sending: apps' HTTP libraries (Python's `http.client`, so `requests` and `urllib`; Node's
/// `http`; Go's `net/http`) post an oversize body against a real daemon and must read the 413,
/// not a reset. The clients are in `Fixtures/oversize-clients/`; each prints `status <code>`
/// or `error <what>`.
@Suite struct LingeringCloseTests {
    static let clients = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/oversize-clients")

    /// Over the 2 MB limit by a quarter, and by four times (past the loopback's socket buffers,
    /// so the body is still being sent when the answer comes).
    static let sizes = ["2250000", "8000000"]

    @Test(.enabled(if: which("python3") != nil, "python3 is not installed"))
    func pythonHTTPClientReadsThe413() async throws {
        let python = try #require(which("python3"))
        let script = Self.clients.appendingPathComponent("oversize_post.py").path
        try await Self.againstADaemon { url in
            // A small send buffer, as on a slow link: the body is far from sent when the answer comes.
            try await Self.expect413([python, script, url, "2250000", "--sndbuf=65536"], runs: 3)
            for size in Self.sizes { try await Self.expect413([python, script, url, size], runs: 2) }
        }
    }

    @Test(.enabled(if: which("node") != nil, "node is not installed"))
    func nodeHTTPReadsThe413() async throws {
        let node = try #require(which("node"))
        let script = Self.clients.appendingPathComponent("oversize_post.js").path
        try await Self.againstADaemon { url in
            for size in Self.sizes { try await Self.expect413([node, script, url, size], runs: 3) }
        }
    }

    @Test(.enabled(if: which("go") != nil, "go is not installed"))
    func goNetHTTPReadsThe413() async throws {
        let dir = try TestDirectory()
        let binary = try await buildGoProgram("oversize_post.go", from: Self.clients.path, named: "oversize_post", in: dir)
        try await Self.againstADaemon { url in
            for size in Self.sizes { try await Self.expect413([binary, url, size], runs: 3) }
        }
    }

    /// Runs `body` with the URL of a real daemon's `POST /api/track` on TCP, then checks that
    /// a small event still goes through (the daemon serves on after the refusals).
    private static func againstADaemon(_ body: (String) async throws -> Void) async throws {
        let dir = try TestDirectory()
        let port = try unusedLocalPort()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--http-address", "127.0.0.1:\(port)", "--endpoint", "http://127.0.0.1:9/t"], environment: [:])
        let url = "http://127.0.0.1:\(port)/api/track"
        try await body(url)
        let python = try #require(which("python3"))
        let script = clients.appendingPathComponent("oversize_post.py").path
        let small = try await runOffThePool(python, [script, url, "--small"], environment: [:])
        #expect(small.stdout == "status 200\n", "\(small.stdout)\(small.stderr)")
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    private static func expect413(_ command: [String], runs: Int) async throws {
        for run in 1...runs {
            let result = try await runOffThePool(command[0], Array(command.dropFirst()), environment: [:])
            #expect(result.stdout == "status 413\n", "run \(run) of \(command.dropFirst()): \(result.stdout)\(result.stderr)")
        }
    }
}
