import Foundation
import Testing
import TrackQueue
import TrackQueueClient

/// The Swift client library (product TrackQueueClient) against a live daemon, through the real
/// socket.
///
/// The client blocks its thread until each answer comes, so every call here runs on a thread of
/// its own, never on the concurrency pool the tests (and an in-process daemon) share.
@Suite struct TrackQueueClientTests {
    @Test func aTrackEventIsStoredWithItsFieldsAndAMillisecondTimestamp() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let socket = daemon.socket
        let answer = try await onOwnThread {
            let client = try TrackQueueClient(socketPath: socket)
            defer { client.close() }
            return try client.send(
                TrackEvent(
                    eventName: "swift_one", userID: "u1",
                    timestamp: Date(timeIntervalSince1970: 1_795_150_800.1235),
                    properties: ["plan": "pro", "seats": 3, "price": 9.5, "trial": false, "tags": ["a", "b"], "coupon": nil],
                    context: ["app": ["version": "3.1.0"]]))
        }
        #expect(answer.ok)
        #expect(answer.accepted == 1)
        #expect(answer.error == nil)
        let id = try #require(answer.firstID)
        #expect(answer.lastID == id)

        let probe = DatabaseProbe(path: daemon.database)
        #expect(try probe.queued == 1)
        let fields = try probe.strings(
            """
            SELECT json_extract(body, '$.event_name') || '|' || json_extract(body, '$.user_id') || '|' ||
                   json_extract(body, '$.timestamp') || '|' || json_extract(body, '$.properties.plan') || '|' ||
                   json_extract(body, '$.properties.seats') || '|' || json_extract(body, '$.properties.price') || '|' ||
                   json_extract(body, '$.properties.trial') || '|' || json(json_extract(body, '$.properties.tags')) || '|' ||
                   json_type(body, '$.properties.coupon') || '|' || json_extract(body, '$.context.app.version')
            FROM queue WHERE id = \(id)
            """)
        #expect(fields == ["swift_one|u1|2026-11-20T05:00:00.123Z|pro|3|9.5|0|[\"a\",\"b\"]|null|3.1.0"])
        try await daemon.stop()
    }

    @Test func withoutATimestampTheDaemonStampsOne() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let socket = daemon.socket
        let answer = try await onOwnThread {
            try TrackQueueClient(socketPath: socket).send(TrackEvent(eventName: "swift_now", userID: "u1"))
        }
        #expect(answer.ok)
        let stamps = try DatabaseProbe(path: daemon.database).strings("SELECT json_extract(body, '$.timestamp') FROM queue")
        #expect(stamps.count == 1)
        #expect(stamps.first?.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil, "\(stamps)")
        try await daemon.stop()
    }

    struct SignUp: Encodable {
        var eventName = "swift_custom"
        var userID: String
        var at: Date
        var properties: [String: Int]

        enum CodingKeys: String, CodingKey {
            case eventName = "event_name"
            case userID = "user_id"
            case at, properties
        }
    }

    @Test func anyEncodableIsOneEventWithDatesInRFC3339() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let socket = daemon.socket
        let answer = try await onOwnThread {
            try TrackQueueClient(socketPath: socket).send(
                SignUp(userID: "u/7", at: Date(timeIntervalSince1970: 1_795_150_800.5), properties: ["n": 7]))
        }
        #expect(answer.ok)
        #expect(answer.accepted == 1)
        let rows = try DatabaseProbe(path: daemon.database).strings(
            """
            SELECT json_extract(body, '$.event_name') || '|' || json_extract(body, '$.user_id') || '|' ||
                   json_extract(body, '$.at') || '|' || json_extract(body, '$.properties.n') FROM queue
            """)
        #expect(rows == ["swift_custom|u/7|2026-11-20T05:00:00.500Z|7"])
        try await daemon.stop()
    }

    @Test func aDictionaryAndARawJSONLineAreEventsToo() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let socket = daemon.socket
        let (fromDictionary, fromLine, badLine) = try await onOwnThread {
            let client = try TrackQueueClient(socketPath: socket)
            defer { client.close() }
            let fromDictionary = try client.send([
                "event_name": "swift_dict", "user_id": "u1", "properties": ["n": 1, "ok": true] as [String: any Sendable],
            ])
            let fromLine = try client.send(json: #"{"event":"swift_raw","user_id":"u2","extra":[1,2]}"#)
            let badLine = try client.send(json: "{not json")
            return (fromDictionary, fromLine, badLine)
        }
        #expect(fromDictionary.ok && fromDictionary.accepted == 1)
        #expect(fromLine.ok && fromLine.accepted == 1)
        #expect(!badLine.ok && badLine.error == "invalid_json" && badLine.accepted == 0)
        let rows = try DatabaseProbe(path: daemon.database).strings(
            """
            SELECT json_extract(body, '$.event_name') || '|' || json_extract(body, '$.user_id') || '|' ||
                   coalesce(json_extract(body, '$.properties.n'), json(json_extract(body, '$.extra'))) FROM queue ORDER BY id
            """)
        #expect(rows == ["swift_dict|u1|1", "swift_raw|u2|[1,2]"])
        try await daemon.stop()
    }

    @Test func aLineThatIsNotOneLineIsRefusedBeforeSending() throws {
        // No daemon needed past the connect: nothing is sent.
        let dir = try TestDirectory()
        let listener = try ListeningSocket(path: dir.socket)
        let client = try TrackQueueClient(socketPath: dir.socket)
        defer { client.close() }
        for line in ["{\"event_name\":\"a\",\n\"user_id\":\"u\"}", "   ", ""] {
            do {
                _ = try client.send(json: line)
                Issue.record("sent \(line.debugDescription)")
            } catch {
                guard case .encoding = error.kind else {
                    Issue.record("\(error)")
                    continue
                }
            }
        }
        _ = listener
    }

    @Test func aBatchIsOneAnswerWithConsecutiveIDs() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let socket = daemon.socket
        let answer = try await onOwnThread {
            try TrackQueueClient(socketPath: socket).send(
                batch: (1...3).map {
                    TrackEvent(eventName: "swift_batch", userID: "u\($0)", properties: ["i": .number(Double($0))])
                })
        }
        #expect(answer.ok)
        #expect(answer.accepted == 3)
        let first = try #require(answer.firstID)
        let last = try #require(answer.lastID)
        #expect(last - first == 2)
        #expect(
            try DatabaseProbe(path: daemon.database).strings(
                "SELECT json_extract(body, '$.user_id') FROM queue WHERE id BETWEEN \(first) AND \(last) ORDER BY id") == [
                    "u1", "u2", "u3",
                ])
        try await daemon.stop()
    }

    @Test func aRefusedEventNamesTheFieldAndTheConnectionGoesOn() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let socket = daemon.socket
        let (refused, badBatch, accepted) = try await onOwnThread {
            let client = try TrackQueueClient(socketPath: socket)
            defer { client.close() }
            let refused = try client.send(TrackEvent(eventName: "swift_bad", userID: ""))
            let badBatch = try client.send(batch: [
                TrackEvent(eventName: "swift_bad", userID: "u1"), TrackEvent(eventName: "", userID: "u2"),
            ])
            let accepted = try client.send(TrackEvent(eventName: "swift_after", userID: "u1"))
            return (refused, badBatch, accepted)
        }
        #expect(!refused.ok)
        #expect(refused.error == "invalid_event")
        #expect(refused.message?.contains("user_id") == true, "\(refused)")
        #expect(refused.accepted == 0 && refused.firstID == nil)
        #expect(!refused.isRetryable)
        #expect(!badBatch.ok && badBatch.error == "invalid_event")
        #expect(badBatch.message?.contains("[1].event_name") == true, "\(badBatch)")
        #expect(accepted.ok && accepted.accepted == 1)
        // Nothing of a refused line is stored, a batch included.
        #expect(try DatabaseProbe(path: daemon.database).strings("SELECT json_extract(body, '$.event_name') FROM queue") == ["swift_after"])
        try await daemon.stop()
    }

    @Test func anUnreachableSocketIsAnErrorNamingThePath() throws {
        let dir = try TestDirectory()
        let missing = dir.file("nobody-listens.sock")
        do {
            _ = try TrackQueueClient(socketPath: missing, timeout: .seconds(5))
            Issue.record("connected to \(missing)")
        } catch {
            guard case .unreachable(let path, let reason) = error.kind else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(path == missing)
            #expect(!reason.isEmpty)
            #expect(error.description.contains(missing))
        }
    }

    @Test func noAnswerWithinTheTimeoutIsAnError() async throws {
        // A socket that accepts connections and never answers.
        let dir = try TestDirectory()
        let listener = try ListeningSocket(path: dir.file("silent.sock"))
        let client = try TrackQueueClient(socketPath: dir.file("silent.sock"), timeout: .milliseconds(200))
        defer { client.close() }
        let started = ContinuousClock.now
        let result = await onOwnThreadResult { try client.send(TrackEvent(eventName: "swift_silent", userID: "u")) }
        let elapsed = ContinuousClock.now - started
        #expect(throws: TrackQueueClientError.timedOut(.milliseconds(200))) { try result.get() }
        #expect(elapsed >= .milliseconds(200) && elapsed < .seconds(10), "\(elapsed)")
        _ = listener
    }

    @Test func theDefaultSocketPathComesFromTheEnvironment() {
        #expect(TrackQueueClient.defaultSocketPath(environment: ["TRACKQ_SOCKET": "/tmp/x.sock"]) == "/tmp/x.sock")
        #expect(TrackQueueClient.defaultSocketPath(environment: ["TRACKQ_SOCKET": ""]) == "/run/trackq/trackq.sock")
        #expect(TrackQueueClient.defaultSocketPath(environment: [:]) == "/run/trackq/trackq.sock")
    }

    @Test func afterTheDaemonRestartsTheSameClientReconnects() async throws {
        let dir = try TestDirectory()
        var daemon = try await InProcessDaemon(directory: dir)
        let socket = daemon.socket
        let client = try TrackQueueClient(socketPath: socket, timeout: .seconds(20))
        defer { client.close() }
        #expect(try await onOwnThread { try client.send(TrackEvent(eventName: "swift_before", userID: "u")) }.ok)
        try await daemon.stop()

        // The old connection is gone: this line's fate is unknown, so it is an error, not an answer.
        let during = await onOwnThreadResult { try client.send(TrackEvent(eventName: "swift_during", userID: "u")) }
        #expect(throws: TrackQueueClientError.self) { try during.get() }

        daemon = try await InProcessDaemon(directory: dir)
        #expect(try await onOwnThread { try client.send(TrackEvent(eventName: "swift_after", userID: "u")) }.ok)
        #expect(
            try DatabaseProbe(path: daemon.database).strings(
                "SELECT json_extract(body, '$.event_name') FROM queue ORDER BY id") == ["swift_before", "swift_after"])
        try await daemon.stop()

        client.close()
        #expect(throws: TrackQueueClientError.closed) { try client.send(json: #"{"event_name":"x","user_id":"u"}"#) }
    }

    @Test func oneClientIsSafeToShareBetweenTasks() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try TrackQueueClient(socketPath: daemon.socket)
        defer { client.close() }
        let answers = try await withThrowingTaskGroup(of: [TrackQueueAnswer].self) { group in
            for task in 0..<8 {
                group.addTask {
                    try await onOwnThread {
                        try (0..<50).map { i in
                            try client.send(
                                TrackEvent(
                                    eventName: "swift_concurrent", userID: "t\(task)",
                                    properties: ["i": .number(Double(i))]))
                        }
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(answers.count == 400)
        #expect(answers.allSatisfy { $0.ok && $0.accepted == 1 })
        #expect(Set(answers.compactMap(\.firstID)).count == 400)
        #expect(
            try DatabaseProbe(path: daemon.database).scalar(
                "SELECT count(*) FROM queue WHERE json_extract(body, '$.event_name') = 'swift_concurrent'") == 400)
        #expect(
            try DatabaseProbe(path: daemon.database).scalar(
                "SELECT count(DISTINCT json_extract(body, '$.user_id') || '/' || json_extract(body, '$.properties.i')) FROM queue") == 400)
        try await daemon.stop()
    }

    @Test func jsonValuesRoundTripAndEncodeWholeNumbersAsIntegers() throws {
        let value: JSONValue = ["s": "x", "n": 3, "f": 0.25, "b": true, "z": nil, "a": [1, "two"], "o": ["k": -1]]
        let data = try JSONEncoder().encode(value)
        #expect(try JSONDecoder().decode(JSONValue.self, from: data) == value)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains(#""n":3"#) && text.contains(#""k":-1"#) && text.contains(#""f":0.25"#), "\(text)")
    }
}

/// A Unix socket that accepts connections into its backlog and never reads.
private struct ListeningSocket: ~Copyable {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let bound = UnixSocketAddress.with(path) { bind(fd, $0, $1) }
        guard fd >= 0, bound == 0, listen(fd, 4) == 0 else { throw POSIXError(.EADDRINUSE) }
    }

    deinit { close(fd) }
}
