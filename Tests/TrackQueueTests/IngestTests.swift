import Foundation
import Testing

@testable import TrackQueue

/// The socket protocol end to end: a real daemon, a real Unix socket, a real SQLite file.
@Suite struct IngestTests {
    static let event = #"{"event_name":"signed_in","user_id":"u-1","properties":{"plan":"pro"}}"#

    @Test func eventIsCommittedNormalizedAndThenAcknowledged() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        try client.write(#"{"event":"signup","user_id":"u1","plan":"pro","timestamp":"2026-11-27T05:00:00Z"}"# + "\n")
        let answer = try client.readLine()
        #expect(answer == #"{"ok":true,"accepted":1,"first_id":1,"last_id":1}"#)
        // The ack came after the commit: a separate read-only connection sees the row now.
        let probe = DatabaseProbe(path: daemon.database)
        #expect(
            try probe.strings("SELECT body FROM queue") == [
                #"{"event_name":"signup","user_id":"u1","plan":"pro","timestamp":"2026-11-27T05:00:00Z"}"#
            ])
        #expect(try probe.scalar("SELECT accepted FROM counters") == 1)
        #expect(try probe.scalar("SELECT pending_bytes FROM counters") == probe.scalar("SELECT sum(bytes) FROM queue"))
        try await daemon.stop()
    }

    @Test func missingTimestampIsStampedWithTheReadTime() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        let before = SystemClock.wallMillis()
        try client.write(Self.event + "\n")
        #expect(try Answer(client.readLine()).accepted == 1)
        let after = SystemClock.wallMillis()
        let probe = DatabaseProbe(path: daemon.database)
        let body = try #require(probe.strings("SELECT body FROM queue").first)
        let object = try #require(JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        let stamp = try #require(object["timestamp"] as? String)
        #expect(stamp.hasSuffix("Z") && stamp.count == 24, "UTC with milliseconds: \(stamp)")
        let acceptedAt = try probe.scalar("SELECT accepted_at_ms FROM queue")
        #expect(stamp == RFC3339.format(millis: acceptedAt))
        #expect((before...after).contains(acceptedAt))
        #expect(try probe.scalar("SELECT accepted_boottime_ms FROM queue") > 0)
        #expect(try probe.strings("SELECT boot_id FROM boots JOIN queue ON queue.boot = boots.id") == [SystemClock.bootID])
        try await daemon.stop()
    }

    @Test func answersOneLinePerNonBlankLineInOrderWithEachErrorCode() async throws {
        let dir = try TestDirectory()
        // 200 bytes stored, and the 128 that context.trackq adds when sent.
        let daemon = try await InProcessDaemon(directory: dir) { $0.maxEventBytes = 200 + EventRewriter.maxNoteBytes }
        let client = try UnixClient(path: daemon.socket)
        let big = #"{"event_name":"e","user_id":"u","properties":{"pad":""# + String(repeating: "x", count: 300) + #""}}"#
        let lines = [
            Self.event,  // ok
            "{not json",  // invalid_json
            "",  // blank: no answer
            #"{"event_name":"e"}"#,  // invalid_event: user_id
            big,  // too_large: max-event-bytes
            "   \t",  // blank
            #"{"event_name":"e","user_id":"u","timestamp":["yesterday"]}"#,  // invalid_event: timestamp
            "\u{FF}garbage",  // invalid_json
            Self.event,  // ok
        ]
        try client.write(lines.joined(separator: "\n") + "\n")
        let answers = try client.readLines(7).map(Answer.init)
        #expect(answers.map(\.ok) == [true, false, false, false, false, false, true])
        #expect(answers.map(\.error) == [nil, "invalid_json", "invalid_event", "too_large", "invalid_event", "invalid_json", nil])
        #expect(answers[2].message?.contains("user_id") == true)
        #expect(answers[3].message?.contains("max-event-bytes") == true)
        #expect(answers[4].message?.contains("timestamp") == true)
        let probe = DatabaseProbe(path: daemon.database)
        #expect(try probe.queued == 2)
        #expect(try probe.scalar("SELECT rejected FROM counters") == 5)
        try await daemon.stop()
    }

    @Test func aTimestampThatIsNotRFC3339IsKeptAndTheAckWarns() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        try client.write(
            #"{"event_name":"e","user_id":"u","timestamp":"20-11-23T22:28:55.111Z"}"# + "\n"
                + #"{"event_name":"e","user_id":"u","timestamp":1764219600}"# + "\n" + Self.event + "\n"
                + #"{"event_name":"e","user_id":"u","timestamp":false}"# + "\n")
        let warning = #","warnings":["timestamp: not RFC 3339; forwarded unchanged"]}"#
        #expect(try client.readLine() == #"{"ok":true,"accepted":1,"first_id":1,"last_id":1"# + warning)
        #expect(try client.readLine() == #"{"ok":true,"accepted":1,"first_id":2,"last_id":2"# + warning)
        #expect(try client.readLine() == #"{"ok":true,"accepted":1,"first_id":3,"last_id":3}"#)
        #expect(try Answer(client.readLine()).error == "invalid_event")
        let probe = DatabaseProbe(path: daemon.database)
        #expect(
            try probe.strings("SELECT json_extract(body, '$.timestamp') FROM queue WHERE id < 3") == [
                "20-11-23T22:28:55.111Z", "1764219600",
            ])
        try await daemon.stop()
    }

    @Test func arrayIsAcceptedOrRefusedAsAWhole() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        try client.write("[\(Self.event),\(Self.event),{\"event_name\":\"x\"}]\n")
        let refused = try Answer(client.readLine())
        #expect(refused.error == "invalid_event")
        #expect(refused.message?.contains("[2]") == true)
        #expect(try DatabaseProbe(path: daemon.database).queued == 0)

        try client.write("[\(Self.event),\(Self.event),\(Self.event)]\n")
        #expect(try client.readLine() == #"{"ok":true,"accepted":3,"first_id":1,"last_id":3}"#)
        let tooMany = "[" + Array(repeating: Self.event, count: 1001).joined(separator: ",") + "]\n"
        try client.write(tooMany)
        #expect(try Answer(client.readLine()).error == "too_large")
        #expect(try DatabaseProbe(path: daemon.database).queued == 3)
        try await daemon.stop()
    }

    @Test func overLongLineIsRefusedAndTheNextLineStillCounts() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        let huge = #"{"event_name":"e","user_id":"u","pad":""# + String(repeating: "y", count: 2_100_000) + "\"}\n"
        // Write from another thread: the daemon answers while we are still sending.
        let writer = Thread { try? client.write(huge + Self.event + "\n") }
        writer.start()
        let answers = try client.readLines(2).map(Answer.init)
        #expect(answers.map(\.error) == ["too_large", nil])
        #expect(answers[0].message?.contains("2000000") == true)
        #expect(try DatabaseProbe(path: daemon.database).queued == 1)
        try await daemon.stop()
    }

    @Test func linesWrittenOneByteAtATimeAreFramedAlike() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        let text = "\(Self.event)\r\n\n[\(Self.event),\(Self.event)]\n{\"x\":1}\r\n\(Self.event)"
        for byte in Array(text.utf8) { try client.write([byte]) }
        client.shutdownWrite()  // the last line has no newline: EOF ends it
        let answers = try client.readToEnd().split(separator: "\n").map { try Answer(String($0)) }
        #expect(answers.map(\.accepted) == [1, 2, nil, 1])
        #expect(answers[2].error == "invalid_event")
        #expect(try DatabaseProbe(path: daemon.database).queued == 4)
        try await daemon.stop()
    }

    @Test func clientThatClosesWithoutReadingLosesNothing() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        do {
            let client = try UnixClient(path: daemon.socket)
            try client.write(String(repeating: Self.event + "\n", count: 500))
        }  // closed here, no answer read
        let probe = DatabaseProbe(path: daemon.database)
        try await waitUntil("500 events queued") { try probe.queued == 500 }
        try await daemon.stop()
    }

    @Test func thirtyTwoConcurrentWritersAreAllAckedAndAllStored() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let socket = daemon.socket
        let acked = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for writer in 0..<32 {
                group.addTask {
                    let client = try UnixClient(path: socket)
                    var ids: [Int64] = []
                    for i in 0..<100 {
                        try client.write(#"{"event_name":"e","user_id":"w\#(writer)","seq":\#(i)}"# + "\n")
                        if i % 10 == 9 {  // pipelined in tens
                            for line in try client.readLines(10) {
                                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                                guard object?["ok"] as? Bool == true, let id = object?["first_id"] as? Int else {
                                    throw EndOfStream(partial: line)
                                }
                                ids.append(Int64(id))
                            }
                        }
                    }
                    return ids
                }
            }
            var all: [Int64] = []
            for try await ids in group { all += ids }
            return all
        }
        #expect(acked.count == 3200)
        #expect(Set(acked).count == 3200)
        let probe = DatabaseProbe(path: daemon.database)
        #expect(try probe.queued == 3200)
        #expect(try probe.scalar("SELECT count(*) FROM queue WHERE id IN (\(acked.map(String.init).joined(separator: ",")))") == 3200)
        // Each writer's events are in the queue in the order it wrote them.
        for writer in [0, 17, 31] {
            let seqs = try probe.strings(
                "SELECT json_extract(body, '$.seq') FROM queue WHERE json_extract(body, '$.user_id') = 'w\(writer)' ORDER BY id")
            #expect(seqs == (0..<100).map(String.init))
        }
        try await daemon.stop()
    }

    @Test func fullQueueRefusesWithQueueFullAndKeepsWhatItHas() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) { $0.maxQueueBytes = 1000 }
        let client = try UnixClient(path: daemon.socket)
        var accepted = 0
        var answer = try Answer("{}")
        repeat {
            try client.write(Self.event + "\n")
            answer = try Answer(client.readLine())
            if answer.ok { accepted += 1 }
        } while answer.ok && accepted < 100
        #expect(answer.error == "queue_full")
        #expect(answer.message?.contains("max-queue-bytes") == true)
        let probe = DatabaseProbe(path: daemon.database)
        #expect(try probe.queued == Int64(accepted))
        #expect(try probe.scalar("SELECT sum(bytes) FROM queue") <= 1000)
        #expect(try probe.scalar("SELECT sum(bytes) FROM queue") + 100 > 1000)
        try await daemon.stop()
    }

    @Test func databaseErrorAnswersUnavailableAndServingResumesWhenItClears() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        try client.write(Self.event + "\n")
        #expect(try Answer(client.readLine()).ok)

        // Another process takes the write lock and holds it past the daemon's busy timeout.
        let other = try SQLiteConnection(path: daemon.database)
        // It waits for the daemon's own short transactions (delivery records its failed
        // attempt to the endpoint nobody listens on at about this time).
        try other.execute("PRAGMA busy_timeout = 5000")
        try other.execute("BEGIN EXCLUSIVE")
        try client.write(Self.event + "\n")
        let refused = try Answer(client.readLine(timeout: .seconds(30)))
        #expect(refused.error == "unavailable")
        try other.execute("ROLLBACK")

        try client.write(Self.event + "\n")
        #expect(try Answer(client.readLine()).accepted == 1)
        #expect(try DatabaseProbe(path: daemon.database).queued == 2)
        try await daemon.stop()
    }

    @Test func gracefulStopAnswersEveryLineReadAndLosesNoAck() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        try client.write(String(repeating: Self.event + "\n", count: 2000))
        _ = try client.readLine()
        try await daemon.stop()
        // Every answer the client got before the close was an ack, and every acked event is
        // in the database.
        let rest = try client.readToEnd().split(separator: "\n").map { try Answer(String($0)) }
        #expect(rest.allSatisfy { $0.ok })
        #expect(try DatabaseProbe(path: daemon.database).queued >= Int64(rest.count + 1))
    }

    @Test func socketIsCreatedWithMode0660AndParentsWith0750() async throws {
        let dir = try TestDirectory()
        let nested = dir.file("run/deeper/trackq.sock")
        let daemon = try await InProcessDaemon(directory: dir) { $0.paths.socket = nested }
        var info = stat()
        #expect(stat(nested, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660)
        #expect(info.st_mode & S_IFMT == S_IFSOCK)
        #expect(stat(dir.file("run/deeper"), &info) == 0)
        #expect(info.st_mode & 0o777 == 0o750)
        try await daemon.stop()
    }

    @Test(.enabled(if: getuid() == 0 && getgrnam("daemon") != nil, "needs root and a 'daemon' group"))
    func socketGroupAndModeAreApplied() async throws {
        let dir = try TestDirectory()
        let daemon = try await InProcessDaemon(directory: dir) {
            $0.socketGroup = "daemon"
            $0.socketMode = 0o620
        }
        var info = stat()
        #expect(stat(daemon.socket, &info) == 0)
        #expect(info.st_gid == getgrnam("daemon")!.pointee.gr_gid)
        #expect(info.st_mode & 0o777 == 0o620)
        try await daemon.stop()
    }

    @Test func staleSocketIsReplacedLiveOneIsNot() async throws {
        let dir = try TestDirectory()
        // A socket file left by a process that died: bound, never listened, closed.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let rc = UnixSocketAddress.with(dir.socket) { bind(fd, $0, $1) }
        #expect(rc == 0)
        close(fd)

        let daemon = try await InProcessDaemon(directory: dir)
        let client = try UnixClient(path: daemon.socket)
        try client.write(Self.event + "\n")
        #expect(try Answer(client.readLine()).ok)

        // A second daemon on another database but the same, live, socket must not steal it.
        let other = try TestDirectory()
        await #expect(throws: (any Error).self) {
            _ = try await InProcessDaemon(directory: other) { $0.paths.socket = dir.socket }
        }
        try client.write(Self.event + "\n")
        #expect(try Answer(client.readLine()).ok)
        try await daemon.stop()
    }
}
