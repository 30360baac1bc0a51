import ArgumentParser
import Foundation
import TrackQueue

/// `--database` and `--socket`, resolved the same way in every subcommand, so `status` and
/// `send` find the daemon's files with no flags: the user's own daemon's, else the system
/// service's.
struct LocationOptions: ParsableArguments {
    @Option(help: "Database path (env TRACKQ_DATABASE; default: see README, 'Where things live').")
    var database: String?

    @Option(help: "Socket path (env TRACKQ_SOCKET).")
    var socket: String?

    var paths: RuntimePaths {
        var flags: [String: String] = [:]
        flags["database"] = database
        flags["socket"] = socket
        return RuntimePaths.resolveForClient(
            flags: flags, environment: ProcessInfo.processInfo.environment, userID: getuid(),
            exists: { access($0, F_OK) == 0 })
    }
}

/// Prints to stderr: stdout is for results, which scripts parse.
func printError(_ message: String) {
    FileHandle.standardError.write(Data("trackq: \(message)\n".utf8))
}
