import Foundation
import Testing

@testable import TrackQueue

/// Proxies (issue 23): `--proxy`, `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, through Debian's
/// tinyproxy run by the test; and how a proxy URL and a no-proxy list are read.
@Suite(.serialized, .enabled(if: TinyProxy.isInstalled, "tinyproxy is not installed (apt-get install tinyproxy)"))
struct ProxyTests {
    private func startDaemon(
        _ dir: borrowing TestDirectory, _ arguments: [String], environment: [String: String] = [:], name: String = "daemon"
    ) async throws -> TrackqProcess {
        try await TrackqProcess.startDaemon(
            dir, ["--retry-initial", "50ms", "--retry-max", "1h", "--log-level", "info"] + arguments,
            environment: ["TRACKQ_TOKEN": "proxy-test-token"].merging(environment) { $1 }, logName: name)
    }

    private func stop(_ daemon: TrackqProcess) async throws {
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
    }

    @Test func anHTTPSEndpointGoesThroughTheProxyWithCONNECTAndItsCredentials() async throws {
        let dir = try TestDirectory()
        var pki = TestPKI(in: dir.path)
        let ca = try pki.ca("API CA")
        let server = try await TestHTTPServer.start(tls: try TestPKI.serverTLS(try pki.certificate("127.0.0.1", signedBy: ca))) { _, _ in
            .ok()
        }
        let proxy = try await TinyProxy(in: dir, ["ConnectPort \(server.port)", "BasicAuth edge s3cret-w0rd"])
        // The password is "s3cret-w0rd", its hyphen percent-encoded in the URL (curl decodes it too).
        let daemon = try await startDaemon(
            dir, ["--endpoint", server.httpsURL, "--ca-file", ca.certificate],
            environment: ["TRACKQ_PROXY": proxy.url(credentials: "edge:s3cret%2Dw0rd")])
        try DeliveryTests.enqueue(20, socket: dir.socket)
        let probe = DatabaseProbe(path: dir.database)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        #expect(proxy.requests.contains("CONNECT 127.0.0.1:\(server.port) HTTP/1.1"))
        #expect(DeliveryTests.deliveredSeqs(server, statuses: Array(repeating: 200, count: server.requestCount)) == Array(0..<20))
        #expect(daemon.stderr.contains("http://…@127.0.0.1:\(proxy.port)"))
        let status = try runCommand(TrackqBinary.path, ["status", "--json", "--database", dir.database]).stdout
        try await stop(daemon)
        for text in [daemon.stderr, status] {
            #expect(!text.contains("w0rd") && !text.contains("s3cret") && !text.contains("proxy-test-token"))
        }
        try await proxy.stop()
        try await server.stop()
    }

    @Test func theEnvironmentsProxyIsUsedUnlessNoProxyNamesTheHost() async throws {
        let dir = try TestDirectory()
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let proxy = try await TinyProxy(in: dir)
        let probe = DatabaseProbe(path: dir.database)

        let proxied = try await startDaemon(dir, ["--endpoint", server.url], environment: ["http_proxy": proxy.url()], name: "proxied")
        try DeliveryTests.enqueue(5, socket: dir.socket)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        // The HTTP client tunnels http too: CONNECT, then the request inside.
        let through = proxy.requests.filter { $0 == "CONNECT 127.0.0.1:\(server.port) HTTP/1.1" }.count
        #expect(through >= 1)
        try await stop(proxied)

        let direct = try await startDaemon(
            dir, ["--endpoint", server.url], environment: ["HTTP_PROXY": proxy.url(), "NO_PROXY": "localhost,127.0.0.0/8"],
            name: "direct")
        try DeliveryTests.enqueue(5, socket: dir.socket)
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        #expect(proxy.requests.filter { $0 == "CONNECT 127.0.0.1:\(server.port) HTTP/1.1" }.count == through)
        #expect(
            DeliveryTests.deliveredSeqs(server, statuses: Array(repeating: 200, count: server.requestCount)) == Array(0..<5) + Array(0..<5))
        try await stop(direct)
        try await proxy.stop()
        try await server.stop()
    }

    @Test func aProxyThatRefusesKeepsTheEventsAndSaysWhy() async throws {
        let dir = try TestDirectory()
        var pki = TestPKI(in: dir.path)
        let ca = try pki.ca("API CA")
        let server = try await TestHTTPServer.start(tls: try TestPKI.serverTLS(try pki.certificate("127.0.0.1", signedBy: ca))) { _, _ in
            .ok()
        }
        let probe = DatabaseProbe(path: dir.database)
        let lastError = { try probe.strings("SELECT coalesce(last_error, '') FROM daemon_state").first ?? "" }

        // CONNECT only to port 443 (tinyproxy's default): the API's port is refused.
        let strict = try await TinyProxy(in: dir, name: "strict", ["ConnectPort 443"])
        let refused = try await startDaemon(dir, ["--endpoint", server.httpsURL, "--ca-file", ca.certificate, "--proxy", strict.url()])
        try DeliveryTests.enqueue(3, socket: dir.socket)
        try await waitUntil("the refusal in the status") { try lastError().contains("refused") }
        #expect(
            try lastError() == "through the proxy \(strict.url()): the proxy refused to connect to the API (check what it allows)")
        #expect(try probe.queued == 3)
        try await stop(refused)

        let guarded = try await TinyProxy(in: dir, name: "guarded", ["ConnectPort \(server.port)", "BasicAuth edge secret"])
        let unauthorized = try await startDaemon(
            dir, ["--endpoint", server.httpsURL, "--ca-file", ca.certificate, "--proxy", guarded.url()], name: "unauthorized")
        try await waitUntil("the 407 in the status") { try lastError().contains("407") }
        #expect(try lastError().hasPrefix("through the proxy \(guarded.url()): the proxy asked for credentials (407)"))
        #expect(try probe.queued == 3)
        try await stop(unauthorized)

        let gone = try unusedLocalPort()
        let nothing = try await startDaemon(
            dir, ["--endpoint", server.httpsURL, "--ca-file", ca.certificate, "--proxy", "http://127.0.0.1:\(gone)"], name: "nothing")
        try await waitUntil("the refused connection in the status") { try lastError().contains("connection refused") }
        #expect(try lastError() == "through the proxy http://127.0.0.1:\(gone): connection refused")
        #expect(try probe.queued == 3)
        try await stop(nothing)
        #expect(server.requestCount == 0)
        try await strict.stop()
        try await guarded.stop()
        try await server.stop()
    }

    @Test func aProxyThatCannotBeUsedStopsTheStartNamingWhereItCameFromNotItsPassword() async throws {
        let dir = try TestDirectory()
        let cases: [([String], [String: String], String)] = [
            (
                ["--proxy", "socks5://127.0.0.1:1080"], [:],
                #"the proxy "socks5://127.0.0.1:1080" (--proxy (TRACKQ_PROXY)) is not an http:// proxy"#
            ),
            (
                [], ["HTTPS_PROXY": "http://me:hunter2@proxy.local:99999"],
                #"the proxy "http://…@proxy.local:99999" (HTTPS_PROXY) has a port"#
            ),
            // As the token: a password on the command line is one `ps` shows.
            (["--proxy", "http://me:hunter2@proxy.local:3128"], [:], "the proxy's credentials never go on the command line"),
        ]
        for (index, (arguments, environment, expected)) in cases.enumerated() {
            let process = try TrackqProcess(
                ["daemon", "--socket", dir.socket, "--database", dir.database, "--endpoint", "https://api.example/api/track"] + arguments,
                environment: environment, stderrFile: dir.file("start-\(index).log"))
            #expect(try await process.waitForExit() == 2)
            #expect(process.stderr.contains(expected), "\(process.stderr)")
            #expect(!process.stderr.contains("hunter2"))
        }
    }
}

/// How a proxy URL and a no-proxy list are read: pure values.
@Suite struct ProxyRouteTests {
    @Test func proxyURLsAreReadAsCurlWritesThem() throws {
        #expect(try ProxyRoute.parse("http://proxy.corp:3128", source: "x") == ProxyRoute(host: "proxy.corp", port: 3128, source: "x"))
        #expect(try ProxyRoute.parse("proxy.corp:3128/", source: "x") == ProxyRoute(host: "proxy.corp", port: 3128, source: "x"))
        #expect(try ProxyRoute.parse("http://proxy.corp", source: "x").port == 1080)
        #expect(try ProxyRoute.parse("http://[fd00::1]:8080", source: "x") == ProxyRoute(host: "fd00::1", port: 8080, source: "x"))
        let withCredentials = try ProxyRoute.parse("http://a%40b:p%3Aw@10.0.0.1:8080", source: "x")
        #expect(withCredentials.username == "a@b" && withCredentials.password == "p:w")
        #expect(withCredentials.shown == "http://…@10.0.0.1:8080")
        #expect(try ProxyRoute.parse("http://user@h:1", source: "x").password == nil)
        for bad in [
            "https://p:1", "socks5://p:1", "http://:8080", "http://p:0", "http://p:65536", "http://p:80/path", "http://p q:1",
            "http://[::1:1",
        ] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try ProxyRoute.parse(bad, source: "x") }
        }
    }

    @Test func errorsNeverShowTheCredentials() {
        #expect(throws: ConfigurationError.self) { try ProxyRoute.parse("http://u:topsecret@p:notaport", source: "HTTPS_PROXY") }
        do {
            _ = try ProxyRoute.parse("http://u:topsecret@p:notaport", source: "HTTPS_PROXY")
        } catch {
            #expect(!error.message.contains("topsecret"))
            #expect(error.message.contains("HTTPS_PROXY"))
        }
    }

    @Test func printedSettingsNeverShowTheProxysCredentials() throws {
        let settings = try DaemonSettings.resolve(
            flags: ["database": "/tmp/q.db", "socket": "/tmp/q.sock"],
            environment: ["TRACKQ_PROXY": "http://edge:hunter2@proxy.local:3128"])
        #expect(settings.proxyRoute?.password == "hunter2")
        var dumped = ""
        dump(settings, to: &dumped)
        for text in ["\(settings)", String(reflecting: settings), dumped] {
            #expect(!text.contains("hunter2"), "\(text)")
            #expect(text.contains("http://…@proxy.local:3128"))
        }
    }

    @Test func noProxyMatchesAsCurlDoes() {
        #expect(ProxyRoute.bypasses(host: "api.example.com", noProxy: "example.com"))
        #expect(ProxyRoute.bypasses(host: "api.example.com", noProxy: ".example.com"))
        #expect(ProxyRoute.bypasses(host: "example.com", noProxy: "example.com"))
        #expect(!ProxyRoute.bypasses(host: "badexample.com", noProxy: "example.com"))
        #expect(ProxyRoute.bypasses(host: "anything", noProxy: "*"))
        #expect(ProxyRoute.bypasses(host: "10.1.2.3", noProxy: "localhost, 10.0.0.0/8"))
        #expect(!ProxyRoute.bypasses(host: "11.1.2.3", noProxy: "10.0.0.0/8"))
        #expect(ProxyRoute.bypasses(host: "192.168.1.7", noProxy: "192.168.1.7"))
        #expect(!ProxyRoute.bypasses(host: "3.3.3.3", noProxy: "3.3"))
        #expect(ProxyRoute.bypasses(host: "[::1]", noProxy: "::1"))
        #expect(ProxyRoute.bypasses(host: "API.Example.COM", noProxy: "example.com"))
        #expect(!ProxyRoute.bypasses(host: "api.example.com", noProxy: ""))
    }

    @Test func theSettingWinsOverTheEnvironmentAndLowerCaseOverUpper() throws {
        let https = "https://api.example.com/api/track"
        let environment = ["https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2", "http_proxy": "http://plain:3"]
        #expect(try ProxyRoute.choose(endpoint: https, setting: nil, environment: environment)?.host == "lower")
        #expect(
            try ProxyRoute.choose(endpoint: https, setting: nil, environment: ["HTTPS_PROXY": "http://upper:2"])?.source == "HTTPS_PROXY")
        #expect(try ProxyRoute.choose(endpoint: "http://api.example.com/t", setting: nil, environment: environment)?.host == "plain")
        let flag = ProxyRoute(host: "flag", port: 4, source: "--proxy")
        #expect(try ProxyRoute.choose(endpoint: https, setting: .url(flag), environment: environment) == flag)
        #expect(try ProxyRoute.choose(endpoint: https, setting: ProxyRoute.Setting.none, environment: environment) == nil)
        #expect(
            try ProxyRoute.choose(endpoint: https, setting: nil, environment: environment.merging(["NO_PROXY": "example.com"]) { $1 })
                == nil)
        #expect(try ProxyRoute.choose(endpoint: https, setting: nil, environment: [:]) == nil)
    }
}
