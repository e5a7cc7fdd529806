/// Quoting for a POSIX shell, the one place pgcluster writes a shell line: ssh sends a
/// single string that the remote login shell splits again, so each argument must reach
/// the remote program exactly as it is here.
public enum ShellQuote {
    /// The arguments as one line that `sh -c` (dash, bash, any POSIX shell) splits back
    /// into exactly these arguments. A word of only safe characters stays bare, for
    /// readable logs; any other goes in single quotes, inside which the shell interprets
    /// nothing, and each `'` becomes `'\''` (close, an escaped quote, reopen). The empty
    /// string is `''`.
    public static func line(_ arguments: [String]) -> String {
        arguments.map { argument in
            if !argument.isEmpty && argument.unicodeScalars.allSatisfy({ safe.contains($0) }) { return argument }
            return "'" + argument.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
        }.joined(separator: " ")
    }

    /// Characters no POSIX shell treats specially anywhere in a word (`=` only matters
    /// before a command name, `~` and `#` only at a word's start: all three are quoted).
    private static let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+.,/:@%".unicodeScalars)
}
