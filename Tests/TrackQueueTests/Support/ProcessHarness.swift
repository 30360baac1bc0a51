import Foundation
import Testing

/// The `trackq` executable SwiftPM built beside this test bundle (or `$TRACKQ_BINARY`).
enum TrackqBinary {
    static let path: String = {
        if let explicit = ProcessInfo.processInfo.environment["TRACKQ_BINARY"] { return explicit }
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = me.deletingLastPathComponent()
        // swift-testing on Linux runs `<build>/debug/trackqPackageTests.xctest`.
        for _ in 0..<3 {
            let candidate = directory.appendingPathComponent("trackq").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return me.deletingLastPathComponent().appendingPathComponent("trackq").path
    }()
}

/// A real `trackq` process, for crash and lifecycle tests.
final class TrackqProcess {
    let process = Process()
    let stderrFile: String

    /// Starts `trackq ARGS`; stderr goes to a file for the assertions.
    convenience init(_ arguments: [String], environment: [String: String] = [:], stderrFile: String) throws {
        try self.init(executable: TrackqBinary.path, arguments, environment: environment, stderrFile: stderrFile)
    }

    /// Starts another program that runs trackq (systemd-socket-activate, say).
    static func launch(executable: String, _ arguments: [String], environment: [String: String] = [:], stderrFile: String) throws
        -> TrackqProcess
    {
        try TrackqProcess(executable: executable, arguments, environment: environment, stderrFile: stderrFile)
    }

    private init(executable: String, _ arguments: [String], environment: [String: String], stderrFile: String) throws {
        self.stderrFile = stderrFile
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        // A proxy the machine's environment names (for apt, say) is not the test's: tests that
        // want one set it.
        let proxies: Set<String> = ["http_proxy", "https_proxy", "no_proxy", "all_proxy"]
        for key in env.keys
        where key.hasPrefix("TRACKQ_") || key == "NOTIFY_SOCKET" || key.hasPrefix("LISTEN_") || proxies.contains(key.lowercased()) {
            env.removeValue(forKey: key)
        }
        env.merge(environment) { $1 }
        process.environment = env
        _ = FileManager.default.createFile(atPath: stderrFile, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrFile))
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// Starts `trackq daemon` on a test directory's socket and database with `arguments`
    /// added, and waits until its socket accepts connections (or throws with its stderr if
    /// it exits first).
    static func startDaemon(
        _ directory: borrowing TestDirectory, _ arguments: [String], environment: [String: String],
        logName: String = "daemon"
    ) async throws -> TrackqProcess {
        let process = try TrackqProcess(
            ["daemon", "--socket", directory.socket, "--database", directory.database] + arguments,
            environment: environment, stderrFile: directory.file("\(logName).log"))
        let socket = directory.socket
        try await waitUntil("the daemon's socket") {
            if !process.process.isRunning { throw EndOfStream(partial: process.stderr) }
            return UnixClient.canConnect(socket)
        }
        return process
    }

    var pid: Int32 { process.processIdentifier }
    var stderr: String { (try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? "" }

    func signal(_ number: Int32) { kill(pid, number) }

    /// Waits for the exit and returns its status, or throws after `timeout`.
    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        try await waitUntil(timeout: timeout, "trackq (pid \(pid)) to exit") { !process.isRunning }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Runs a command to completion and returns (status, stdout, stderr).
func runCommand(_ executable: String, _ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) throws -> (
    status: Int32, stdout: String, stderr: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe()
    let err = Pipe()
    let input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}

/// Finds an executable on PATH.
func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// `runCommand` blocks until the process exits: run it on a thread of its own, so the waiting
/// holds no concurrency-pool thread (an in-process daemon needs those).
func runOffThePool(
    _ executable: String, _ arguments: [String], environment: [String: String]
) async throws -> (status: Int32, stdout: String, stderr: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try runCommand(executable, arguments, environment: environment) })
        }
    }
}

/// Builds `target` (a package, `.`, or one file) in `directory` with Go, offline and local
/// only: no proxy, no toolchain download, caches in the test directory. Returns the binary.
func buildGoProgram(
    _ target: String, from directory: String, named name: String, in dir: borrowing TestDirectory
) async throws -> String {
    let go = try #require(which("go"))
    let binary = dir.file(name)
    let environment = [
        "GOPROXY": "off", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "GOWORK": "off",
        "GOCACHE": dir.file("gocache"), "GOPATH": dir.file("gopath"), "CGO_ENABLED": "0",
    ]
    let build = try await runOffThePool(
        "/bin/sh", ["-c", #"cd "$1" && exec "$2" build -o "$3" "$4""#, "sh", directory, go, binary, target],
        environment: environment)
    try #require(build.status == 0, "go build failed: \(build.stderr)")
    return binary
}
