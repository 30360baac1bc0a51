import Testing

@testable import TrackQueue

@Suite("Config file format")
struct ConfigFileTests {
    func parse(_ text: String) throws(ConfigurationError) -> [String: String] {
        try ConfigFile.parse(text, path: "/etc/trackq.conf").entries.mapValues(\.value)
    }

    func error(_ text: String) -> String? {
        do {
            _ = try ConfigFile.parse(text, path: "/etc/trackq.conf")
            return nil
        } catch {
            return error.message
        }
    }

    @Test("comments, blank lines, whitespace and line numbers")
    func basics() throws {
        let file = try ConfigFile.parse(
            """
            # a comment

               # an indented comment
            batch-max-events=500
            \tbatch-linger   =   250ms\t
            alert-command = notify-send "trackq" # not a comment
            socket-group =
            """, path: "x.conf")
        #expect(
            file.entries == [
                "batch-max-events": .init(value: "500", line: 4),
                "batch-linger": .init(value: "250ms", line: 5),
                "alert-command": .init(value: "notify-send \"trackq\" # not a comment", line: 6),
                "socket-group": .init(value: "", line: 7),
            ])
    }

    @Test("CRLF line endings and a byte order mark")
    func crlf() throws {
        let file = try ConfigFile.parse("\u{FEFF}# c\r\nlog-level = debug\r\n\r\ndurability = normal\r\n", path: "x")
        #expect(file.entries == ["log-level": .init(value: "debug", line: 2), "durability": .init(value: "normal", line: 4)])
    }

    @Test("an empty file")
    func empty() throws {
        #expect(try parse("").isEmpty)
        #expect(try parse("\n\n# only comments\n").isEmpty)
    }

    @Test(
        "quoted values",
        arguments: [
            (#"alert-command = "a b""#, "a b"),
            (#"alert-command = "  padded  ""#, "  padded  "),
            (#"alert-command = "say \"hi\"""#, #"say "hi""#),
            (#"alert-command = "back\\slash""#, #"back\slash"#),
            (#"alert-command = "a = b # c""#, "a = b # c"),
            (#"alert-command = """#, ""),
            (#"alert-command = x"y""#, #"x"y""#),
        ])
    func quoted(_ line: String, _ expected: String) throws {
        #expect(try parse(line) == ["alert-command": expected])
    }

    @Test(
        "bad quoting",
        arguments: [
            (#"alert-command = "open"#, "/etc/trackq.conf:1: unterminated quoted string in the value of \"alert-command\""),
            (#"alert-command = "a\"#, "/etc/trackq.conf:1: unterminated quoted string in the value of \"alert-command\""),
            (
                #"alert-command = "a\nb""#,
                #"/etc/trackq.conf:1: unsupported escape \n (only \" and \\ are allowed) in the value of "alert-command""#
            ),
            (#"alert-command = "a" b"#, "/etc/trackq.conf:1: unexpected text after the closing quote in the value of \"alert-command\""),
        ])
    func badQuoting(_ line: String, _ message: String) {
        #expect(error(line) == message)
    }

    @Test("errors name the file and line")
    func errors() {
        #expect(error("\n\nbatch-size = 5") == "/etc/trackq.conf:3: unknown key \"batch-size\"")
        #expect(error("# x\nconfig = /x") == "/etc/trackq.conf:2: unknown key \"config\"")
        #expect(error("--batch-linger = 5s") == "/etc/trackq.conf:1: unknown key \"--batch-linger\"")
        #expect(error("Batch-Linger = 5s") == "/etc/trackq.conf:1: unknown key \"Batch-Linger\"")
        #expect(
            error("log-level = info\n\n# c\nlog-level = debug")
                == "/etc/trackq.conf:4: duplicate key \"log-level\" (first set on line 1)")
        #expect(error("log-level info") == "/etc/trackq.conf:1: expected \"key = value\"")
        #expect(error("durability = full\n[daemon]") == "/etc/trackq.conf:2: expected \"key = value\"")
        #expect(error(" = 5") == "/etc/trackq.conf:1: missing key before \"=\"")
    }

    @Test("a token key is refused without showing the token")
    func token() throws {
        let message = try #require(error("# c\ntoken = s3cr3t-value"))
        #expect(message.hasPrefix("/etc/trackq.conf:2: a token is not allowed in a config file"))
        #expect(message.contains("TRACKQ_TOKEN"))
        #expect(message.contains("token file"))
        #expect(!message.contains("s3cr3t"))
    }

    @Test("secrets pasted into odd places are not echoed")
    func noEcho() throws {
        let withoutEquals = try #require(error("s3cr3t-value"))
        #expect(!withoutEquals.contains("s3cr3t"))
        let oddKey = try #require(error("Bearer s3cr3t value = 1"))
        #expect(oddKey == "/etc/trackq.conf:1: unknown key (not shown)")
    }

    @Test("database and socket are accepted keys")
    func pathKeys() throws {
        #expect(try parse("database = /d/q.db\nsocket = /s/t.sock") == ["database": "/d/q.db", "socket": "/s/t.sock"])
    }

    @Test("every catalog flag is a config file key")
    func keys() {
        #expect(DaemonSettings.configFileKeys == Set(DaemonSettings.catalog.map(\.flag) + ["database", "socket"]))
    }
}
