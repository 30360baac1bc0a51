import ArgumentParser
import Foundation
import TrackQueue

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether events are flowing, how far behind, and why not.",
        discussion: """
            Reads the database read-only: works while the daemon runs, and when it is stopped \
            or crashed. Never blocks the daemon.

            Exit status (monitoring-plugin convention): 0 healthy; 1 warning (backing off, or \
            dead letters present); 2 critical (alert active, or daemon not running); 3 unknown \
            (database unreadable).
            """)

    @OptionGroup var location: LocationOptions

    @Flag(help: "One JSON object (the keys the README documents), for scripts.")
    var json = false

    @Flag(help: "Prometheus text format, for node_exporter's textfile collector.")
    var prometheus = false

    @Flag(help: "Refresh every second until interrupted.")
    var watch = false

    func validate() throws {
        if json && prometheus { throw ValidationError("--json and --prometheus exclude each other") }
    }

    func run() throws {
        let path = location.paths.database
        let endpoint = ProcessInfo.processInfo.environment["TRACKQ_ENDPOINT"]
        repeat {
            let report: StatusReport
            do {
                report = try StatusReader.read(database: path, endpoint: endpoint)
            } catch {
                if json {
                    struct Failure: Encodable {
                        var version = TrackQueue.version
                        var error: String
                    }
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    // A struct of two strings always encodes.
                    print(String(decoding: try! encoder.encode(Failure(error: String(describing: error))), as: UTF8.self))
                } else {
                    printError("status unknown: \(error)")
                }
                if !watch { throw ExitCode(3) }
                Thread.sleep(forTimeInterval: 1)
                continue
            }
            let now = SystemClock.wallMillis()
            let text = json ? report.json() : prometheus ? report.prometheus(nowMillis: now) : report.human(nowMillis: now)
            if watch { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
            fflush(nil)  // all streams: `stdout` itself is not concurrency-safe to name
            if !watch { throw ExitCode(report.exitCode) }
            Thread.sleep(forTimeInterval: 1)
        } while true
    }
}
