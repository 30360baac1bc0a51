import ArgumentParser
import Foundation
import TrackQueue

/// `--database` and `--socket`, resolved the same way in every subcommand, so `status` and
/// `send` find the daemon's files with no flags.
struct LocationOptions: ParsableArguments {
    @Option(help: "Database path (env TRACKQ_DATABASE; default: see README, 'Where things live').")
    var database: String?

    @Option(help: "Socket path (env TRACKQ_SOCKET).")
    var socket: String?

    var paths: RuntimePaths {
        var flags: [String: String] = [:]
        flags["database"] = database
        flags["socket"] = socket
        return RuntimePaths.resolve(flags: flags, environment: ProcessInfo.processInfo.environment, userID: getuid())
    }
}

/// Prints to stderr: stdout is for results, which scripts parse.
func printError(_ message: String) {
    FileHandle.standardError.write(Data("trackq: \(message)\n".utf8))
}
