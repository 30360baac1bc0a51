import ArgumentParser
import Foundation
import TrackQueue

struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send events through the daemon's socket, as an app would, and print its answers.",
        discussion: """
            Three forms:
              trackq send signed_in --user u1 --prop plan=pro --context device=edge-7
              trackq send --json '{"event_name":"signed_in","user_id":"u1"}'
              trackq send - < events.ndjson        (one JSON object or array per line)
            --prop and --context values are sent as JSON strings. Prints one answer line per \
            event line. Exit status: 0 if every line was accepted, 1 if any was refused, 2 if \
            the daemon could not be reached.
            """)

    @OptionGroup var location: LocationOptions

    @Argument(help: "The event name, or - to read NDJSON from standard input.")
    var eventName: String?

    @Option(help: "The user id (with EVENT_NAME).") var user: String?
    @Option(help: "A property KEY=VALUE (repeatable).") var prop: [String] = []
    @Option(help: "A context entry KEY=VALUE (repeatable).") var context: [String] = []
    @Option(help: "An RFC 3339 timestamp; default: when the daemon reads the event.") var timestamp: String?
    @Option(help: "One event (or array of events) as JSON.") var json: String?

    func validate() throws {
        switch (eventName, json) {
        case (nil, nil): throw ValidationError("give an EVENT_NAME, --json '{...}', or - for standard input")
        case (.some, .some): throw ValidationError("give either EVENT_NAME or --json, not both")
        case (.some("-"), nil):
            if user != nil || !prop.isEmpty || !context.isEmpty || timestamp != nil {
                throw ValidationError("--user, --prop, --context and --timestamp go with EVENT_NAME, not with -")
            }
        case (.some, nil):
            if user == nil { throw ValidationError("--user is required with EVENT_NAME") }
        case (nil, .some):
            if user != nil || !prop.isEmpty || !context.isEmpty || timestamp != nil {
                throw ValidationError("--user, --prop, --context and --timestamp go with EVENT_NAME, not with --json")
            }
        }
        for pair in prop + context where !pair.contains("=") {
            throw ValidationError("expected KEY=VALUE, got \(pair)")
        }
    }

    func run() throws {
        let path = location.paths.socket
        let connection: UnixLineConnection
        do {
            connection = try UnixLineConnection(path: path)
        } catch {
            printError("cannot reach the daemon at \(path): \(Self.advice(for: error))")
            throw ExitCode(2)
        }
        // The writer counts the lines it sent; every one must be answered, or the daemon went
        // away (killed, restarted) before it took them all.
        let written = WrittenLines()
        let writer: Thread
        if eventName == "-" {
            // Stream standard input while reading answers, so any amount of input works.
            writer = Thread {
                while let line = readLine(strippingNewline: false) {
                    // A blank line gets no answer from the daemon: not sent.
                    guard !LineFrameDecoder.isBlank(line.utf8) else { continue }
                    do { try connection.write(line) } catch { break }  // the daemon closed: stop
                    written.add()
                }
                connection.finishWriting()
                written.finish()
            }
        } else {
            let line = json ?? Self.event(name: eventName ?? "", user: user ?? "", props: prop, context: context, timestamp: timestamp)
            writer = Thread {
                if (try? connection.write(line + "\n")) != nil { written.add() }
                connection.finishWriting()
                written.finish()
            }
        }
        writer.start()
        var refused = 0
        var answered = 0
        while let answer = try? connection.nextLine() {
            print(answer)
            answered += 1
            if !answer.hasPrefix(#"{"ok":true"#) { refused += 1 }
        }
        fflush(nil)  // all streams: `stdout` itself is not concurrency-safe to name
        let sent = written.waitUntilFinished()
        if answered < sent {
            printError("the daemon closed the connection after answering \(answered) of \(sent) lines; the rest were not taken")
            throw ExitCode(1)
        }
        if refused > 0 { throw ExitCode(1) }
    }

    /// Lines the writer thread sent, read by the main thread once the writer is done.
    final class WrittenLines: @unchecked Sendable {
        // @unchecked: `count` is written by the writer thread only before `done` is signalled,
        // and read only after waiting on it.
        private var count = 0
        private let done = DispatchSemaphore(value: 0)

        func add() { count += 1 }
        func finish() { done.signal() }

        func waitUntilFinished() -> Int {
            done.wait()
            return count
        }
    }

    /// Why connecting failed, and what to do about it.
    static func advice(for error: any Error) -> String {
        switch (error as? POSIXError)?.code {
        case .EACCES?, .EPERM?:
            return "permission denied; the socket admits its group's members: ask the host's operator to add this "
                + "user to it (the system service's group is trackq: usermod -aG trackq USER, then log in again)"
        case .ENOENT?, .ECONNREFUSED?:
            return "no daemon listens there (is `trackq daemon` running? --socket or TRACKQ_SOCKET name another)"
        case let code?:
            return "\(String(cString: strerror(code.rawValue))) (--socket or TRACKQ_SOCKET name another socket)"
        case nil:
            return "\(error)"
        }
    }

    /// The event object of the first form.
    static func event(name: String, user: String, props: [String], context: [String], timestamp: String?) -> String {
        func object(_ pairs: [String]) -> String {
            "{"
                + pairs.map { pair in
                    // KEY=VALUE, split at the first "=" (validate() made sure there is one).
                    let equals = pair.firstIndex(of: "=") ?? pair.endIndex
                    let value = equals < pair.endIndex ? pair[pair.index(after: equals)...] : ""
                    return JSONText.quoted(String(pair[..<equals])) + ":" + JSONText.quoted(String(value))
                }.joined(separator: ",") + "}"
        }
        var members = [#""event_name":"# + JSONText.quoted(name), #""user_id":"# + JSONText.quoted(user)]
        if let timestamp { members.append(#""timestamp":"# + JSONText.quoted(timestamp)) }
        if !props.isEmpty { members.append(#""properties":"# + object(props)) }
        if !context.isEmpty { members.append(#""context":"# + object(context)) }
        return "{" + members.joined(separator: ",") + "}"
    }
}
