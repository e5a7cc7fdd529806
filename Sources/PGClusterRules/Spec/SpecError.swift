/// One thing wrong with a spec: where (file, line, key path) and why.
public struct SpecProblem: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// 1-based line in the file, when the problem points at a place in it.
    public var line: Int?
    /// Dotted key path such as `nodes[1].port`; empty for the file as a whole.
    public var key: String
    public var reason: String

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        let key = Self.escaped(key), reason = Self.escaped(reason)
        return key.isEmpty ? "\(place): \(reason)" : "\(place): \(key): \(reason)"
    }

    /// Keys and values come from the spec: a line break or another control character in
    /// one is shown escaped (`\n`, `\u{1B}`), so one problem stays one line and cannot
    /// pass itself off as another.
    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else { return text }
        return text.unicodeScalars.map { scalar -> String in
            switch scalar {
            case "\n": return "\\n"
            case "\r": return "\\r"
            case "\t": return "\\t"
            default:
                return scalar.properties.generalCategory == .control
                    ? "\\u{\(String(scalar.value, radix: 16, uppercase: true))}" : String(scalar)
            }
        }.joined()
    }
}

/// A spec that cannot be used. Every problem found is listed, not just the first.
/// Commands exit with code 65 (EX_DATAERR) on it, before anything is touched.
public struct SpecError: Error, Sendable, CustomStringConvertible {
    public var problems: [SpecProblem]

    public init(_ problems: [SpecProblem]) {
        self.problems = problems
    }

    public var description: String {
        problems.map(\.description).joined(separator: "\n")
    }
}
