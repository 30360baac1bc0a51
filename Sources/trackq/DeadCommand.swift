import ArgumentParser
import Foundation
import TrackQueue

struct DeadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead",
        abstract: "List, requeue or purge the dead letters (events the API refused, or that expired).",
        discussion: """
            Safe while the daemon runs. Typical use: `trackq dead list` to see why events were \
            refused, fix the app that sent them (or the API side), then `trackq dead requeue \
            --all` to try them again, or `trackq dead purge ID...` to drop them.
            """,
        subcommands: [List.self, Requeue.self, Purge.self])

    /// `--all` or a list of ids, exactly one of them.
    struct Selection: ParsableArguments {
        @Flag(help: "Every dead letter.") var all = false
        @Argument(help: "Dead-letter ids, as `trackq dead list` shows them.") var ids: [Int64] = []

        func validate() throws {
            if all == !ids.isEmpty { throw ValidationError("give either --all or one or more ids") }
        }

        var value: DeadLetterStore.Selection { all ? .all : .ids(ids) }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show dead letters, oldest first.")
        @OptionGroup var location: LocationOptions
        @Flag(help: "A JSON array of {id, event_id, event_uuid, failed_at, reason, status, response, event}.") var json = false
        @Option(help: "Show at most this many.") var limit: Int?

        func run() throws {
            let letters = try withStore(location, readOnly: true) { try $0.list(limit: limit) }
            if json {
                print(try DeadCommand.json(letters))
                return
            }
            if letters.isEmpty {
                print("no dead letters")
                return
            }
            for letter in letters {
                let status = letter.status.map(String.init) ?? "-"
                // Stored text came from apps and the API: one printable line each, no escapes
                // reach the terminal.
                let event = Printable.oneLine(letter.event, limit: 2_000_000)
                print(
                    "\(letter.id)\t\(RFC3339.format(millis: letter.failedAtMillis))\t\(Printable.oneLine(letter.reason, limit: 40))\t\(status)\t\(event)"
                )
                if let uuid = letter.eventUUID { print("\tevent_id: \(uuid)") }
                if let response = letter.response, !response.isEmpty {
                    print("\tresponse: \(Printable.oneLine(response, limit: 300))")
                }
            }
        }
    }

    struct Requeue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead letters back at the end of the queue.",
            discussion: "Their JSON, timestamp included, is unchanged; their age for --max-event-age restarts now.")
        @OptionGroup var location: LocationOptions
        @OptionGroup var selection: Selection

        func run() throws {
            let count = try withStore(location, readOnly: false) {
                try $0.requeue(
                    selection.value, nowMillis: SystemClock.wallMillis(),
                    boottimeMillis: SystemClock.boottimeMillis(), bootID: SystemClock.bootID)
            }
            print("requeued \(count) dead letter\(count == 1 ? "" : "s")")
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters for good.")
        @OptionGroup var location: LocationOptions
        @OptionGroup var selection: Selection

        func run() throws {
            let count = try withStore(location, readOnly: false) { try $0.purge(selection.value) }
            print("purged \(count) dead letter\(count == 1 ? "" : "s")")
        }
    }

    /// `[{"id":…,"event_id":…,"event_uuid":…,"failed_at":…,"reason":…,"status":…,"response":…,"event":{…}}]`,
    /// the stored event as the JSON object it is; `event_id` is its queue id (a number), and
    /// `event_uuid` the id it is sent with (`context.trackq.event_id`), or null.
    static func json(_ letters: [DeadLetter]) throws -> String {
        let objects: [[String: Any]] = letters.map { letter in
            [
                "id": letter.id, "event_id": letter.eventID, "event_uuid": letter.eventUUID.map { "\($0)" } ?? NSNull(),
                "failed_at": RFC3339.format(millis: letter.failedAtMillis), "reason": letter.reason,
                "status": letter.status ?? NSNull(), "response": letter.response ?? NSNull(),
                "event": (try? JSONSerialization.jsonObject(with: Data(letter.event.utf8), options: .fragmentsAllowed))
                    ?? letter.event,
            ]
        }
        let data = try JSONSerialization.data(withJSONObject: objects, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}

/// Opens the dead letters, turning a failure into a message and exit status 1.
private func withStore<T>(_ location: LocationOptions, readOnly: Bool, _ body: (DeadLetterStore) throws -> T) throws -> T {
    do {
        return try body(DeadLetterStore(path: location.paths.database, readOnly: readOnly))
    } catch {
        printError("\(error)")
        throw ExitCode(1)
    }
}
