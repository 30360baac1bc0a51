import Testing

@testable import TrackQueue

@Suite("Runtime paths")
struct RuntimePathsTests {
    @Test("systemd: STATE_DIRECTORY and RUNTIME_DIRECTORY win for any user", arguments: [UInt32(0), 1000])
    func systemd(userID: UInt32) {
        let paths = RuntimePaths.resolve(
            environment: [
                "STATE_DIRECTORY": "/var/lib/trackq", "RUNTIME_DIRECTORY": "/run/trackq-svc",
                "XDG_STATE_HOME": "/x/state", "XDG_RUNTIME_DIR": "/x/run", "HOME": "/home/u",
            ], userID: userID)
        #expect(paths == .init(database: "/var/lib/trackq/queue.db", socket: "/run/trackq-svc/trackq.sock"))
    }

    @Test("systemd: colon-separated lists use the first path")
    func colonLists() {
        let paths = RuntimePaths.resolve(
            environment: ["STATE_DIRECTORY": "/var/lib/a:/var/lib/b", "RUNTIME_DIRECTORY": "/run/a/:/run/b"], userID: 1000)
        #expect(paths == .init(database: "/var/lib/a/queue.db", socket: "/run/a/trackq.sock"))
        let leadingColon = RuntimePaths.resolve(environment: ["STATE_DIRECTORY": ":/var/lib/c"], userID: 0)
        #expect(leadingColon.database == "/var/lib/c/queue.db")
    }

    @Test("root without systemd")
    func root() {
        let paths = RuntimePaths.resolve(
            environment: ["HOME": "/root", "XDG_STATE_HOME": "/x/state", "XDG_RUNTIME_DIR": "/run/user/0"], userID: 0)
        #expect(paths == .init(database: "/var/lib/trackq/queue.db", socket: "/run/trackq/trackq.sock"))
        #expect(RuntimePaths.resolve(environment: [:], userID: 0) == paths)
    }

    @Test("other users with XDG variables")
    func xdg() {
        let paths = RuntimePaths.resolve(
            environment: ["HOME": "/home/u", "XDG_STATE_HOME": "/home/u/.state", "XDG_RUNTIME_DIR": "/run/user/1000"],
            userID: 1000)
        #expect(paths == .init(database: "/home/u/.state/trackq/queue.db", socket: "/run/user/1000/trackq/trackq.sock"))
    }

    @Test("other users without XDG variables")
    func noXDG() {
        let paths = RuntimePaths.resolve(environment: ["HOME": "/home/u/"], userID: 1234)
        #expect(paths == .init(database: "/home/u/.local/state/trackq/queue.db", socket: "/tmp/trackq-1234/trackq.sock"))
        #expect(RuntimePaths.resolve(environment: [:], userID: 1234).database == "/tmp/trackq-1234/queue.db")
    }

    @Test("empty values count as unset; relative XDG values are ignored")
    func emptyValues() {
        let paths = RuntimePaths.resolve(
            environment: [
                "STATE_DIRECTORY": "", "RUNTIME_DIRECTORY": "", "XDG_STATE_HOME": "", "XDG_RUNTIME_DIR": "",
                "HOME": "/home/u", "TRACKQ_DATABASE": "", "TRACKQ_SOCKET": "",
            ], userID: 1000)
        #expect(paths == .init(database: "/home/u/.local/state/trackq/queue.db", socket: "/tmp/trackq-1000/trackq.sock"))
        let relative = RuntimePaths.resolve(
            environment: ["XDG_STATE_HOME": "state", "XDG_RUNTIME_DIR": "run", "HOME": "/h"], userID: 1000)
        #expect(relative == .init(database: "/h/.local/state/trackq/queue.db", socket: "/tmp/trackq-1000/trackq.sock"))
    }

    @Test("overrides: flag > environment > table")
    func overrides() {
        let environment = [
            "TRACKQ_DATABASE": "/e/q.db", "TRACKQ_SOCKET": "/e/t.sock", "STATE_DIRECTORY": "/s", "RUNTIME_DIRECTORY": "/r",
        ]
        #expect(
            RuntimePaths.resolve(flags: ["database": "/f/q.db", "socket": "/f/t.sock"], environment: environment, userID: 0)
                == .init(database: "/f/q.db", socket: "/f/t.sock"))
        #expect(RuntimePaths.resolve(environment: environment, userID: 0) == .init(database: "/e/q.db", socket: "/e/t.sock"))
        #expect(
            RuntimePaths.resolve(flags: ["socket": "rel.sock"], environment: ["TRACKQ_DATABASE": "/e/q.db"], userID: 0)
                == .init(database: "/e/q.db", socket: "rel.sock"))
        #expect(
            RuntimePaths.resolve(flags: ["database": "", "socket": ""], environment: [:], userID: 0)
                == .init(database: "/var/lib/trackq/queue.db", socket: "/run/trackq/trackq.sock"))
    }

    @Test("joining directories with trailing slashes")
    func join() {
        #expect(RuntimePaths.join("/a/", "b") == "/a/b")
        #expect(RuntimePaths.join("/a//", "b") == "/a/b")
        #expect(RuntimePaths.join("/", "b") == "/b")
    }

    @Test("the CLI of a user with no daemon of their own reaches the system service's socket and database")
    func clientFallsBackToTheSystemService() {
        let user = ["HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1000"]
        let own = RuntimePaths(database: "/home/u/.local/state/trackq/queue.db", socket: "/run/user/1000/trackq/trackq.sock")
        // The service is installed, the user runs no daemon: the system's paths.
        let installed: Set = ["/run/trackq/trackq.sock", "/var/lib/trackq"]
        #expect(RuntimePaths.resolveForClient(environment: user, userID: 1000, exists: installed.contains) == .system)
        // The user's own daemon wins where its files exist.
        let both = installed.union([own.socket, own.database])
        #expect(RuntimePaths.resolveForClient(environment: user, userID: 1000, exists: both.contains) == own)
        // Nothing installed: the user's own paths, so errors name them.
        #expect(RuntimePaths.resolveForClient(environment: user, userID: 1000, exists: { _ in false }) == own)
        // A flag or a variable is never second-guessed, nor is systemd's environment.
        #expect(
            RuntimePaths.resolveForClient(
                flags: ["socket": "/f.sock", "database": "/f.db"], environment: user, userID: 1000, exists: installed.contains)
                == .init(database: "/f.db", socket: "/f.sock"))
        var named = user
        named["TRACKQ_SOCKET"] = "/e.sock"
        named["STATE_DIRECTORY"] = "/s"
        #expect(
            RuntimePaths.resolveForClient(environment: named, userID: 1000, exists: installed.contains)
                == .init(database: "/s/queue.db", socket: "/e.sock"))
    }

    @Test("the daemon never falls back to the system service's socket")
    func daemonKeepsItsOwnPaths() {
        // resolve (the daemon's) has no file check: a user's daemon binds its own socket even
        // when the service's exists.
        let paths = RuntimePaths.resolve(environment: ["XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/h"], userID: 1000)
        #expect(paths.socket == "/run/user/1000/trackq/trackq.sock")
    }
}
