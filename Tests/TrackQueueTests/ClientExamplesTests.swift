import Foundation
import Testing

/// "From any language": the example clients in examples/ (shell, Node.js, Go) against a live
/// daemon. Each must print every answer line and exit 0 when all lines were accepted, 1 when
/// any was refused, 2 (naming the socket path) when the daemon is unreachable.
@Suite struct ClientExamplesTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func example(_ path: String) -> String { repository.appendingPathComponent("examples/" + path).path }

    @Test(.enabled(if: which("socat") != nil, "socat is not installed"))
    func shellExample() async throws {
        try await exercise(["/bin/sh", Self.example("shell/trackq-send.sh")], tag: "sh")
    }

    @Test(.enabled(if: which("node") != nil, "node is not installed"))
    func nodeExample() async throws {
        try await exercise([try #require(which("node")), Self.example("node/trackq-client.js")], tag: "js")
    }

    @Test(.enabled(if: which("go") != nil, "go is not installed"))
    func goExample() async throws {
        let dir = try TestDirectory()
        try await exercise(try await buildGo("go", binary: "trackq-example", in: dir), tag: "go")
    }

    // The HTTP variants: the same command line and exit codes, one request per argument.

    @Test(.enabled(if: which("python3") != nil, "python3 is not installed"))
    func pythonHTTPExample() async throws {
        try await exercise([try #require(which("python3")), Self.example("python/trackq_http_client.py")], tag: "pyhttp")
    }

    @Test(.enabled(if: which("node") != nil, "node is not installed"))
    func nodeHTTPExample() async throws {
        try await exercise([try #require(which("node")), Self.example("node/trackq-http-client.js")], tag: "jshttp")
    }

    @Test(.enabled(if: which("go") != nil, "go is not installed"))
    func goHTTPExample() async throws {
        let dir = try TestDirectory()
        try await exercise(try await buildGo("go-http", binary: "trackq-http-example", in: dir), tag: "gohttp")
    }

    /// Builds the Go example in `examples/<directory>`, offline; returns the command to run it.
    private func buildGo(_ directory: String, binary name: String, in dir: borrowing TestDirectory) async throws -> [String] {
        [try await buildGoProgram(".", from: Self.example(directory), named: name, in: dir)]
    }

    /// A good line and a batch (exit 0), a refused line beside a good one (exit 1), and a
    /// socket nobody listens on (exit 2).
    private func exercise(_ command: [String], tag: String) async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let environment = ["TRACKQ_SOCKET": daemon.socket]
        let probe = DatabaseProbe(path: daemon.database)
        func count(_ name: String) throws -> Int64 {
            try probe.scalar("SELECT count(*) FROM queue WHERE json_extract(body, '$.event_name') = '\(name)'")
        }

        let good = try await runOffThePool(
            command[0],
            Array(command.dropFirst()) + [
                #"{"event_name":"\#(tag)_good","user_id":"u1","properties":{"plan":"pro"}}"#,
                #"[{"event_name":"\#(tag)_batch","user_id":"u1"},{"event":"\#(tag)_batch","user_id":"u2"}]"#,
            ], environment: environment)
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        let goodLines = good.stdout.split(separator: "\n")
        #expect(goodLines.count == 2, "\(good.stdout)")
        #expect(goodLines.first?.contains(#""accepted":1"#) == true, "\(good.stdout)")
        #expect(goodLines.last?.contains(#""accepted":2"#) == true, "\(good.stdout)")
        #expect(try count("\(tag)_good") == 1)
        #expect(try count("\(tag)_batch") == 2)
        #expect(
            try probe.strings(
                "SELECT json_extract(body, '$.properties.plan') FROM queue WHERE json_extract(body, '$.event_name') = '\(tag)_good'") == [
                    "pro"
                ])

        let refused = try await runOffThePool(
            command[0],
            Array(command.dropFirst()) + [
                #"{"event_name":"\#(tag)_bad"}"#,
                #"{"event_name":"\#(tag)_beside","user_id":"u1"}"#,
            ], environment: environment)
        #expect(refused.status == 1, "\(refused.stdout)\(refused.stderr)")
        let refusedLines = refused.stdout.split(separator: "\n")
        #expect(refusedLines.count == 2, "\(refused.stdout)")
        #expect(refusedLines.first?.contains("invalid_event") == true, "\(refused.stdout)")
        #expect(refusedLines.first?.contains("user_id") == true, "\(refused.stdout)")
        #expect(refusedLines.last?.contains(#""accepted":1"#) == true, "\(refused.stdout)")
        #expect(try count("\(tag)_bad") == 0)
        #expect(try count("\(tag)_beside") == 1)

        let missing = dir.file("nobody-listens.sock")
        let unreachable = try await runOffThePool(
            command[0],
            Array(command.dropFirst()) + [
                #"{"event_name":"\#(tag)_lost","user_id":"u1"}"#
            ], environment: ["TRACKQ_SOCKET": missing])
        #expect(unreachable.status == 2, "\(unreachable.stdout)\(unreachable.stderr)")
        #expect(unreachable.stderr.contains(missing), "\(unreachable.stderr)")
        #expect(unreachable.stdout.isEmpty)

        #expect(try probe.queued == 4)
        try await daemon.stop()
    }
}
