import ArgumentParser
import Foundation
import TrackQueue

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify a queue file, read-only: is it sound, and if not, where is it damaged.",
        discussion: """
            Checks the header and the file's length, SQLite's integrity_check, that every segment \
            of the queue parses, and that the counters agree with the segments. Never writes to \
            the file; safe while the daemon runs (it reads a snapshot). Works on a damaged file \
            the daemon moved aside too (--database PATH.damaged-...).

            Exit status: 0 sound; 1 damaged (each problem says where); 2 cannot run (no file, no \
            permission).
            """)

    @OptionGroup var location: LocationOptions

    @Flag(help: "One JSON object: {database, sound, problems, segments, pending, dead_letters}.")
    var json = false

    func run() throws {
        let check: StorageCheck
        do {
            check = try StorageCheck.run(database: location.paths.database)
        } catch {
            printError("cannot check: \(error)")
            throw ExitCode(2)
        }
        if json {
            struct Output: Encodable {
                var database: String
                var sound: Bool
                var problems: [String]
                var segments: Int64
                var pending: Int64
                var deadLetters: Int64

                enum CodingKeys: String, CodingKey {
                    case database, sound, problems, segments, pending
                    case deadLetters = "dead_letters"
                }
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let output = Output(
                database: check.path, sound: check.isSound, problems: check.problems, segments: check.segments,
                pending: check.pendingEvents, deadLetters: check.deadLetters)
            print(String(decoding: try encoder.encode(output), as: UTF8.self))
        } else {
            print(check.human())
        }
        if !check.isSound { throw ExitCode(1) }
    }
}
