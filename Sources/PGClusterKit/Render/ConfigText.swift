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


import Foundation
