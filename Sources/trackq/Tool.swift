import ArgumentParser
import TrackQueue

@main
struct Tool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trackq",
        abstract: "A durable, offline-first event queue for the Track API.",
        discussion: """
            Apps write JSON events, one per line, to a Unix socket; `trackq daemon` commits each \
            to SQLite before acknowledging it, and delivers the queue to the Track API.
            """,
        version: TrackQueue.version,
        subcommands: [
            DaemonCommand.self, StatusCommand.self, TopCommand.self, SendCommand.self, DeadCommand.self, CheckCommand.self,
            VersionCommand.self,
        ]
    )
}
