import Foundation
import NIOHTTP1
import Testing

@testable import TrackQueue

/// The HTTP face of the ingest socket: the Track API's own call, over the real Unix socket of
/// an in-process daemon, answered after the commit.
@Suite struct HTTPFaceTests {
    /// Shaped like the Track API's documented sample request: an array, pretty-printed, with
    /// its `20-11-23T22:28:55.111Z` timestamp that is not RFC 3339.
    static let sample = """
        [
          {
            "event_name": "feature_used",
            "user_id": "18f716ac-37a4-464f-adb7-3cc30032308c",
            "timestamp": "20-11-23T22:28:55.111Z",
            "properties": {
              "feature_name": "export_report",
              "plan": "pro"
            },
            "context": {
              "group_id": "ac8db7ba-5139-4911-ba6e-523fd9c4704b",
              "device_id": "device-1",
              "session_id": "session-1",
              "source": "product"
            }
          }
        ]
        """

    static let event = #"{"event_name":"signed_in","user_id":"u1"}"#

    @Test(.enabled(if: which("curl") != nil, "curl is not installed (.ci/run installs it)"))
    func documentedSampleThroughCurlIsAcceptedCommittedAndDelivered() async throws {
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) { $0.endpoint = server.url }
        let file = dir.file("event.json")
        try Self.sample.write(toFile: file, atomically: false, encoding: .utf8)
        let curl = try await runOffThePool(
            try #require(which("curl")),
            [
                "-sS", "--unix-socket", daemon.socket, "http://localhost/api/track",
                "-H", "Content-Type: application/json", "-d", "@" + file,
            ], environment: [:])
        #expect(curl.status == 0, "\(curl.stderr)")
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(curl.stdout.utf8)) as? [String: Any])
        #expect(answer["success"] as? Bool == true, "\(curl.stdout)")
        #expect(answer["message"] as? String == "Event(s) tracked successfully")
        #expect(answer["accepted"] as? Int == 1)
        #expect(UUID(uuidString: answer["response_id"] as? String ?? "") != nil, "\(curl.stdout)")
        #expect(answer["warnings"] as? [String] == ["timestamp: not RFC 3339; forwarded unchanged"])

        try await waitUntil("the event to reach the API") { server.requestCount >= 1 }
        let delivered = try #require(server.requests.first?.jsonArray?.first)
        #expect(delivered["timestamp"] as? String == "20-11-23T22:28:55.111Z")
        #expect(delivered["event_name"] as? String == "feature_used")
        #expect((delivered["context"] as? [String: Any])?["source"] as? String == "product")
        try await daemon.stop()
        try await server.stop()
    }

    /// On the line protocol the same sample is one line (a line is the protocol's frame), and
    /// is accepted with the same warning.
    @Test func theSampleOnOneLineIsAcceptedByTheLineProtocolToo() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        try client.write(Self.sample.replacingOccurrences(of: "\n", with: " ") + "\n")
        #expect(
            try client.readLine()
                == #"{"ok":true,"accepted":1,"first_id":1,"last_id":1,"warnings":["timestamp: not RFC 3339; forwarded unchanged"]}"#)
        // Pretty-printed over several lines, it is what the line protocol says it is: not JSON.
        try client.write(Self.sample + "\n")
        #expect(try Answer(client.readLine()).error == "invalid_json")
        #expect(try DatabaseProbe(path: daemon.database).queued == 1)
        try await daemon.stop()
    }

    /// The app's own credentials are dropped at the door: a real daemon process at log level
    /// trace, its log, its database files and what the API received are searched for them.
    @Test func anAppsAuthorizationHeaderReachesNeitherLogNorDatabaseNorAPI() async throws {
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let dir = try TestDirectory()
        let daemon = try await TrackqProcess.startDaemon(
            dir, ["--endpoint", server.url, "--log-level", "trace"], environment: ["TRACKQ_TOKEN": "daemon-token"])
        let client = try UnixClient(path: dir.socket)
        let secrets = ["app-bearer-7f3a9c", "app-key-51d2e8"]
        let reply = try client.exchange(
            httpRequest(
                "POST", "/api/track", body: Self.sample,
                headers: [("Authorization", "Bearer " + secrets[0]), ("x-api-key", secrets[1])]))
        #expect(reply.status == 200, "\(reply.body)")
        try await waitUntil("the event to reach the API") { server.requestCount >= 1 }
        let received = try #require(server.requests.first)
        #expect(received.header("authorization") == "Bearer daemon-token")
        daemon.signal(SIGTERM)
        #expect(try await daemon.waitForExit() == 0)

        var places: [(String, String)] = [("the log", daemon.stderr)]
        for (name, value) in received.headers { places.append(("the API's header \(name)", value)) }
        places.append(("the API's body", received.bodyText))
        for suffix in ["", "-wal", "-shm"] {
            if let data = FileManager.default.contents(atPath: dir.database + suffix) {
                places.append(("queue.db\(suffix)", String(decoding: data, as: UTF8.self)))
            }
        }
        #expect(daemon.stderr.contains("trace"), "the log is at trace level: \(daemon.stderr.prefix(300))")
        for secret in secrets {
            for (place, text) in places { #expect(!text.contains(secret), "\(secret) found in \(place)") }
        }
        try await server.stop()
    }

    @Test func eachRefusalHasItsStatusAndTheAPIsErrorShape() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) {
            // 300 stored, and the note as sent
            $0.maxEventBytes = 300 + EventRewriter.noteBytes(annotate: true, eventIDs: true)
            $0.maxQueueBytes = 2000
        }
        let client = try UnixClient(path: daemon.socket)
        func post(_ body: String) throws -> HTTPReply { try client.exchange(httpRequest("POST", "/api/track", body: body)) }

        let cases: [(body: String, status: Int, code: String)] = [
            ("{not json", 400, "invalid_json"),
            (#"{"event_name":"e"}"#, 400, "invalid_event"),
            (#"{"event_name":"e","user_id":"u","timestamp":null}"#, 400, "invalid_event"),
            ("[" + Array(repeating: Self.event, count: 1001).joined(separator: ",") + "]", 413, "too_large"),
            (#"{"event_name":"e","user_id":"u","pad":""# + String(repeating: "x", count: 400) + #""}"#, 413, "too_large"),
        ]
        for (body, status, code) in cases {
            let reply = try post(body)
            #expect(reply.status == status, "\(reply.body)")
            #expect(reply.json["success"] as? Bool == false)
            #expect(reply.json["error"] as? String == code, "\(reply.body)")
            #expect((reply.json["message"] as? String)?.isEmpty == false)
            #expect(reply.headers["content-type"] == "application/json")
        }
        // Fill the queue (2000 bytes), then one more is queue_full: 503 with Retry-After.
        var filled = 0
        while true {
            let reply = try post(#"{"event_name":"fill","user_id":"u","pad":""# + String(repeating: "y", count: 200) + #""}"#)
            if reply.status != 200 {
                #expect(reply.status == 503, "\(reply.body)")
                #expect(reply.json["error"] as? String == "queue_full")
                #expect(reply.headers["retry-after"].flatMap(Int.init).map { $0 > 0 } == true)
                break
            }
            filled += 1
            try #require(filled < 20, "the queue never filled")
        }
        let notFound = try client.exchange(httpRequest("GET", "/nowhere?x=1"))
        #expect(notFound.status == 404)
        #expect(notFound.json["error"] as? String == "not_found")
        let wrongMethod = try client.exchange(httpRequest("GET", "/api/track"))
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headers["allow"] == "POST")
        #expect(wrongMethod.json["success"] as? Bool == false)

        let probe = DatabaseProbe(path: daemon.database)
        #expect(try probe.queued == Int64(filled))
        #expect(try probe.scalar("SELECT rejected FROM counters") == Int64(cases.count + 1))
        try await daemon.stop()
    }

    @Test func aBodyOverTheLimitIsRefusedAndTheConnectionClosed() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        // Declared too large: refused before a byte of the body is read.
        let declared = try UnixClient(path: daemon.socket)
        try declared.write("POST /api/track HTTP/1.1\r\nHost: x\r\nContent-Length: 2000001\r\n\r\n")
        let early = try declared.readReply()
        #expect(early.status == 413)
        #expect(early.json["error"] as? String == "too_large")
        // The daemon lingers for a body that may still come; a client that gives up and says so
        // (EOF) is closed on at once.
        declared.shutdownWrite()
        #expect(try declared.readToEnd().isEmpty)
        // Chunked, growing past the limit as it arrives.
        let chunked = try UnixClient(path: daemon.socket)
        try chunked.write("POST /api/track HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        let chunk = String(repeating: " ", count: 500_000)
        var reply: HTTPReply?
        for _ in 0..<5 where reply == nil {
            do {
                try chunked.write(String(chunk.utf8.count, radix: 16) + "\r\n" + chunk + "\r\n")
            } catch {
                break  // closed under us: the answer is already waiting
            }
        }
        reply = try chunked.readReply()
        #expect(reply?.status == 413)
        #expect(try DatabaseProbe(path: daemon.database).queued == 0)
        try await daemon.stop()
    }

    @Test func oneKeepAliveConnectionCarriesAThousandRequests() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        var ids = Set<String>()
        for i in 0..<1000 {
            let reply = try client.exchange(
                httpRequest("POST", i % 2 == 0 ? "/api/track" : "/track", body: #"{"event_name":"k","user_id":"u","seq":\#(i)}"#))
            #expect(reply.status == 200, "request \(i): \(reply.body)")
            #expect(reply.headers["connection"] == "keep-alive")
            ids.insert(reply.json["response_id"] as? String ?? "")
        }
        #expect(ids.count == 1000)
        let probe = DatabaseProbe(path: daemon.database)
        #expect(try probe.queued == 1000)
        #expect(try probe.scalar("SELECT max(json_extract(body, '$.seq')) FROM queue") == 999)
        try await daemon.stop()
    }

    @Test func chunkedBodiesAndPipelinedRequestsAreAnsweredInOrder() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        let body = "[\(Self.event),\n  \(Self.event)]"
        let split = body.index(body.startIndex, offsetBy: 10)
        var chunked = "POST /api/track HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        for piece in [body[..<split], body[split...]] {
            chunked += String(piece.utf8.count, radix: 16) + "\r\n" + piece + "\r\n"
        }
        chunked += "0\r\n\r\n"
        let reply = try client.exchange(chunked)
        #expect(reply.status == 200, "\(reply.body)")
        #expect(reply.json["accepted"] as? Int == 2)

        // Two requests in one write: two answers, in order.
        try client.write(
            httpRequest("POST", "/api/track", body: Self.event)
                + httpRequest("POST", "/api/track", body: "[\(Self.event),\(Self.event),\(Self.event)]"))
        let first = try client.readReply()
        let second = try client.readReply()
        #expect(first.json["accepted"] as? Int == 1)
        #expect(second.json["accepted"] as? Int == 3)
        #expect(try DatabaseProbe(path: daemon.database).queued == 6)
        try await daemon.stop()
    }

    @Test func aRequestThatStallsMidBodyIsAnswered408AndClosed() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) { $0.httpRequestTimeout = .milliseconds(300) }
        let client = try UnixClient(path: daemon.socket)
        try client.write("POST /api/track HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"event_name\":")
        let reply = try client.readReply(timeout: .seconds(20))
        #expect(reply.status == 408)
        #expect(reply.headers["connection"] == "close")
        #expect(try client.readToEnd().isEmpty)
        #expect(try DatabaseProbe(path: daemon.database).queued == 0)

        // An idle keep-alive connection is closed too, without an answer.
        let idleDir = try TestDirectory()
        let idle = try await InProcessDaemon(directory: idleDir) { $0.httpIdleTimeout = .milliseconds(300) }
        let quiet = try UnixClient(path: idle.socket)
        #expect(try quiet.exchange(httpRequest("POST", "/track", body: Self.event)).status == 200)
        #expect(try quiet.readToEnd().isEmpty)
        try await idle.stop()
        try await daemon.stop()
    }

    /// At the connection limit a newcomer takes the place of the connection quiet longest;
    /// an HTTP connection busy with requests is not quiet, however early it connected.
    @Test func aBusyKeepAliveConnectionIsNotTheOneEvictedAtTheLimit() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) { $0.maxConnections = 2 }
        let busy = try UnixClient(path: daemon.socket)
        #expect(try busy.exchange(httpRequest("POST", "/track", body: Self.event)).status == 200)
        let quiet = try UnixClient(path: daemon.socket)
        try quiet.write("POST /track HTTP/1.1\r\nHost: x\r\n")  // decided HTTP, then nothing more
        let start = ContinuousClock.now
        try await waitUntil(timeout: .seconds(30), "ten and a half busy seconds") {
            let reply = try busy.exchange(httpRequest("POST", "/track", body: Self.event))
            guard reply.status == 200 else { throw EndOfStream(partial: reply.body) }
            return ContinuousClock.now - start >= .milliseconds(10_500)
        }
        let newcomer = try UnixClient(path: daemon.socket)
        #expect(try newcomer.exchange(httpRequest("POST", "/track", body: Self.event)).status == 200)
        #expect(try busy.exchange(httpRequest("POST", "/track", body: Self.event)).status == 200)
        #expect(try quiet.readToEnd().isEmpty, "the quiet one was closed")
        try await daemon.stop()
    }

    @Test func headersAreBounded() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        var request = "POST /api/track HTTP/1.1\r\nHost: x\r\n"
        for i in 0..<200 { request += "X-Filler-\(i): \(String(repeating: "v", count: 300))\r\n" }
        request += "Content-Length: 2\r\n\r\n{}"
        try? client.write(request)
        let reply = try client.readReply()
        #expect((400..<500).contains(reply.status))
        #expect(try client.readToEnd().isEmpty)
        #expect(try DatabaseProbe(path: daemon.database).queued == 0)
        try await daemon.stop()
    }

    @Test func bothProtocolsShareTheSocketAtOnce() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let lines = try UnixClient(path: daemon.socket)
        let http = try UnixClient(path: daemon.socket)
        for i in 0..<50 {
            try lines.write(#"{"event_name":"line","user_id":"u","seq":\#(i)}"# + "\n")
            let reply = try http.exchange(httpRequest("POST", "/api/track", body: #"{"event_name":"http","user_id":"u","seq":\#(i)}"#))
            #expect(reply.status == 200)
        }
        let answers = try lines.readLines(50).map(Answer.init)
        #expect(answers.allSatisfy { $0.ok && $0.accepted == 1 })
        let probe = DatabaseProbe(path: daemon.database)
        #expect(try probe.scalar("SELECT count(*) FROM queue WHERE json_extract(body, '$.event_name') = 'line'") == 50)
        #expect(try probe.scalar("SELECT count(*) FROM queue WHERE json_extract(body, '$.event_name') = 'http'") == 50)
        try await daemon.stop()
    }

    @Test func statusAndMetricsAreServed() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        #expect(try client.exchange(httpRequest("POST", "/api/track", body: "[\(Self.event),\(Self.event)]")).status == 200)
        #expect(
            try client.exchange(httpRequest("POST", "/api/track", body: #"{"event_name":"e","user_id":"u","timestamp":12}"#)).status == 200)

        let status = try client.exchange(httpRequest("GET", "/status"))
        #expect(status.status == 200)
        #expect(status.headers["content-type"] == "application/json")
        // `trackq status --json`'s object (delivery may move on between the two reads).
        let report = try StatusReader.read(database: daemon.database, endpoint: "http://127.0.0.1:9/api/track")
        let expected = try #require(try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as? [String: Any])
        #expect(Set(status.json.keys) == Set(expected.keys))
        for key in ["version", "daemon", "queue", "totals", "endpoint"] {
            #expect(
                try JSONSerialization.data(withJSONObject: [status.json[key]], options: .sortedKeys)
                    == JSONSerialization.data(withJSONObject: [expected[key]], options: .sortedKeys), "\(key)")
        }
        #expect((status.json["queue"] as? [String: Any])?["pending"] as? Int == 3)

        let metrics = try client.exchange(httpRequest("GET", "/metrics"))
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        #expect(metrics.body.contains("trackq_queue_pending_events 3"), "\(metrics.body)")
        #expect(metrics.body.contains("trackq_timestamps_unchecked_total 1"), "\(metrics.body)")
        try await daemon.stop()
    }

    // MARK: Pure parts

    @Test func theFirstBytesDecideTheProtocol() {
        let decide = { (text: String) in ProtocolSniffer.decide(Array(text.utf8)) }
        #expect(decide("POST /api/track HTTP/1.1") == .http)
        #expect(decide("GET ") == .http)
        #expect(decide("{\"event_name\"") == .lines)
        #expect(decide("[") == .lines)
        #expect(decide(" \r\n") == .lines)
        #expect(decide("POSTAL /x") == .lines)
        #expect(decide("post /x") == .lines)
        #expect(decide("TOOLONGMETHOD") == .lines)
        #expect(decide("POS") == nil)
        #expect(decide("") == nil)
    }

    @Test func refusalsMapToTheirStatuses() {
        let cases: [(IngestError.Code, HTTPResponseStatus, Int?)] = [
            (.invalidJSON, .badRequest, nil), (.invalidEvent, .badRequest, nil), (.tooLarge, .payloadTooLarge, nil),
            (.queueFull, .serviceUnavailable, 5), (.unavailable, .serviceUnavailable, 1),
        ]
        for (code, status, retryAfter) in cases {
            let answer = HTTPAnswer.refused(IngestError(code, "why \"quoted\""))
            #expect(answer.status == status)
            #expect(answer.retryAfter == retryAfter)
            #expect(answer.body == #"{"success":false,"message":"why \"quoted\"","error":"\#(code)"}"#)
        }
    }

    @Test func bearerTokensCompareWholly() {
        let token = BearerToken("s3cret\n")!
        var headers = HTTPHeaders([("Authorization", "Bearer s3cret")])
        #expect(token.authorizes(headers))
        headers.replaceOrAdd(name: "Authorization", value: "bearer s3cret")
        #expect(token.authorizes(headers))
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Bearer S3cret", "Basic s3cret", "Bearer ", "s3cret"] {
            headers.replaceOrAdd(name: "Authorization", value: wrong)
            #expect(!token.authorizes(headers), "\(wrong)")
        }
        #expect(!token.authorizes(HTTPHeaders()))
        #expect(BearerToken(" \n") == nil)
    }
}
