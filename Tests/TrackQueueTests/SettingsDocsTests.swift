import Foundation
import Testing

@testable import TrackQueue

/// The settings table (``DaemonSettings/catalog``) is the one home of every setting: the
/// README's table and `examples/trackq.conf` are read here and must say what it says, so a
/// setting added, renamed or given a new default without them fails this test.
@Suite struct SettingsDocsTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Every setting the README and the config file name (`--config` names the file itself).
    static let settings = DaemonSettings.catalog + DaemonSettings.locationCatalog.filter { $0.flag != "config" }

    /// The README's rows: flag name → (environment variable, default as written).
    static func readmeRows() throws -> [String: (environment: String, defaultText: String)] {
        let readme = try String(contentsOf: repository.appendingPathComponent("README.md"), encoding: .utf8)
        let lines = readme.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0.hasPrefix("| flag | environment | default |") })
        var rows: [String: (String, String)] = [:]
        for line in lines[(start + 2)...] {
            guard line.hasPrefix("|") else { break }
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard cells.count >= 4, cells[1].hasPrefix("`--") else { continue }  // TRACKQ_TOKEN has no flag
            let flag = cells[1].dropFirst(3).prefix { $0 != " " && $0 != "`" }
            rows[String(flag)] = (cells[2].trimmingCharacters(in: ["`"]), cells[3])
        }
        return rows
    }

    @Test func theREADMEsTableHasEverySettingWithItsVariableAndDefault() throws {
        let rows = try Self.readmeRows()
        #expect(Set(rows.keys) == Set(Self.settings.map(\.flag)))
        for setting in Self.settings {
            guard let row = rows[setting.flag] else { continue }
            #expect(row.environment == setting.environment, "--\(setting.flag)")
            // A default in backticks is a value, and must be the table's; prose ("none", "see
            // above", "the daemon's group") describes one the table words the same way.
            if row.defaultText.hasPrefix("`"), row.defaultText.hasSuffix("`") {
                #expect(row.defaultText == "`\(setting.defaultText)`", "--\(setting.flag)")
            }
        }
    }

    @Test func theExampleConfigFileHasEveryKeyWithItsDefault() throws {
        let text = try String(
            contentsOf: Self.repository.appendingPathComponent("examples/trackq.conf"), encoding: .utf8)
        var keys: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("# ") {
            let parts = line.dropFirst(2).split(separator: " = ", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[0].allSatisfy({ $0.isLowercase || $0 == "-" }) else { continue }
            keys[parts[0]] = parts[1]
        }
        // The file shows the default of each setting that has one as a value; the others show
        // an example path or "" (none). That every key is there is ConfigSettingsTests'
        // exampleConfig check.
        let examples: Set<String> = ["token-file", "proxy", "database", "socket"]
        for setting in Self.settings where !examples.contains(setting.flag) {
            let shown = keys[setting.flag]
            // "none" is a value where it is one of the choices (--compression gzip|none).
            let isChoice = setting.valueName.split(separator: "|").contains { $0 == setting.defaultText }
            let expected = setting.defaultText.hasPrefix("none") && !isChoice ? #""""# : setting.defaultText
            #expect(shown == expected, "\(setting.flag)")
        }
    }
}
