/// Quoting rules of the files and strings pgcluster writes for PostgreSQL.
public enum ConfigText {
    /// A postgresql.conf value: single-quoted, with `'` doubled and `\` doubled. Every
    /// parameter type accepts a quoted value, so quoting always is both safe and uniform.
    /// A quoted value may not span lines, so line breaks become `\n` and `\r`, which
    /// PostgreSQL turns back into line breaks.
    public static func confValue(_ value: String) -> String {
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "''")
            .replacingOccurrences(of: "\r\n", with: "\\r\\n")
            .replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\r", with: "\\r")
        return "'" + escaped + "'"
    }

    /// An SQL string literal, for statements such as `ALTER SYSTEM SET x = '...'`.
    public static func sqlLiteral(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }

    /// A double-quoted SQL identifier.
    public static func identifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// One `key=value` of a libpq connection string, quoting the value when needed.
    /// libpq ends an unquoted value at any white space (isspace: tab and newline too).
    public static func conninfoPair(_ key: String, _ value: String) -> String {
        let plain = !value.isEmpty && !value.contains { $0.isWhitespace || $0 == "'" || $0 == "\\" || $0 == "=" }
        if plain { return "\(key)=\(value)" }
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
        return "\(key)='\(escaped)'"
    }

    /// A libpq connection string from ordered key/value pairs.
    public static func conninfo(_ pairs: [(String, String)]) -> String {
        pairs.map { conninfoPair($0.0, $0.1) }.joined(separator: " ")
    }
}

extension SynchronousMode {
    /// The value of `synchronous_standby_names` for this mode over the given standbys,
    /// for example `ANY 1 ("db_1", "db_2")`. Names are always double-quoted, so names
    /// with `-` or a leading digit work. Async, or no standbys, gives the empty string.
    public func standbyNames(_ standbys: [String]) -> String {
        guard !standbys.isEmpty else { return "" }
        let list = standbys.map(ConfigText.identifier).joined(separator: ", ")
        switch self {
        case .async: return ""
        case .any(let k): return "ANY \(k) (\(list))"
        case .first(let k): return "FIRST \(k) (\(list))"
        }
    }

    /// Reads a `synchronous_standby_names` value back: the mode and the listed names.
    /// A plain list (`a, b`) is PostgreSQL's shorthand for `FIRST 1 (a, b)`.
    public static func parse(_ value: String) -> (mode: SynchronousMode, standbys: [String])? {
        var text = value.trimmingCharacters(in: .whitespaces)
        if text.isEmpty { return (.async, []) }
        var mode = SynchronousMode.first(1)
        let upper = text.uppercased()
        for (keyword, make) in [("ANY", SynchronousMode.any), ("FIRST", SynchronousMode.first)] where upper.hasPrefix(keyword + " ") {
            let rest = text.dropFirst(keyword.count).trimmingCharacters(in: .whitespaces)
            let digits = rest.prefix { $0.isNumber }
            guard let k = Int(digits) else { return nil }
            mode = make(k)
            text = rest.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        }
        if let first = upper.first, first.isNumber {
            let digits = text.prefix { $0.isNumber }
            guard let k = Int(digits) else { return nil }
            mode = .first(k)
            text = text.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        }
        if text.hasPrefix("(") && text.hasSuffix(")") { text = String(text.dropFirst().dropLast()) }
        var names: [String] = []
        var current = ""
        var quoted = false
        var iterator = Array(text).makeIterator()
        var pending: Character? = nil
        while let c = pending ?? iterator.next() {
            pending = nil
            if quoted {
                if c == "\"" {
                    if let next = iterator.next() {
                        if next == "\"" { current.append("\"") } else { quoted = false; pending = next }
                    } else {
                        quoted = false
                    }
                } else {
                    current.append(c)
                }
            } else if c == "\"" {
                quoted = true
            } else if c == "," {
                names.append(current.trimmingCharacters(in: .whitespaces))
                current = ""
            } else {
                current.append(c)
            }
        }
        let last = current.trimmingCharacters(in: .whitespaces)
        if !last.isEmpty { names.append(last) }
        return (mode, names)
    }
}

import Foundation
