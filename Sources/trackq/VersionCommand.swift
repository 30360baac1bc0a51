import ArgumentParser
import TrackQueue

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print trackq's version.")

    func run() {
        print("trackq \(TrackQueue.version)")
    }
}
