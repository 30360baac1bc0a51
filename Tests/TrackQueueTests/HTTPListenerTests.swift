import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import TrackQueue

/// The optional TCP listener: loopback unless opted in, a bearer token when configured, the
/// same HTTP face as the socket.
@Suite struct HTTPListenerTests {
    static let event = #"{"event_name":"over_tcp","user_id":"u1"}"#

    @Test func aRealDaemonRequiresTheBearerTokenOnTCPButNotOnTheSocket() async throws {
        let dir = try TestDirectory()
        let tokenFile = dir.file("http-token")
        try "tcp-s3cret-token\n".write(toFile: tokenFile, atomically: false, encoding: .utf8)
        let port = try unusedLocalPort()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--http-address", "127.0.0.1:\(port)", "--http-token-file", tokenFile, "--endpoint", "http://127.0.0.1:9/t"],
            environment: ["TRACKQ_TOKEN": "daemon-token"])
        let client = HTTPClient(eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton))
        func post(_ authorization: String?) async throws -> (status: UInt, body: [String: Any]) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/track")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            if let authorization { request.headers.add(name: "Authorization", value: authorization) }
            request.body = .bytes(ByteBuffer(string: Self.event))
            let response = try await client.execute(request, timeout: .seconds(20))
            let body = try await response.body.collect(upTo: 1 << 20)
            let object = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
            return (response.status.code, object ?? [:])
        }
        do {
            try await waitUntil("the TCP listener") { canConnect(port: port) }
            for wrong in [nil, "Bearer tcp-s3cret-toke", "Bearer tcp-s3cret-token2", "Basic tcp-s3cret-token"] {
                let refused = try await post(wrong)
                #expect(refused.status == 401, "\(wrong ?? "no header")")
                #expect(refused.body["error"] as? String == "unauthorized")
                #expect(refused.body["success"] as? Bool == false)
            }
            let accepted = try await post("Bearer tcp-s3cret-token")
            #expect(accepted.status == 200)
            #expect(accepted.body["accepted"] as? Int == 1)
            // The socket's HTTP face wants no token: its permissions are the gate.
            let overSocket = try UnixClient(path: dir.socket).exchange(httpRequest("POST", "/track", body: Self.event))
            #expect(overSocket.status == 200)
            #expect(try DatabaseProbe(path: dir.database).queued == 2)
            #expect(!daemon.stderr.contains("tcp-s3cret-token"))
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)
        #expect(!daemon.stderr.contains("tcp-s3cret-token"))
    }

    /// Over the connection limit, a TCP client hears a proper HTTP 503 (the socket's line
    /// clients hear a line).
    @Test func overTheLimitATCPClientGetsA503() async throws {
        let dir = try TestDirectory()
        let port = try unusedLocalPort()
        let daemon = try await InProcessDaemon(directory: dir) {
            $0.maxConnections = 1
            $0.httpAddress = HostAndPort("127.0.0.1:\(port)")
        }
        let holder = try UnixClient(path: daemon.socket)
        #expect(try holder.exchange(httpRequest("POST", "/track", body: Self.event)).status == 200)
        let answer = try await onOwnThread { try readAll(port: port) }
        let (head, body) = try #require(answer.split(separator: "\r\n\r\n", maxSplits: 1).map(String.init).pairs)
        #expect(head.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "\(answer)")
        #expect(head.contains("Retry-After: 1\r\n") && head.contains("Connection: close"), "\(head)")
        #expect(head.contains("Content-Length: \(body.utf8.count)"), "\(head)")
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        #expect(object?["error"] as? String == "unavailable")
        #expect((object?["message"] as? String)?.contains("too many connections") == true)
        try await daemon.stop()
    }

    @Test func aNonLoopbackAddressIsRefusedAtStartWithoutTheOptIn() async throws {
        let dir = try TestDirectory()
        let refused = try runCommand(
            TrackqBinary.path,
            ["daemon", "--socket", dir.socket, "--database", dir.database, "--http-address", "0.0.0.0:8090"],
            environment: ["TRACKQ_TOKEN": "t"])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("--http-address"), "\(refused.stderr)")
        #expect(refused.stderr.contains("--http-allow-remote"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.socket))

        let empty = dir.file("empty-token")
        try "\n".write(toFile: empty, atomically: false, encoding: .utf8)
        let noToken = try runCommand(
            TrackqBinary.path,
            [
                "daemon", "--socket", dir.socket, "--database", dir.database, "--http-address", "127.0.0.1:8090",
                "--http-token-file", empty,
            ], environment: ["TRACKQ_TOKEN": "t"])
        #expect(noToken.status == 2)
        #expect(noToken.stderr.contains("is empty"), "\(noToken.stderr)")
    }

    @Test func settingsAcceptLoopbackAndTheOptIn() throws {
        func resolve(_ flags: [String]) throws -> DaemonSettings {
            try DaemonSettings.resolve(flags: DaemonSettings.parseFlags(flags), environment: [:])
        }
        for host in ["127.0.0.1", "127.8.9.10", "localhost", "[::1]"] {
            #expect(try resolve(["--http-address", "\(host):8090"]).httpAddress?.isLoopback == true, "\(host)")
        }
        for host in ["0.0.0.0", "10.0.0.1", "[::]", "example.com", "128.0.0.1"] {
            #expect(throws: ConfigurationError.self, "\(host)") { try resolve(["--http-address", "\(host):8090"]) }
            let opted = try resolve(["--http-address", "\(host):8090", "--http-allow-remote"])
            #expect(opted.httpAllowRemote && opted.httpAddress?.isLoopback == false, "\(host)")
        }
        #expect(try resolve(["--http-allow-remote", "--http-address", "0.0.0.0:1"]).httpAllowRemote)
        #expect(try !resolve(["--http-allow-remote", "false"]).httpAllowRemote)
        #expect(throws: ConfigurationError.self) { try resolve(["--http-allow-remote", "maybe"]) }
        #expect(
            try DaemonSettings.resolve(
                flags: [:], environment: ["TRACKQ_HTTP_ADDRESS": "10.1.2.3:80", "TRACKQ_HTTP_ALLOW_REMOTE": "yes"]
            ).httpAddress == HostAndPort("10.1.2.3:80"))
    }
}

extension Array where Element == String {
    /// The two elements of a two-element array.
    fileprivate var pairs: (String, String)? { count == 2 ? (self[0], self[1]) : nil }
}

/// Everything 127.0.0.1:`port` sends until it closes (within 20 s).
private func readAll(port: Int) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
    var limit = timeval(tv_sec: 20, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    var received: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        received += chunk[..<n]
    }
    return String(decoding: received, as: UTF8.self)
}
