import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Arguments quoted by ``ShellQuote`` come back exactly from a real shell: the line goes
/// through `/bin/sh -c` (dash) and `/bin/bash -c` (the login shell ssh uses on Debian),
/// running printf, which prints each argument it got followed by a NUL.
@Suite("shell quoting for ssh")
struct ShellQuoteTests {
    static let hostile: [String] = [
        "", " ", "  two  spaces  ", "it's", "'", "''", "'\\''", "\"", "\"quoted\"", "\\", "\\'", "back\\slash",
        "$HOME", "${HOME:-x}", "$(id -u)", "`id -u`", "$((1+1))", "a;b", "a && b", "a|b", "a > /tmp/x", "<",
        "*", "?", "[a-z]", "{a,b}", "~", "~root", "#comment", "a#b", "!", "!!", "a=b", "PATH=/x",
        "line1\nline2", "\n", "\ttab", "trailing newline\n", "é ü 日本 🐘", "-n", "--option=with space", "%s", "\u{7}",
    ]

    /// What a shell passes to the program, when `line` says `printf '%s\0' ARGS`.
    func argumentsThrough(_ shell: String, _ arguments: [String]) async throws -> [String] {
        let line = ShellQuote.line(["printf", "%s\\0"] + arguments)
        let result = try await LocalRunner().run(Command(shell, ["-c", line]))
        #expect(result.status == 0, "\(shell) -c \(line): \(result.output)")
        var parts = result.output.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        #expect(parts.last == "")
        parts.removeLast()
        return parts
    }

    @Test("every hostile argument comes back unchanged", arguments: ["/bin/sh", "/bin/bash"])
    func roundTrip(shell: String) async throws {
        for argument in Self.hostile {
            #expect(try await argumentsThrough(shell, [argument]) == [argument], "argument \(argument.debugDescription)")
        }
        // And all of them at once, so no argument runs into the next.
        #expect(try await argumentsThrough(shell, Self.hostile) == Self.hostile)
    }

    @Test("plain words stay bare, everything else is single-quoted")
    func readable() {
        #expect(ShellQuote.line(["pg_ctl", "-D", "/var/lib/pgcluster/demo/db_0/data", "-w", "start"])
            == "pg_ctl -D /var/lib/pgcluster/demo/db_0/data -w start")
        #expect(ShellQuote.line(["echo", "it's", "", "$x"]) == #"echo 'it'\''s' '' '$x'"#)
        #expect(ShellQuote.line(["a=b", "~", "#"]) == "'a=b' '~' '#'")
        #expect(ShellQuote.line([]) == "")
    }
}
