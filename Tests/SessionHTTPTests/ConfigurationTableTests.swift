import ArgumentParser
import Foundation
import ServiceSettings
import Testing

@testable import SessionHTTP

/// The README's configuration table is the user's manual; `ServiceOptions` is the truth. They must agree: the same
/// variables, and where the README gives one plain default, the one `--help` shows.
@Suite struct ConfigurationTableTests {
    /// The table's rows: every backticked variable of its first column, with the row's default column.
    static func readmeRows() throws -> [(variable: String, defaultText: String)] {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../README.md").standardized
        let text = try String(contentsOf: readme, encoding: .utf8)
        guard let start = text.range(of: "## Configuration\n"), let end = text.range(of: "\n## ", range: start.upperBound..<text.endIndex)
        else { return [] }
        var rows: [(String, String)] = []
        for line in text[start.upperBound..<end.lowerBound].split(separator: "\n") where line.hasPrefix("| `") {
            let columns = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard columns.count > 3 else { continue }
            for name in columns[1].split(separator: "`", omittingEmptySubsequences: false).enumerated().filter({ $0.offset % 2 == 1 }).map({
                String($0.element)
            })
            where name.allSatisfy({ $0.isUppercase || $0.isNumber || $0 == "_" }) {
                rows.append((name, columns[2]))
            }
        }
        return rows
    }

    @Test func theReadmeTableListsExactlyTheServicesVariables() throws {
        let documented = Set(try Self.readmeRows().map(\.variable).filter { !$0.hasPrefix("OTEL_") })
        let declared = Set(ServiceOptions.flags.map(ServiceOptions.environmentName(ofFlag:)))
        #expect(documented.count > 40)
        #expect(declared.subtracting(documented).sorted() == [], "declared but not in the README's table")
        #expect(documented.subtracting(declared).sorted() == [], "in the README's table but not declared")
    }

    @Test func plainDefaultsInTheReadmeAreTheHelpsDefaults() throws {
        let help = ServiceOptions.helpMessage()
        var compared = 0
        for (variable, defaultText) in try Self.readmeRows() where !variable.hasPrefix("OTEL_") {
            // Only a default that is one backticked value and nothing else; prose defaults are explained, not literal.
            guard defaultText.hasPrefix("`"), defaultText.hasSuffix("`"), defaultText.filter({ $0 == "`" }).count == 2 else { continue }
            let value = String(defaultText.dropFirst().dropLast())
            let flag = variable.lowercased().replacingOccurrences(of: "_", with: "-")
            // One entry per option: its flag, value name, help text and default, however --help wraps them.
            guard let entry = help.components(separatedBy: "\n  --").first(where: { $0.hasPrefix(flag + " ") }) else {
                Issue.record("--\(flag) is not in --help")
                continue
            }
            let flat = entry.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            if let range = flat.range(of: "(default: ", options: .backwards) {
                let shown = flat[range.upperBound...].prefix { $0 != ")" }
                #expect(String(shown) == value, "\(variable): README `\(value)`, --help \(shown)")
                compared += 1
            }
        }
        #expect(compared > 20)
    }
}
