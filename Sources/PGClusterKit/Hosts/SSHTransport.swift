import Foundation

/// How this machine runs a program on one host over OpenSSH: the `ssh` client with batch
/// mode (never a prompt), a connect timeout, one multiplexed master connection per host
/// (so a step costs a round trip, not a handshake), and host keys recorded in our own
/// known_hosts on first contact and checked from then on. The program is an argument
/// array, quoted for the remote shell by ``ShellQuote``; ssh's own failures become one
/// ``ClusterError`` line naming the host and what to do.
public struct SSHTransport: Sendable {
    public var host: String
    public var user: String
    public var port: Int
    /// The private key to log in with; nil: ssh's defaults (agent, ~/.ssh/id_*).
    public var identityFile: String?
    /// An absolute folder of this machine for the master connections' sockets (at most
    /// ``maxControlDirectoryLength`` bytes: a Unix socket's path is short).
    public var controlDirectory: String
    /// This machine's record of each host's key (in local.dir, not ~/.ssh).
    public var knownHostsFile: String
    /// Seconds to wait for a connection. A host silent on an open master connection is
    /// given up after about as long (keepalives every second), then ssh tries a fresh
    /// connection: a cut-off host fails within about twice this.
    public var connectTimeout: Int
    public var runner: any CommandRunning

    public init(
        host: String, user: String, port: Int = 22, identityFile: String? = nil, controlDirectory: String,
        knownHostsFile: String, connectTimeout: Int = 5, runner: any CommandRunning = LocalRunner()
    ) {
        self.host = host
        self.user = user
        self.port = port
        self.identityFile = identityFile
        self.controlDirectory = controlDirectory
        self.knownHostsFile = knownHostsFile
        self.connectTimeout = connectTimeout
        self.runner = runner
    }

    /// ssh makes the socket as `<ControlPath>.<16 random characters>`, and `%C` is 40
    /// characters: with the slash, a folder longer than this leaves no room in a Unix
    /// socket's 108 bytes, and ssh then runs without its master connection (slowly) after a
    /// warning.
    public static let maxControlDirectoryLength = 107 - 1 - 40 - 17

    static let executable = ComposeCluster.onPath("ssh") ?? "/usr/bin/ssh"

    /// The options every ssh call here shares (also `ssh -O exit`, which must find the same socket).
    var options: [String] {
        var options = [
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=\(connectTimeout)",
            "-o", "ServerAliveInterval=1",
            "-o", "ServerAliveCountMax=\(max(connectTimeout, 2))",
            "-o", "ControlMaster=auto",
            "-o", "ControlPath=\(controlDirectory)/%C",
            "-o", "ControlPersist=60",
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", "UserKnownHostsFile=\(knownHostsFile)",
            // Errors only: not "Permanently added ... to the list of known hosts" in a program's output.
            "-o", "LogLevel=ERROR",
            "-p", String(port),
        ]
        if let identityFile {
            // Only this key: an agent offering many keys first ends in "Too many authentication failures".
            options += ["-i", identityFile, "-o", "IdentitiesOnly=yes"]
        }
        return options
    }

    /// The ssh command that runs `arguments` on the host, with `input` on its stdin; `tied`:
    /// ssh's stdin stays open until ssh ends (``Command/holdStdin``).
    public func command(_ arguments: [String], input: Data? = nil, timeout: Double? = nil, tied: Bool = false) -> Command {
        // The login and the host after "-l" and "--": neither can ever be read as an option.
        var command = Command(
            Self.executable, options + ["-l", user, "--", host, ShellQuote.line(Self.bounded(arguments, by: timeout))],
            input: input, timeout: timeout)
        command.holdStdin = tied
        return command
    }

    /// With a deadline, the program runs on the host under coreutils' `timeout`: the deadline
    /// here kills ssh and what it started on this machine, and a program on the host would
    /// otherwise run on (a hung `pg_ctl`, a script waiting on a lock). The host's limit is the
    /// deadline plus two seconds, so a caller sees this machine's "did not end within"
    /// first; then `timeout` SIGKILLs the program's process group there.
    static func bounded(_ arguments: [String], by timeout: Double?) -> [String] {
        guard let timeout else { return arguments }
        return ["timeout", "-s", "KILL", String(Int(timeout.rounded(.up)) + 2)] + arguments
    }

    /// The deadline of a short step (a file read, a probe for the postmaster, a kill): a hung
    /// ssh or host never holds a command, or a watcher's tick, longer than this.
    public var stepTimeout: Double { Double(connectTimeout) * 2 + 20 }

    /// Runs `arguments` on the host and returns how it ended there. Throws when ssh itself
    /// failed (unreachable host, refused key, changed host key): the program did not run.
    /// With `timeout`, ssh and all it started here are killed at the deadline (a failure: what
    /// was asked there is unknown), and the program on the host two seconds later (``bounded``).
    public func run(
        _ arguments: [String], input: Data? = nil, timeout: Double? = nil, tied: Bool = false
    ) async throws(ClusterError) -> CommandResult {
        guard controlDirectory.utf8.count <= Self.maxControlDirectoryLength else {
            throw ClusterError(
                "the folder for ssh's connection sockets, \(controlDirectory), is \(controlDirectory.utf8.count) bytes long;"
                    + " at most \(Self.maxControlDirectoryLength) fit in a socket path: use a shorter local.dir")
        }
        if !FileManager.default.fileExists(atPath: controlDirectory) {
            // Ours alone: whoever can reach the sockets can use the logged-in connections.
            try? FileManager.default.createDirectory(
                atPath: controlDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let result = try await runner.run(command(arguments, input: input, timeout: timeout, tied: tied))
        if result.status == 255 {
            // Exit 255 is ssh's own: a known failure says what to check; any other is still
            // a transport that failed, never a program's answer (no script of ours exits 255).
            throw failure(result.output) ?? ClusterError(
                "ssh to \(host) failed (exit 255): "
                    + (result.output.split(whereSeparator: \.isNewline).last.map(String.init) ?? "no message")
                    + "; what was asked there is unknown")
        }
        return result
    }

    /// Runs `arguments` on the host; fails with the command and its output's tail when it exits non-zero.
    @discardableResult
    public func check(
        _ arguments: [String], input: Data? = nil, timeout: Double? = nil, what: String
    ) async throws(ClusterError) -> CommandResult {
        let result = try await run(arguments, input: input, timeout: timeout)
        guard result.succeeded else {
            let tail = result.output.split(whereSeparator: \.isNewline).suffix(12).map { "| " + $0 }
            throw ClusterError(
                "\(what) on \(host) failed (exit \(result.status))",
                details: ["command: \(ShellQuote.line(arguments))"] + tail)
        }
        return result
    }

    /// Writes `contents` to `path` on the host at once or not at all: into a temporary file
    /// beside it, given its mode (and owner, when the login is root), then renamed over it.
    public func writeFile(_ path: String, contents: Data, mode: Int, owner: String? = nil) async throws(ClusterError) {
        let script = #"""
            set -e
            tmp=$(mktemp "$1.XXXXXX")
            trap 'rm -f "$tmp"' EXIT
            cat >"$tmp"
            chmod "$2" "$tmp"
            if [ -n "$3" ]; then chown "$3" "$tmp"; fi
            mv -f "$tmp" "$1"
            trap - EXIT
            """#
        try await check(
            ["/bin/sh", "-c", script, "sh", path, String(mode, radix: 8), owner ?? ""], input: contents,
            timeout: stepTimeout + Double(contents.count) / 1_000_000, what: "writing \(path)")
    }

    /// Ends the master connection, if one is open (at the end of a command, or before a
    /// test removes its hosts). Never fails.
    public func closeConnection() async {
        _ = try? await runner.run(
            Command(Self.executable, ["-O", "exit"] + options + ["-l", user, "--", host], timeout: stepTimeout))
    }

    /// What ssh's own failure (exit 255) means, in one line naming the host and what to do;
    /// nil when the output is not one of ssh's failures (the remote program exited 255).
    public func failure(_ output: String) -> ClusterError? {
        // ssh ends its messages with "\r\n", which Swift counts as one Character, not "\n".
        let lines = output.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        func has(_ text: String) -> Bool { lines.contains { $0.contains(text) } }
        let target = "\(user)@\(host) port \(port)"

        if has("REMOTE HOST IDENTIFICATION HAS CHANGED") {
            // "Offending ED25519 key in /path/known_hosts:3"
            let offending = lines.first { $0.hasPrefix("Offending ") && $0.contains(" key in ") }
                .flatMap { $0.components(separatedBy: " key in ").last }
            let name = port == 22 ? host : "[\(host)]:\(port)"
            return ClusterError(
                "host \(host) presents a different ssh host key than the one recorded"
                    + " in \(offending ?? knownHostsFile): refusing to connect;"
                    + " if the host was reinstalled, remove that line (ssh-keygen -R '\(name)' -f \(knownHostsFile)) and run again")
        }
        if has("Host key verification failed") {
            return ClusterError(
                "host \(host)'s ssh host key could not be verified against \(knownHostsFile): check that file"
                    + " (it must be writable, and hold the host's current key) and run again")
        }
        if has("Permission denied (publickey") || has("Too many authentication failures") {
            let key = identityFile ?? "ssh's default key (~/.ssh/id_*)"
            return ClusterError(
                "host \(host) refused the key \(key) for user \(user): add its public key to"
                    + " ~\(user)/.ssh/authorized_keys on \(host), or set ssh.identityFile to a key it accepts")
        }
        if has("Connection refused") {
            return ClusterError(
                "host \(host) refused the ssh connection (\(target)): check that sshd runs there and listens on port \(port)")
        }
        if has("Could not resolve hostname") {
            return ClusterError("cannot resolve host name \(host) for ssh: check the node's sshHost (or host) in the spec")
        }
        for (text, reason) in [
            ("Connection timed out", "connection timed out after \(connectTimeout) s"),
            ("No route to host", "no route to host"),
            ("Network is unreachable", "network unreachable"),
            ("read from master failed", "the connection was lost"),
            ("Connection closed by", "the connection was closed"),
            ("Connection reset by", "the connection was reset"),
            ("Broken pipe", "the connection was lost"),
        ] where has(text) {
            return ClusterError(
                "host \(host) is unreachable by ssh (\(target)): \(reason); check that it is up and that the network and any firewall let port \(port) through")
        }
        if has("open failed: administratively prohibited") {
            return ClusterError(
                "host \(host) refused one more session on the shared ssh connection: raise MaxSessions in its sshd_config")
        }
        return nil
    }
}
