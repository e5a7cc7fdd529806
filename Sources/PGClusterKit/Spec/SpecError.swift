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
        return key.isEmpty ? "\(place): \(reason)" : "\(place): \(key): \(reason)"
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
