import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import TrackQueue

/// A token goes into an HTTP header: it is checked when read, and a bad one never reaches a
/// library that would put its text in an error message.
@Suite struct TokenTests {
    @Test(arguments: [
        ("abc123", TokenSource.Check.valid("abc123")),
        ("  abc123\r\n", .valid("abc123")),
        ("\n\n", .empty),
        ("abc\n123", .invalid),
        ("abc\r\n123\r\n", .invalid),
        ("abc 123", .invalid),
        ("abc\u{7F}", .invalid),
        ("clé", .invalid),
        ("abc\u{0}", .invalid),
    ])
    func aTokenIsVisibleASCIIAfterTrimming(raw: String, expected: TokenSource.Check) {
        #expect(TokenSource.check(raw) == expected)
    }

    @Test func aTwoLineTokenFileStopsTheStartNamingTheFileNotTheToken() async throws {
        let dir = try TestDirectory()
        let tokenFile = dir.file("token")
        try "first-half-secret\nsecond-half-secret\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let process = try TrackqProcess(
            [
                "daemon", "--socket", dir.socket, "--database", dir.database, "--token-file", tokenFile,
                "--endpoint", DaemonProcessTests.nowhere,
            ],
            stderrFile: dir.file("log"))
        #expect(try await process.waitForExit() == 2)
        #expect(process.stderr.contains(tokenFile))
        #expect(!process.stderr.contains("secret"))
    }

    @Test func aCRLFInsideTRACKQ_TOKENStopsTheStart() async throws {
        let dir = try TestDirectory()
        let process = try TrackqProcess(
            ["daemon", "--socket", dir.socket, "--database", dir.database, "--endpoint", DaemonProcessTests.nowhere],
            environment: ["TRACKQ_TOKEN": "pasted-secret\r\nX-Injected: 1"], stderrFile: dir.file("log"))
        #expect(try await process.waitForExit() == 2)
        #expect(process.stderr.contains("TRACKQ_TOKEN"))
        #expect(!process.stderr.contains("pasted-secret"))
    }

    /// On reload a bad token is refused with an auth alert; the good one it replaced is kept
    /// and used; the bad text appears in no log, status or database.
    @Test func aBadTokenOnReloadRaisesAnAlertAndKeepsTheOldOne() async throws {
        let dir = try TestDirectory()
        let tokenFile = dir.file("token")
        try "good-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let keys = NIOLockedValueBox<[String]>([])
        let server = try await TestHTTPServer.start { request, _ in
            keys.withLockedValue { $0.append(request.header("authorization") ?? "") }
            return .ok()
        }
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", server.url, "--token-file", tokenFile, "--retry-initial", "50ms", "--retry-max", "200ms"],
            environment: [:])
        let probe = DatabaseProbe(path: dir.database)
        try DeliveryTests.enqueue(2, socket: dir.socket)
        try await waitUntil("the first events delivered") { try probe.queued == 0 }

        try "bad-half-secret\nbad-other-half\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        try await waitUntil("the auth alert") { try probe.strings("SELECT alert_kind FROM daemon_state") == ["auth"] }
        #expect(try probe.strings("SELECT alert_message FROM daemon_state").first?.contains(tokenFile) == true)
        try DeliveryTests.enqueue(2, socket: dir.socket)
        try await waitUntil("the next events delivered with the old token") { try probe.queued == 0 }
        #expect(keys.withLockedValue { $0 }.allSatisfy { $0 == "Bearer good-token" })
        // A 2xx does not clear it while the file is still bad; fixing the file does.
        #expect(try probe.strings("SELECT alert_kind FROM daemon_state") == ["auth"])
        try "fixed-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        try await waitUntil("the alert cleared") { try probe.scalar("SELECT alert_kind IS NULL FROM daemon_state") == 1 }

        let status = try runCommand(TrackqBinary.path, ["status", "--json", "--database", dir.database])
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        let dump = try runCommand("/usr/bin/env", ["sh", "-c", "cat '\(dir.database)'* | strings"])
        for place in [daemon.stderr, status.stdout, status.stderr, dump.stdout] {
            #expect(!place.contains("bad-half-secret") && !place.contains("good-token") && !place.contains("fixed-token"))
        }
        try await server.stop()
    }
}
