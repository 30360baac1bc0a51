import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Self-tests of `TestHTTPServer`, driven by plain clients: URLSession and a raw TCP socket.
@Suite struct TestHTTPServerSelfTests {
    @Test func largePostBodyRoundTrips() async throws {
        let server = try await TestHTTPServer.start { request, _ in .ok(#"{"received":\#(request.body.count)}"#) }
        let payload = (0..<2_500_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }

        var request = URLRequest(url: URL(string: server.url)!)
        request.httpMethod = "POST"
        request.httpBody = Data(payload)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("Bearer secret-token", forHTTPHeaderField: "Authorization")
        request.setValue("trackq-selftest/1.0", forHTTPHeaderField: "User-Agent")
        let (data, response) = try await URLSession(configuration: .ephemeral).data(for: request)

        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        #expect(String(decoding: data, as: UTF8.self) == #"{"received":2500000}"#)
        let received = try #require(server.requests.first)
        #expect(server.requestCount == 1)
        #expect(received.method == "POST")
        #expect(received.uri == "/api/track")
        #expect(received.body.count == payload.count)
        #expect(received.body == payload)
        #expect(received.header("content-type") == "application/json")
        #expect(received.header("AUTHORIZATION") == "Bearer secret-token")
        #expect(received.header("User-Agent") == "trackq-selftest/1.0")
        #expect(received.header("X-Missing") == nil)
        try await server.stop()
    }

    @Test func scriptedStatusesArriveInSequence() async throws {
        let script: [ScriptedResponse] = [
            .status(503, body: "busy", headers: [("Retry-After", "2")]),
            .status(503, headers: [("Retry-After", "1")]),
            .ok(),
        ]
        let server = try await TestHTTPServer.start { _, index in script[min(index, script.count - 1)] }
        let session = URLSession(configuration: .ephemeral)

        var seen: [(Int, String?, String)] = []
        for number in 0..<3 {
            var request = URLRequest(url: URL(string: server.url)!)
            request.httpMethod = "POST"
            request.httpBody = Data(#"[{"n":\#(number)}]"#.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            let (data, response) = try await session.data(for: request)
            let http = try #require(response as? HTTPURLResponse)
            seen.append((http.statusCode, http.value(forHTTPHeaderField: "Retry-After"), String(decoding: data, as: UTF8.self)))
        }

        #expect(seen.map(\.0) == [503, 503, 200])
        #expect(seen.map(\.1) == ["2", "1", nil])
        #expect(seen.map(\.2) == ["busy", "", #"{"ok":true}"#])
        #expect(server.requests.compactMap { $0.jsonArray?.first?["n"] as? Int } == [0, 1, 2])
        try await server.stop()
    }

    @Test func headersAreRecordedInOrderAndJSONParses() async throws {
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let connection = try RawHTTPConnection(port: server.port)
        let body = #"[{"event":"a","n":1},{"event":"b","n":2}]"#

        try connection.send(
            "POST /api/track?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trace: one\r\nx-trace: two\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        )
        let response = try connection.readResponse()

        #expect(response.status == 200)
        let received = try #require(server.requests.first)
        #expect(received.uri == "/api/track?x=1")
        #expect(received.headers.map(\.0) == ["Host", "X-Trace", "x-trace", "Content-Type", "Content-Length"])
        #expect(received.header("x-TRACE") == "one")
        let events = try #require(received.jsonArray)
        #expect(events.map { $0["event"] as? String } == ["a", "b"])
        #expect(ReceivedRequest(method: "POST", uri: "/", headers: [], body: Array("{}".utf8), receivedAt: .now).jsonArray == nil)
        try await server.stop()
    }

    @Test func keepAliveServesTwoRequestsOnOneConnection() async throws {
        let server = try await TestHTTPServer.start { _, index in .ok("reply \(index)") }
        let connection = try RawHTTPConnection(port: server.port)

        // One request, its answer, then two sent back to back before reading either answer.
        try connection.send(Self.post(#"[{"n":0}]"#))
        let first = try connection.readResponse()
        try connection.send(Self.post(#"[{"n":1}]"#) + Self.post(#"[{"n":2}]"#))
        let second = try connection.readResponse()
        let third = try connection.readResponse()

        #expect([first, second, third].map(\.status) == [200, 200, 200])
        #expect([first, second, third].map(\.body) == ["reply 0", "reply 1", "reply 2"])
        #expect(first.header("content-length") == "7")
        #expect(first.header("connection") == nil)
        #expect(server.requestCount == 3)
        #expect(server.openConnectionCount == 1)
        try await server.stop()
    }

    @Test func connectionCloseIsHonored() async throws {
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let connection = try RawHTTPConnection(port: server.port)

        try connection.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        let response = try connection.readResponse()

        #expect(response.status == 200)
        #expect(response.header("Connection") == "close")
        #expect(try connection.readUntilClosed().isEmpty)
        try await server.stop()
    }

    @Test func setResponderChangesFutureAnswers() async throws {
        let server = try await TestHTTPServer.start { _, _ in .status(500) }
        let connection = try RawHTTPConnection(port: server.port)

        try connection.send(Self.post("[]"))
        let before = try connection.readResponse()
        server.setResponder { _, index in .status(429, headers: [("Retry-After", "\(index)")]) }
        try connection.send(Self.post("[]"))
        let after = try connection.readResponse()

        #expect(before.status == 500)
        #expect(after.status == 429)
        #expect(after.header("retry-after") == "1")
        try await server.stop()
    }

    @Test func stopResetsConnectionsAndRefusesNewOnes() async throws {
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let connection = try RawHTTPConnection(port: server.port)
        try connection.send(Self.post("[]"))
        #expect(try connection.readResponse().status == 200)

        try await server.stop()

        // The kept-alive connection is reset, and nothing listens any more.
        #expect(throws: POSIXError(.ECONNRESET)) { try connection.readUntilClosed() }
        #expect(RawHTTPConnection.connectError(port: server.port) == ECONNREFUSED)
        try await server.stop()  // a second stop is harmless
    }

    @Test func unusedPortRefusesThenCanBeBound() async throws {
        let port = try unusedLocalPort()
        #expect(port > 0)
        #expect(RawHTTPConnection.connectError(port: port) == ECONNREFUSED)

        // Server down, then up on the same port, then down, then up again.
        for round in 0..<2 {
            let server = try await TestHTTPServer.start(port: port) { _, _ in .ok() }
            #expect(server.port == port)
            #expect(server.url == "http://127.0.0.1:\(port)/api/track")
            let connection = try RawHTTPConnection(port: port)
            try connection.send(Self.post(#"[{"round":\#(round)}]"#))
            #expect(try connection.readResponse().status == 200)
            try await server.stop()
            #expect(RawHTTPConnection.connectError(port: port) == ECONNREFUSED)
        }
    }

    @Test func startFailsWhenThePortIsTaken() async throws {
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        await #expect(throws: (any Error).self) {
            let second = try await TestHTTPServer.start(port: server.port) { _, _ in .ok() }
            try await second.stop()
        }
        try await server.stop()
    }

    /// A keep-alive POST to /api/track with a JSON body.
    private static func post(_ json: String) -> String {
        "POST /api/track HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(json.utf8.count)\r\n\r\n\(json)"
    }
}

/// One parsed HTTP/1.1 response.
private struct RawHTTPResponse {
    var status: Int
    var headers: [(String, String)]
    var body: String

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// A blocking TCP client on 127.0.0.1 that writes raw bytes and parses Content-Length
/// responses: it shows exactly what goes over one connection.
private final class RawHTTPConnection {
    let fd: Int32
    private var pending: [UInt8] = []

    init(port: Int) throws {
        fd = try Self.connected(port: port)
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// The errno of connecting to `port`, or 0 when it connects.
    static func connectError(port: Int) -> Int32 {
        do {
            close(try connected(port: port))
            return 0
        } catch {
            return (error as? POSIXError)?.code.rawValue ?? -1
        }
    }

    private static func connected(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            let code = errno
            close(fd)
            throw POSIXError(.init(rawValue: code) ?? .EIO)
        }
        return fd
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIXError(.init(rawValue: errno) ?? .EIO)
            }
            offset += n
        }
    }

    /// Reads one response (status line, headers, Content-Length body).
    func readResponse() throws -> RawHTTPResponse {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            headEnd = pending.indices.dropLast(3).first { pending[$0..<$0 + 4].elementsEqual(separator) }
            if headEnd == nil, try !fill() { throw POSIXError(.ECONNRESET) }
        }
        let lines = String(decoding: pending[..<headEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        pending.removeFirst(headEnd! + 4)
        let status = Int(lines[0].split(separator: " ")[1]) ?? -1
        let headers = lines.dropFirst().map { line -> (String, String) in
            let colon = line.firstIndex(of: ":")!
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        let length = Int(headers.first { $0.0.lowercased() == "content-length" }?.1 ?? "0") ?? 0
        while pending.count < length {
            if try !fill() { throw POSIXError(.ECONNRESET) }
        }
        let body = String(decoding: pending[..<length], as: UTF8.self)
        pending.removeFirst(length)
        return RawHTTPResponse(status: status, headers: headers, body: body)
    }

    /// Reads until the peer closes; returns what arrived meanwhile. Throws on a reset.
    func readUntilClosed() throws -> [UInt8] {
        while try fill() {}
        defer { pending = [] }
        return pending
    }

    /// Appends what the socket has; false at EOF.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                pending += chunk[..<n]
                return true
            }
            if n == 0 { return false }
            if errno == EINTR { continue }
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
    }
}
