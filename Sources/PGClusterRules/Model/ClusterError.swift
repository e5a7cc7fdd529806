/// How a command ended, as its exit code (README.md, "Commands": 0 done, 1 failed, 2 refused, 64 usage, 65 bad spec).
public enum ExitKind: Int32, Sendable {
    case success = 0
    case failure = 1
    /// Refused as unsafe: a live primary, a quorum that cannot be proven, a candidate
    /// that is behind, existing data. The flag that accepts the risk is named.
    case refused = 2
    case usage = 64
    case badSpec = 65
}

/// A runtime failure with an operator-friendly message: what failed, on which node,
/// and what to do next. Its text never holds a password.
public struct ClusterError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var exitCode: ExitKind
    /// Extra lines shown under the message: the failing command, a log's tail.
    public var details: [String]

    public init(_ message: String, exitCode: ExitKind = .failure, details: [String] = []) {
        self.message = message
        self.exitCode = exitCode
        self.details = details
    }

    public static func refused(_ message: String) -> ClusterError {
        ClusterError(message, exitCode: .refused)
    }

    public var description: String {
        ([message] + details).joined(separator: "\n")
    }
}
