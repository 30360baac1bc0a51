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
}
