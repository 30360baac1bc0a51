import Foundation

/// Debian's `tinyproxy`, run by a test on 127.0.0.1 in the foreground with its own config
/// and log (`.ci/run` installs it).
final class TinyProxy {
    let port: Int
    let log: String
    private let process: TrackqProcess

    static var isInstalled: Bool { which("tinyproxy") != nil }

    /// Starts it with `lines` added to a config that admits 127.0.0.1 and logs every
    /// request, and waits until it listens.
    init(in directory: borrowing TestDirectory, name: String = "tinyproxy", _ lines: [String] = []) async throws {
        port = try unusedLocalPort()
        log = directory.file("\(name).log")
        let config = directory.file("\(name).conf")
        let text =
            [
                "Port \(port)", "Listen 127.0.0.1", "Timeout 30", "LogLevel Connect", "LogFile \"\(log)\"",
                "PidFile \"\(directory.file("\(name).pid"))\"", "MaxClients 20", "Allow 127.0.0.1", "DisableViaHeader Yes",
            ] + lines
        try text.joined(separator: "\n").appending("\n").write(toFile: config, atomically: true, encoding: .utf8)
        process = try TrackqProcess.launch(
            executable: which("tinyproxy")!, ["-d", "-c", config], stderrFile: directory.file("\(name).stderr"))
        let port = self.port
        let process = self.process
        try await waitUntil("tinyproxy to listen on \(port)") {
            if !process.process.isRunning { throw EndOfStream(partial: process.stderr) }
            return canConnect(port: port)
        }
    }

    /// `http://127.0.0.1:PORT`, with `credentials` (`user:password`) if given.
    func url(credentials: String? = nil) -> String {
        "http://\(credentials.map { $0 + "@" } ?? "")127.0.0.1:\(port)"
    }

    /// The request lines it logged (`CONNECT 127.0.0.1:443 HTTP/1.1`, `POST http://… HTTP/1.1`).
    var requests: [String] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            line.range(of: "): ").map { String(line[$0.upperBound...]) }.flatMap { $0.hasSuffix("HTTP/1.1") ? $0 : nil }
        }
    }

    /// Kills it: on SIGTERM, tinyproxy waits for its open tunnels.
    func stop() async throws {
        process.signal(SIGKILL)
        _ = try await process.waitForExit()
    }
}
