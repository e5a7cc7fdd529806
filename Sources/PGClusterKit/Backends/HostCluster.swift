import Foundation

/// A cluster whose servers run on hosts: every node on this machine (backend `local`), or
/// each on its own host reached by ssh (backend `ssh`). One implementation of the
/// server-side steps (initdb, pg_ctl, pg_basebackup, pg_rewind, config files, fencing),
/// written against ``Host``; the two backends differ only in the host each node gets.
extension ClusterSpec {
    /// Backend ssh: the OS user the servers run as on the hosts: ssh.user, or local.osUser
    /// when pgcluster logs in as root.
    public var sshServerUser: String { ssh.user == "root" ? local.osUser : ssh.user }
}

public struct HostCluster: Sendable {
    public let spec: ClusterSpec
    /// local.dir (this machine) and, per node, where its files live on its host.
    public let layout: LocalLayout
    public let renderer: Renderer
    /// The OS user the servers run as (never root).
    public let serverUserName: String
    /// Where PostgreSQL's programs are, on every host.
    public let bindir: String
    let hosts: [String: any Host]
    /// Backend ssh with `backup.repoHost`: the host that keeps the backup repository (the
    /// same ``Host`` as a node's when they share an address).
    public let repositoryHost: (any Host)?

    public init(spec: ClusterSpec, templates: TemplateSet = .embedded, runner: any CommandRunning = LocalRunner())
        throws(ClusterError)
    {
        self.spec = spec
        self.layout = LocalLayout(spec: spec)
        self.renderer = Renderer(spec: spec, templates: templates)
        switch spec.backend {
        case .local:
            let user = try OSUser.serverUser(for: spec)
            let host = LocalHost(serverUser: user, runner: runner)
            serverUserName = user.name
            bindir = try Self.findBindir(spec)
            hosts = Dictionary(uniqueKeysWithValues: spec.nodes.map { ($0.name, host as any Host) })
            repositoryHost = nil
        case .ssh:
            serverUserName = spec.sshServerUser
            bindir = spec.postgres.bindir ?? "/usr/lib/postgresql/\(spec.postgres.version)/bin"
            var byAddress: [String: any Host] = [:]
            var hosts: [String: any Host] = [:]
            let serverUser = serverUserName
            func host(at address: String) -> any Host {
                if let known = byAddress[address] { return known }
                let host = SSHHost(
                    transport: SSHTransport(
                        host: address, user: spec.ssh.user, port: spec.ssh.port, identityFile: spec.ssh.identityFile,
                        controlDirectory: LocalLayout(spec: spec).sshControlDirectory,
                        knownHostsFile: LocalLayout(spec: spec).knownHostsFile, connectTimeout: spec.ssh.connectTimeout,
                        runner: runner),
                    serverUser: serverUser)
                byAddress[address] = host
                return host
            }
            for node in spec.nodes { hosts[node.name] = host(at: node.sshHost ?? node.host) }
            self.hosts = hosts
            repositoryHost = spec.backup?.repoHost.map { host(at: $0) }
        case .compose:
            throw ClusterError(
                "this command drives backends local and ssh; \(spec.file) has backend: compose",
                details: ["render it with `pgcluster render --out DIR` and start it with `docker compose up -d` in DIR"])
        }
    }

    static func findBindir(_ spec: ClusterSpec) throws(ClusterError) -> String {
        let version = spec.postgres.version
        let candidates = spec.postgres.bindir.map { [$0] } ?? ["/usr/lib/postgresql/\(version)/bin", "/usr/pgsql-\(version)/bin"]
        for dir in candidates where FileManager.default.isExecutableFile(atPath: "\(dir)/pg_ctl") {
            return dir
        }
        throw ClusterError(
            "PostgreSQL \(version) binaries not found in \(candidates.joined(separator: " or "))",
            details: [
                spec.postgres.bindir == nil
                    ? "install them: apt-get install postgresql-\(version) (or set postgres.bindir in \(spec.file))"
                    : "check postgres.bindir in \(spec.file)"
            ])
    }

    /// The host a node lives on.
    public func host(_ node: NodeSpec) -> any Host { hosts[node.name]! }

    /// Every host the cluster uses, each once: the nodes' hosts, then the backup
    /// repository's host when it is not one of them.
    public var allHosts: [any Host] {
        let nodeHosts = distinctHosts.map(\.host)
        guard let repositoryHost, !nodeHosts.contains(where: { $0.label == repositoryHost.label }) else { return nodeHosts }
        return nodeHosts + [repositoryHost]
    }

    /// Each distinct host once, with the nodes on it.
    public var distinctHosts: [(host: any Host, nodes: [NodeSpec])] {
        var seen: [String: Int] = [:]
        var result: [(host: any Host, nodes: [NodeSpec])] = []
        for node in spec.nodes {
            let host = self.host(node)
            if let index = seen[host.label] {
                result[index].nodes.append(node)
            } else {
                seen[host.label] = result.count
                result.append((host, [node]))
            }
        }
        return result
    }

    public func binary(_ name: String) -> String { "\(bindir)/\(name)" }

    /// Runs one of PostgreSQL's programs on the node's host, as the server's user.
    @discardableResult
    func server(
        _ node: NodeSpec, _ program: String, _ arguments: [String], environment: [String: String] = [:],
        input: Data? = nil, progress: Bool = false, what: String
    ) async throws(ClusterError) -> CommandResult {
        try await host(node).check(
            [binary(program)] + arguments, environment: environment, input: input, progress: progress, what: what)
    }

    /// Whether PostgreSQL takes the spec's `postgres.parameters`, names and values, on the
    /// node's data folder: `postgres -C NAME` with each as `-c name=value` reads the
    /// configuration with them and exits, beside a running server or without one. A typo
    /// (`not_a_setting`) or a value PostgreSQL refuses (`work_mem: banana`) is refused here
    /// with PostgreSQL's own words, before a configuration file is written: written, it left
    /// a server that no longer reloaded and could not start again.
    public func checkParameters(_ node: NodeSpec) async throws(ClusterError) {
        let parameters = spec.postgres.parameters
        guard let first = parameters.first else { return }
        let arguments = ["-D", layout.dataDir(node.name), "-C", first.name] + parameters.flatMap { ["-c", "\($0.name)=\($0.value)"] }
        let result = try await host(node).run([binary("postgres")] + arguments)
        guard !result.succeeded else { return }
        let lines = result.output.split(separator: "\n").map(String.init)
        let fatal = lines.compactMap { line in line.range(of: "FATAL:").map { line[$0.upperBound...].trimmingCharacters(in: .whitespaces) } }
        throw ClusterError(
            "postgres.parameters: \(fatal.first ?? lines.last ?? "postgres -C exited \(result.status)") (PostgreSQL \(spec.postgres.version) on \(node.name))",
            exitCode: .badSpec, details: ["nothing was changed: correct the spec and run again"])
    }

    // MARK: Processes

    /// The postmaster's PID when one runs for this node's data directory.
    public func postmasterPID(_ node: NodeSpec) async throws(ClusterError) -> Int32? {
        try await host(node).postmasterPID(dataDir: layout.dataDir(node.name))
    }

    /// Whether a postmaster runs for the node; false also when its host cannot be asked.
    public func postmasterRuns(_ node: NodeSpec) async -> Bool { ((try? await postmasterPID(node)) ?? nil) != nil }

    /// A postmaster.pid (and socket lock) left by a server that died. PostgreSQL treats a
    /// PID that still exists as a live server, and a killed server stays a zombie until its
    /// parent (often PID 1) reaps it: a dead or zombie postmaster's files are removed at once.
    /// A PID that now names a process working outside the data directory is stale at once.
    /// A live postmaster's files are never touched. Shell: `clear_stale DATADIR LOCKFILE`,
    /// builtins only when there is no postmaster.pid (a clean stop's case).
    static let clearStaleFunction = waitFunctions + "\n" + SSHHost.worksElsewhere + "\n" + #"""
        clear_stale() {
          _pid=
          read -r _pid 2>/dev/null <"$1/postmaster.pid" || [ -n "$_pid" ] || return 0
          case "$_pid" in ''|*[!0-9]*) return 0 ;; esac
          # The PID given out again to a process that works elsewhere (PIDs wrap): stale, and
          # PostgreSQL would refuse to start, taking that process for another postmaster.
          if works_elsewhere "$_pid" "$1"; then rm -f "$1/postmaster.pid" "$2"; return 0; fi
          if alive "$_pid"; then return 0; fi
          # Dead: gone, or a zombie its parent has not reaped yet, which kill -0 still finds
          # and PostgreSQL would take for a running postmaster. Waiting for the reaping cost
          # a rejoin 1.4 s after a kill -9 where init reaps every 1.5 s; PostgreSQL's own test
          # of its shared memory still guards against backends that outlive it.
          rm -f "$1/postmaster.pid" "$2"
          return 0
        }

        """#

    /// One round trip: ``clearStaleFunction`` for `$1` (data folder) and `$2` (socket lock).
    static let clearStale = clearStaleFunction + #"""
        clear_stale "$1" "$2"
        exit 0
        """#

    public func clearStalePidFile(_ node: NodeSpec) async throws(ClusterError) {
        _ = try await host(node).run(["/bin/sh", "-c", Self.clearStale, "sh", layout.dataDir(node.name), socketLock(node)])
    }

    /// Shell functions for the waits below, builtins only (`read`, `case`, `test`), so that a
    /// turn of a wait forks nothing but its `sleep`: on a busy host a wait looking every
    /// 10 ms with `sed` and `grep` took a good part of a core. `alive PID`: the process exists
    /// and is neither a zombie nor dead (its state, the third field of /proc/PID/stat; a
    /// postmaster's name has no blanks). `pidfile DIR`: postmaster.pid's first line (the PID)
    /// in `l1`, its eighth (the status: `ready`, `standby`, `starting`, `stopping`) in `l8`.
    /// `gone DIR`: no live postmaster holds DIR (the test of every stop's wait).
    static let waitFunctions = #"""
        alive() { s=; read -r _ _ s _ 2>/dev/null <"/proc/$1/stat"; case "$s" in '' | Z | X) return 1 ;; esac; }
        pidfile() {
            l1=; l8=
            { read -r l1; read -r _; read -r _; read -r _; read -r _; read -r _; read -r _; read -r l8; } 2>/dev/null <"$1/postmaster.pid"
        }
        # No live postmaster holds $1 (pg_ctl's own test): no postmaster.pid, or the PID on it
        # no longer runs. A pid file not (yet) readable counts as held.
        gone() {
          [ -e "$1/postmaster.pid" ] || return 0
          pidfile "$1"
          case "$l1" in '' | *[!0-9]*) return 1 ;; esac
          ! alive "$l1"
        }
        # 10 ms a turn for the first 2 s, then 100 ms (pg_ctl's own pace); $1: seconds at most,
        # counted from the last `turns=0` (each wait sets it as it begins).
        turns=0
        pause() { if [ $turns -lt 200 ]; then sleep 0.01; turns=$((turns + 1)); else sleep 0.1; turns=$((turns + 10)); fi; [ $turns -lt $(($1 * 100)) ]; }
        """#

    /// `pg_ctl stop` without its wait (`-W`), then the wait on the host: done when
    /// postmaster.pid is gone or its postmaster no longer runs (pg_ctl's own test); 120 s at
    /// most. Shell (with ``waitFunctions``): `stop_and_wait PG_CTL DATADIR MODE`.
    static let stopFunction = #"""
        stop_and_wait() {
          "$1" -D "$2" -m "$3" -W stop || return $?
          turns=0
          until gone "$2"; do
            pause 120 || { echo "the server did not stop within 120 s" >&2; return 1; }
          done
        }

        """#

    /// A switchover's stop: `pg_ctl stop` without its wait, then pg_controldata (`$4`) every
    /// 10 ms until the control file says "shut down", or the postmaster is gone; its output
    /// is the script's. The shutdown checkpoint is then written and nothing can write WAL any
    /// more (every backend has exited before it), so the caller need not wait for the
    /// postmaster's last 20–40 ms (its WAL senders' last sends, its exit): the writers wait
    /// for each of them. A later start of this server waits for that exit (`wait_gone`).
    /// A control file read in the middle of its write (its CRC does not match) is read again.
    static let stopAndControlData = waitFunctions + "\n" + #"""
        "$1" -D "$2" -m "$3" -W stop >/dev/null || exit $?
        while :; do
          out=$("$4" -D "$2" 2>&1)
          state=${out#*Database cluster state:}
          state=${state%%
        *}
          state=${state#"${state%%[! ]*}"}
          case "$out" in *CRC*) ;; *) [ "$state" = "shut down" ] && { echo "$out"; exit 0; } ;; esac
          gone "$2" && break
          pause 120 || { echo "the server did not stop within 120 s" >&2; exit 1; }
        done
        exec "$4" -D "$2"
        """#

    /// Shell (with ``waitFunctions``): `wait_gone DATADIR SECONDS`, until no live postmaster
    /// holds DATADIR (a switchover's stop returns before its postmaster has exited).
    static let waitGoneFunction = #"""
        wait_gone() {
          turns=0
          until gone "$1"; do
            pause "$2" || { echo "the old postmaster (PID $l1) did not exit within $2 s" >&2; return 1; }
          done
        }

        """#

    /// One round trip. Arguments: pg_ctl, the data folder, the mode.
    static let stopAndWait = waitFunctions + "\n" + stopFunction + #"""
        stop_and_wait "$1" "$2" "$3"
        """#

    /// What `pg_ctl start -w` does, looking every 10 ms for the first 2 s instead of pg_ctl's
    /// 100 ms (its wait is most of a standby's start): the postmaster is started in a session
    /// of its own, its output appended to the log, and followed by its PID, so that a slow
    /// start (crash recovery, a busy host) is waited for as long as it lives, and a failed one
    /// is told at once. Ready is what pg_ctl calls ready: postmaster.pid names that PID and its
    /// status line says `ready` or `standby`. Shell (with ``waitFunctions``):
    /// `start_and_wait POSTGRES DATADIR LOGFILE SECONDS`, its exit status the script's.
    static let startFunction = #"""
        start_and_wait() {
          (umask 077; exec setsid "$1" -D "$2" </dev/null >>"$3" 2>&1) &
          pm=$!
          turns=0
          while :; do
            pidfile "$2"
            if [ "$l1" = "$pm" ]; then
              case "$l8" in ready* | standby*) return 0 ;; esac
            fi
            alive "$pm" || { echo "the postmaster (PID $pm) exited during its start" >&2; return 1; }
            pause "$4" || break
          done
          echo "the server did not start within $4 s (the postmaster, PID $pm, still runs)" >&2
          return 1
        }

        """#

    /// One round trip: clears a stale pid file, then starts. Arguments: postgres, the data
    /// folder, the log file, the seconds to wait at most, the socket lock file.
    static let startAndWait = clearStaleFunction + startFunction + #"""
        clear_stale "$2" "$5"
        start_and_wait "$1" "$2" "$3" "$4"
        """#

    public func start(_ node: NodeSpec) async throws(ClusterError) {
        let arguments = [binary("postgres"), layout.dataDir(node.name), layout.logFile(node.name), "120", socketLock(node)]
        let result = try await host(node).run(["/bin/sh", "-c", Self.startAndWait, "sh"] + arguments)
        try await startFailed(node, result)
    }

    /// A switchover's old primary, stopped cleanly: its configuration to follow `upstream`
    /// (as ``placeConfig(_:following:)``), restore_command emptied (with `backup:`), and its
    /// start, in one round trip to its host: the writers and the command wait for each
    /// program started on this path.
    public func startFollowing(_ node: NodeSpec, upstream: NodeSpec) async throws(ClusterError) {
        var arguments = [
            "/bin/sh", "-c", Self.startFollowingScript, "sh", binary("postgres"), layout.dataDir(node.name), layout.logFile(node.name),
            "120", socketLock(node), spec.backup != nil ? "restore_command = ''" : "",
        ]
        for (path, text) in try await configFiles(node, following: upstream).written { arguments += [path, "600", text] }
        // pgBackRest's files on its host are as the node's last placement left them.
        let result = try await host(node).run(arguments)
        try await startFailed(node, result)
    }

    /// ``place`` and ``startAndWait`` in one: `$1`–`$5` as ``startAndWait``'s, `$6` a line
    /// for postgresql.auto.conf in place of its restore_command (or empty), then `PATH MODE
    /// TEXT` files.
    static let startFollowingScript = clearStaleFunction + waitGoneFunction + startFunction + rewriteAutoConf + #"""
        postgres=$1 data=$2 log=$3 seconds=$4 lock=$5 restore=$6
        shift 6
        (
          set -e

        """# + writeEach + #"""
          auto="$data/postgresql.auto.conf"
          [ -f "$auto" ] || : >"$auto"
          rewrite_auto "$auto" '\#(copiedSettings)'
          [ -z "$restore" ] || rewrite_auto "$auto" restore_command "$restore"
        )
        # (Not `( … ) || …`: set -e would not hold inside a subshell whose status is tested.)
        [ $? -eq 0 ] || { echo "cannot write the configuration in $data" >&2; exit 1; }
        wait_gone "$data" "$seconds" || exit 1
        clear_stale "$data" "$lock"
        start_and_wait "$postgres" "$data" "$log" "$seconds"
        """#

    func socketLock(_ node: NodeSpec) -> String { "\(layout.socketDir(node.name))/.s.PGSQL.\(node.port).lock" }

    /// Throws what a failed start said, with the server's log.
    private func startFailed(_ node: NodeSpec, _ result: CommandResult) async throws(ClusterError) {
        guard !result.succeeded else { return }
        throw ClusterError(
            "\(node.name): the server did not start on \(host(node).label) (exit \(result.status))",
            details: result.output.split(whereSeparator: \.isNewline).suffix(3).map { "| " + $0 }
                + [
                    "start it by hand: "
                        + ShellQuote.line([binary("pg_ctl"), "-D", layout.dataDir(node.name), "-l", layout.logFile(node.name), "-w", "start"])
                ]
                + (await serverLog(node)).map { "log | " + $0 })
    }

    /// The stop (no look for a postmaster first: the caller saw the primary answer) and
    /// pg_controldata, in one round trip.
    public func stopForSwitchover(_ node: NodeSpec) async throws(ClusterError) -> String? {
        let data = layout.dataDir(node.name)
        let result = try await host(node).run(
            ["/bin/sh", "-c", Self.stopAndControlData, "sh", binary("pg_ctl"), data, StopMode.fast.rawValue, binary("pg_controldata")])
        guard result.succeeded else {
            throw ClusterError(
                "\(node.name): the server did not stop cleanly (exit \(result.status))",
                details: result.output.split(whereSeparator: \.isNewline).suffix(5).map { "| " + $0 })
        }
        return result.output
    }

    public func stop(_ node: NodeSpec, mode: StopMode = .fast) async throws(ClusterError) {
        guard try await postmasterPID(node) != nil else { return }
        let arguments = [binary("pg_ctl"), layout.dataDir(node.name), mode.rawValue]
        let result = try await host(node).run(["/bin/sh", "-c", Self.stopAndWait, "sh"] + arguments)
        if !result.succeeded, try await postmasterPID(node) != nil {
            throw ClusterError(
                "\(node.name): the server did not stop (exit \(result.status))",
                details: ["command: \(ShellQuote.line([binary("pg_ctl"), "-D", arguments[1], "-m", mode.rawValue, "stop"]))"]
                    + result.output.split(whereSeparator: \.isNewline).suffix(5).map { "| " + $0 })
        }
    }

    /// The last lines of a node's server log, to show beside a failure.
    public func serverLog(_ node: NodeSpec, lines: Int = 15) async -> [String] {
        guard let result = try? await host(node).run(["/usr/bin/tail", "-n", String(lines), layout.logFile(node.name)]),
            result.succeeded
        else { return [] }
        return result.output.split(whereSeparator: \.isNewline).map(String.init)
    }

    // MARK: Files

    /// The node's folders on its host, owned by the server's user; the data folder 0700.
    /// For backend local, local.dir itself first. With TLS, the node's certificate too when
    /// it has none yet (a new node, or one whose files were removed).
    public func prepareDirectories(_ node: NodeSpec) async throws(ClusterError) {
        if spec.backend == .local { try makeRoot() }
        let host = self.host(node)
        try await host.makeDirectories([
            (layout.nodeDir(node.name), 0o750), (layout.socketDir(node.name), 0o750), (layout.dataDir(node.name), 0o700),
        ])
        if spec.tls.enabled, try await !host.exists(layout.serverCertificate(node.name)) {
            try await installTLS(node)
        }
    }

    /// local.dir on this machine: credentials, state, history (and for backend local, the nodes).
    public func makeRoot() throws(ClusterError) {
        try FolderCreation.make(layout.root, what: "local.dir")
        // The server's user must be able to enter it; the secrets inside are 0600 each.
        _ = chmod(layout.root, 0o755)
    }

    /// The replication password file walreceivers and pg_basebackup read (0600, server's
    /// user), on every host.
    public func writePassfile(_ credentials: Credentials) async throws(ClusterError) {
        let hosts = distinctHosts.map(\.host)
        let serverRoot = spec.backend == .ssh ? layout.serverRoot : nil
        let passfile = layout.passfile
        let written = await parallel(hosts) { host throws(ClusterError) in
            if let serverRoot { try await host.makeDirectories([(serverRoot, 0o750)]) }
            try await host.writeFile(passfile, credentials.replicationPassfile)
        }
        if let first = written.compactMap(\.1).first { throw first }
    }

    /// Puts the rendered postgresql.conf and pg_hba.conf in a node's data folder and, when
    /// `upstream` is given, standby.signal and standby.conf following it. Settings a copy
    /// brought along from another node (pg_basebackup and pg_rewind copy
    /// postgresql.auto.conf) that would point it elsewhere are removed.
    public func placeConfig(_ node: NodeSpec, following upstream: NodeSpec?) async throws(ClusterError) {
        let files = try await configFiles(node, following: upstream)
        var arguments = ["/bin/sh", "-c", Self.place, "sh", "\(layout.dataDir(node.name))/postgresql.auto.conf"]
        for (path, text) in files.written { arguments += [path, "600", text] }
        arguments += ["--"] + files.removed
        try await host(node).check(arguments, what: "\(node.name): writing its configuration")
        // archive_command and restore_command read pgBackRest's configuration.
        if spec.backup != nil {
            try await BackupRepository(cluster: self).prepareNodeHost(host(node))
        }
    }

    /// A node's rendered configuration files in its data folder (path, text), and those a
    /// primary must not have: standby.conf and standby.signal follow `upstream` when given.
    /// A standby's postgresql.conf keeps the settings PostgreSQL needs at least as high as on
    /// its primary (``HotStandbyFloor``) at the upstream's live values when the spec's are
    /// lower: a spec edit that lowers one waits for `apply`, which lowers the primary first;
    /// `start`, `rejoin` and the watcher would otherwise render a standby that cannot start.
    func configFiles(_ node: NodeSpec, following upstream: NodeSpec?) async throws(ClusterError)
        -> (written: [(String, String)], removed: [String])
    {
        let data = layout.dataDir(node.name)
        var postgresqlConf = try renderer.postgresqlConf(node)
        if let upstream, !Self.placesAsRendered {
            let raised = HotStandbyFloor.raise(postgresqlConf, to: await liveFloors(upstream))
            for (name, value) in raised.changes {
                Console.progress("[\(node.name)] \(name) = \(value) as on \(upstream.name): the spec's lower value waits for pgcluster apply")
            }
            postgresqlConf = raised.text
        }
        let files = [("\(data)/postgresql.conf", postgresqlConf), ("\(data)/pg_hba.conf", try renderer.hbaConf(node))]
        let (conf, signal) = ("\(data)/standby.conf", "\(data)/standby.signal")
        guard let upstream else { return (files, [conf, signal]) }
        return (files + [(conf, try renderer.standbyConf(node, upstream: upstream)), (signal, "")], [])
    }

    /// `apply` places the spec's values as rendered: it rolls a lowered one out itself, the
    /// primary first (a floor would keep the standbys at the old value).
    @TaskLocal public static var placesAsRendered = false

    /// The live values of ``HotStandbyFloor/settings`` on `upstream`; none when it does not
    /// answer (a standby set to follow a primary that is down is started as rendered).
    func liveFloors(_ upstream: NodeSpec) async -> [String: Int] {
        guard let credentials = try? Credentials.stored(spec: spec) else { return [:] }
        let ops = ServerOps(spec: spec, credentials: credentials, templates: renderer.templates)
        let names = HotStandbyFloor.settings.map(ConfigText.sqlLiteral).joined(separator: ", ")
        guard let result = try? await ops.execute(upstream, ["SELECT name, setting FROM pg_settings WHERE name IN (\(names))"], timeout: 3)
        else { return [:] }
        var values: [String: Int] = [:]
        for row in result.rows {
            if let name = row.first.flatMap({ $0 }), let value = row.dropFirst().first.flatMap({ $0 }).flatMap({ Int($0) }) { values[name] = value }
        }
        return values
    }

    /// Shell, for a script run with `set -e`: writes each `PATH MODE TEXT` triple at the
    /// front of the arguments whole (a temporary file beside it, its mode, a rename), up to
    /// a `--` or the end, shifting them off. Sets umask 077, so that a file made 0600 needs
    /// no chmod: on a switchover's path every program started counts (`printf` is a builtin,
    /// `mv` the one program per file).
    static let writeEach = #"""
        umask 077
        while [ "$#" -ge 3 ] && [ "$1" != "--" ]; do
          tmp="$1.tmp.$$"
          printf '%s' "$3" >"$tmp"
          [ "$2" = 600 ] || chmod "$2" "$tmp"
          mv -f "$tmp" "$1"
          shift 3
        done

        """#

    /// One round trip on the node's host, as the server's user: writes each `PATH MODE
    /// TEXT` file atomically (temporary file, mode, rename), removes the paths after `--`,
    /// and drops from postgresql.auto.conf (`$1`) the settings that say whom to follow or
    /// wait for: a copy brought them from the node it came from.
    static let place = #"""
        set -e
        auto=$1; shift

        """# + writeEach + rewriteAutoConf + #"""
        shift
        [ $# -eq 0 ] || rm -f -- "$@"
        [ ! -f "$auto" ] || rewrite_auto "$auto" '\#(copiedSettings)'
        """#

    /// The settings of postgresql.auto.conf, as a `|`-list, that say whom to follow or wait
    /// for: a copy (pg_basebackup, pg_rewind) brings them from the node it came from.
    static let copiedSettings = "primary_conninfo|primary_slot_name|synchronous_standby_names"

    /// Shell: `rewrite_auto FILE SETTINGS [LINE]` drops from postgresql.auto.conf the
    /// settings matching the `|`-list SETTINGS, adds LINE when given, and replaces the file
    /// whole (only when it changed).
    static let rewriteAutoConf = #"""
        rewrite_auto() {
          tmp="$1.tmp.$$"
          grep -v -E "^[[:space:]]*($2)[[:space:]]*=" "$1" >"$tmp" || true
          [ -z "${3:-}" ] || printf '%s\n' "$3" >>"$tmp"
          if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else chmod 600 "$tmp"; mv -f "$tmp" "$1"; fi
        }

        """#

    /// Removes what pgcluster created for a node (data folder, log, socket folder, initdb's
    /// password file), then the node's folder when nothing else is left in it. Files
    /// pgcluster did not create are kept: their paths are returned.
    @discardableResult
    public func removeNodeFiles(_ node: NodeSpec) async throws(ClusterError) -> [String] {
        try await host(node).remove(layout.nodeFiles(node.name))
        return try await removeFolderIfEmpty(layout.nodeDir(node.name), on: host(node))
    }

    /// Removes `folder` when it is empty; otherwise returns the paths of what is in it.
    func removeFolderIfEmpty(_ folder: String, on host: any Host) async throws(ClusterError) -> [String] {
        guard let entries = try await host.list(folder) else { return [] }
        if entries.isEmpty {
            try await host.remove([folder])
            return []
        }
        return entries.sorted().map { "\(folder)/\($0)" }
    }

    /// Makes sure a node that does not answer can never come back as a primary by itself:
    /// kills its postmaster and every child of it (found by the data directory's pid file,
    /// never by name). Returns the PIDs killed.
    @discardableResult
    public func killServer(_ node: NodeSpec) async throws(ClusterError) -> [Int32] {
        try await host(node).killServer(dataDir: layout.dataDir(node.name))
    }
}
