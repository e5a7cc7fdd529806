import Foundation

/// Where output goes: results to stdout, progress and errors to stderr.
public enum Console {
    private static let lock = NSLock()

    /// True when stderr is a terminal (progress may then redraw a line in place).
    public static var stderrIsTTY: Bool { isatty(STDERR_FILENO) == 1 }

    /// Set once by `watch` before it starts: progress and warnings then become its log
    /// events (one line each, JSON with `--json`) instead of bare lines on stderr.
    nonisolated(unsafe) public static var redirect: (@Sendable (_ text: String, _ isWarning: Bool) -> Void)?

    public static func out(_ text: String) {
        lock.withLock { FileHandle.standardOutput.write(Data((text + "\n").utf8)) }
    }

    /// A progress line on stderr, such as `[db_1] pg_basebackup done (1.2 s)`.
    public static func progress(_ text: String) {
        if let redirect { return redirect(text, false) }
        lock.withLock { FileHandle.standardError.write(Data((text + "\n").utf8)) }
    }

    public static func warn(_ text: String) {
        if let redirect { return redirect(text, true) }
        lock.withLock { FileHandle.standardError.write(Data(("warning: " + text + "\n").utf8)) }
    }

    public static func error(_ error: ClusterError) {
        var lines = ["error: " + error.message]
        lines += error.details.map { "  " + $0 }
        lock.withLock { FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8)) }
    }
}
