/// Where the daemon's files live: the queue database and the control socket.
///
/// Resolution, first match wins:
/// 1. the flag (`--database`, `--socket`);
/// 2. the environment variable (`TRACKQ_DATABASE`, `TRACKQ_SOCKET`);
/// 3. (daemon only) the config file keys `database`, `socket`;
/// 4. the table below.
///
/// | what     | systemd (env var set)          | root, no systemd         | other users |
/// |----------|--------------------------------|--------------------------|-------------|
/// | database | `$STATE_DIRECTORY/queue.db`    | `/var/lib/trackq/queue.db` | `$XDG_STATE_HOME/trackq/queue.db`, else `$HOME/.local/state/trackq/queue.db` (no HOME: `/tmp/trackq-$UID/queue.db`) |
/// | socket   | `$RUNTIME_DIRECTORY/trackq.sock` | `/run/trackq/trackq.sock` | `$XDG_RUNTIME_DIR/trackq/trackq.sock`, else `/tmp/trackq-$UID/trackq.sock` |
///
/// The CLI (`trackq send`, `status`, `dead`) resolves with ``resolveForClient(flags:environment:userID:exists:)``:
/// a user who runs no daemon of their own (their socket or database does not exist) reaches
/// the system service's, `/run/trackq/trackq.sock` and `/var/lib/trackq/queue.db`, when
/// those exist. The daemon itself never falls back: it would take over the service's socket.
///
/// `STATE_DIRECTORY` and `RUNTIME_DIRECTORY` may list several paths separated
/// by colons; the first is used. Empty environment values count as unset, and
/// relative `XDG_*` values are ignored, as the XDG base directory spec asks.
public struct RuntimePaths: Sendable, Equatable {
    /// The queue database file.
    public var database: String
    /// The control socket.
    public var socket: String

    /// Creates paths.
    public init(database: String, socket: String) {
        self.database = database
        self.socket = socket
    }

    /// Resolves the table above, then applies the overrides: `flags` (keys
    /// `"database"`, `"socket"`) and the environment variables
    /// `TRACKQ_DATABASE` / `TRACKQ_SOCKET`.
    public static func resolve(
        flags: [String: String] = [:],
        environment: [String: String],
        userID: UInt32
    ) -> RuntimePaths {
        resolve(flags: flags, environment: environment, userID: userID, file: nil)
    }

    /// The system service's socket and database (a package's `trackq.socket` and
    /// `StateDirectory=trackq`).
    public static let system = RuntimePaths(database: "/var/lib/trackq/queue.db", socket: "/run/trackq/trackq.sock")

    /// The paths the CLI uses: ``resolve(flags:environment:userID:)``, except that a path
    /// coming from the table's last column (a user's own, not named by a flag or variable)
    /// that does not exist gives way to the system service's when that exists (for the
    /// database: when its directory does, so a caller who cannot read it is told so).
    ///
    /// - Parameter exists: whether a path exists (injected for tests).
    public static func resolveForClient(
        flags: [String: String] = [:],
        environment: [String: String],
        userID: UInt32,
        exists: (String) -> Bool
    ) -> RuntimePaths {
        var paths = resolve(flags: flags, environment: environment, userID: userID, file: nil)
        let env = Environment(environment)
        guard userID != 0 else { return paths }
        if nonEmpty(flags["socket"]) == nil, env["TRACKQ_SOCKET"] == nil, env.firstOfList("RUNTIME_DIRECTORY") == nil,
            !exists(paths.socket), exists(system.socket)
        {
            paths.socket = system.socket
        }
        if nonEmpty(flags["database"]) == nil, env["TRACKQ_DATABASE"] == nil, env.firstOfList("STATE_DIRECTORY") == nil,
            !exists(paths.database), exists("/var/lib/trackq")
        {
            paths.database = system.database
        }
        return paths
    }

    /// The same, with the config file's `database` / `socket` values between
    /// the environment and the table.
    package static func resolve(
        flags: [String: String],
        environment: [String: String],
        userID: UInt32,
        file: (database: String?, socket: String?)?
    ) -> RuntimePaths {
        let env = Environment(environment)
        let database =
            nonEmpty(flags["database"]) ?? env["TRACKQ_DATABASE"] ?? file?.database
            ?? defaultDatabase(env, userID: userID)
        let socket =
            nonEmpty(flags["socket"]) ?? env["TRACKQ_SOCKET"] ?? file?.socket
            ?? defaultSocket(env, userID: userID)
        return RuntimePaths(database: database, socket: socket)
    }

    /// The database path from the table.
    package static func defaultDatabase(_ env: Environment, userID: UInt32) -> String {
        if let state = env.firstOfList("STATE_DIRECTORY") {
            return join(state, "queue.db")
        }
        if userID == 0 {
            return "/var/lib/trackq/queue.db"
        }
        if let xdg = env.absolute("XDG_STATE_HOME") {
            return join(xdg, "trackq/queue.db")
        }
        if let home = env["HOME"] {
            return join(home, ".local/state/trackq/queue.db")
        }
        // Without HOME, the same per-user directory as the socket's fallback.
        return "/tmp/trackq-\(userID)/queue.db"
    }

    /// The socket path from the table.
    package static func defaultSocket(_ env: Environment, userID: UInt32) -> String {
        if let runtime = env.firstOfList("RUNTIME_DIRECTORY") {
            return join(runtime, "trackq.sock")
        }
        if userID == 0 {
            return "/run/trackq/trackq.sock"
        }
        if let xdg = env.absolute("XDG_RUNTIME_DIR") {
            return join(xdg, "trackq/trackq.sock")
        }
        return "/tmp/trackq-\(userID)/trackq.sock"
    }

    /// `directory/name` without doubled slashes.
    package static func join(_ directory: String, _ name: String) -> String {
        var directory = Substring(directory)
        while directory.count > 1, directory.hasSuffix("/") { directory = directory.dropLast() }
        return directory == "/" ? "/" + name : "\(directory)/\(name)"
    }

    /// `value` unless it is nil or empty.
    package static func nonEmpty(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }

    /// Environment lookups where an empty value counts as unset.
    package struct Environment {
        package let values: [String: String]

        package init(_ values: [String: String]) { self.values = values }

        package subscript(name: String) -> String? { RuntimePaths.nonEmpty(values[name]) }

        /// The first non-empty entry of a colon-separated list.
        package func firstOfList(_ name: String) -> String? {
            self[name]?.split(separator: ":").first.map(String.init)
        }

        /// The value if it is an absolute path.
        package func absolute(_ name: String) -> String? {
            guard let value = self[name], value.hasPrefix("/") else { return nil }
            return value
        }
    }
}
