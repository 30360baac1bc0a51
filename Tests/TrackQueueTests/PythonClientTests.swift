import Foundation
import Testing

/// "From any language": the README's Python client and a Python test suite, against a live
/// daemon.
@Suite struct PythonClientTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test(.enabled(if: which("python3") != nil, "python3 is not installed"))
    func pythonTestSuitePassesAgainstALiveDaemon() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let python = try #require(which("python3"))
        let result = try runCommand(
            python, ["-m", "unittest", "-v", Self.repository.appendingPathComponent("Tests/python/test_client.py").path],
            environment: ["TRACKQ_SOCKET": daemon.socket, "PYTHONDONTWRITEBYTECODE": "1"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("Ran 5 tests"))
        let probe = DatabaseProbe(path: daemon.database)
        #expect(
            try probe.scalar("SELECT count(*) FROM queue WHERE json_extract(body, '$.event_name') LIKE 'py_%'") == 1 + 10 + 1 + 1000 + 1)
        try await daemon.stop()
    }

    @Test(.enabled(if: which("python3") != nil, "python3 is not installed"))
    func exampleClientExitsNonZeroWhenALineIsRefused() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let python = try #require(which("python3"))
        let script = Self.repository.appendingPathComponent("examples/python/trackq_client.py").path
        let good = try runCommand(python, [script, #"{"event_name":"a","user_id":"u"}"#], environment: ["TRACKQ_SOCKET": daemon.socket])
        #expect(good.status == 0)
        #expect(good.stdout.contains(#""accepted": 1"#))
        let bad = try runCommand(python, [script, #"{"event_name":"a"}"#], environment: ["TRACKQ_SOCKET": daemon.socket])
        #expect(bad.status == 1)
        #expect(bad.stdout.contains("invalid_event"))
        let unreachable = try runCommand(
            python, [script, #"{"event_name":"a","user_id":"u"}"#], environment: ["TRACKQ_SOCKET": dir.file("nobody.sock")])
        #expect(unreachable.status == 2)
        #expect(unreachable.stderr.contains(dir.file("nobody.sock")))
        try await daemon.stop()
    }
}
