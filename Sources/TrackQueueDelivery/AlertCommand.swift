import Foundation
import Logging

/// Runs `--alert-command` via `/bin/sh -c` once per raise and once per clear, with the
/// alert in `TRACKQ_ALERT_*` variables and never the token.
package struct AlertCommand: Sendable {
    package let command: String
    package let environment: [String: String]
    package let logger: Logger

    package init(command: String, environment: [String: String], logger: Logger) {
        self.command = command
        // The command inherits the daemon's environment without any secret.
        self.environment = environment.filter { $0.key != "TRACKQ_TOKEN" }
        self.logger = logger
    }

    /// Starts the command and returns; it is reaped when it exits.
    package func run(raised: Bool, alert: DeliveryAlert) {
        var env = environment
        env["TRACKQ_ALERT_STATE"] = raised ? "raised" : "cleared"
        env["TRACKQ_ALERT_KIND"] = alert.kind.rawValue
        env["TRACKQ_ALERT_STATUS"] = String(alert.status)
        env["TRACKQ_ALERT_MESSAGE"] = alert.message
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.environment = env
        process.standardInput = FileHandle.nullDevice
        let logger = self.logger
        process.terminationHandler = { finished in
            if finished.terminationStatus != 0 {
                logger.warning("alert command failed", metadata: ["exit.status": "\(finished.terminationStatus)"])
            }
        }
        do {
            try process.run()
        } catch {
            logger.error("cannot run the alert command", metadata: ["error": "\(error)"])
        }
    }
}
