import Foundation

/// `synchronous_standby_names` written and read back.
extension SynchronousMode {
    /// A standby name as an SQL identifier, double-quoted.
    static func quoted(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The value of `synchronous_standby_names` for this mode over the given standbys,
    /// for example `ANY 1 ("db_1", "db_2")`. Names are always double-quoted, so names
    /// with `-` or a leading digit work. Async, or no standbys, gives the empty string.
    public func standbyNames(_ standbys: [String]) -> String {
        guard !standbys.isEmpty else { return "" }
        let list = standbys.map(SynchronousMode.quoted).joined(separator: ", ")
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
