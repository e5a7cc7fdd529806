import ArgumentParser
import Foundation
import PGClusterKit

extension PGCluster {
    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a pgBackRest backup of the cluster (spec section backup:).",
            discussion: """
                Creates the stanza (named after the cluster) when the repository has none, runs \
                `pgbackrest check` (archive_command works, WAL reaches the repository), then the \
                backup: from a streaming standby when one streams (--backup-standby), otherwise from \
                the primary. Progress goes to stderr (bytes, share, rate, an estimate: every 2 s on \
                a terminal, 10 s otherwise); the result to stdout. Takes no cluster lock: failover \
                never waits for a backup. Backend local (the repository on this machine) and ssh \
                (on backup.repoHost, where the backup runs; pgBackRest reaches the nodes by ssh).
                """)

        @OptionGroup var options: SpecOptions

        @Option(help: "full, diff (changes since the last full) or incr (since the last backup).")
        var type: String = "full"

        @Flag(help: "Print the result as JSON.")
        var json = false

        func validate() throws {
            guard ClusterBackup.Kind(rawValue: type) != nil else {
                throw ValidationError("--type must be full, diff or incr, not '\(type)'")
            }
        }

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let cluster = try HostCluster(spec: spec, templates: options.templateSet())
                let backup = try ClusterBackup(
                    cluster: cluster, credentials: try ClusterAccess.credentials(spec), kind: ClusterBackup.Kind(rawValue: type)!)
                let report = try await backup.run()
                Console.out(json ? try JSONOutput.encode(report) : report.text)
            }
        }
    }

    struct Backups: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the cluster's pgBackRest backups: label, type, times, sizes, WAL range.",
            discussion: "Times are UTC. From `pgbackrest info --output=json`.")

        @OptionGroup var options: SpecOptions

        @Flag(help: "Print the catalog as JSON.")
        var json = false

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let repository = try BackupRepository(cluster: try HostCluster(spec: spec, templates: options.templateSet()))
                let catalog = try await repository.leavingNoLocalDir { () async throws(ClusterError) in try await repository.catalog() }
                // Another cluster's backups, listed as this one's, would mislead: said on stderr.
                if let credentials = try? Credentials.stored(spec: spec),
                    let primary = await Observer(credentials: credentials).observeAll(spec.nodes).first(where: \.isPrimary),
                    let foreign = await repository.foreignStanza(catalog, primary: primary.node, credentials: credentials)
                {
                    Console.warn(foreign.message + ": these are not this cluster's backups")
                }
                Console.out(json ? try JSONOutput.encode(catalog) : catalog.text)
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Point-in-time recovery from the cluster's backups, into a new cluster or in place.",
            discussion: """
                The primary of the --into spec (or, with --in-place --yes, of this spec, after every \
                node was stopped and its data moved aside) is restored by pgBackRest from the newest backup that \
                ended before the target, recovers to it (--to latest: to the end of the archive), and \
                is promoted; its standbys are then cloned as init does. TIME is such as \
                '2026-12-05 17:30:00.25+00' (no zone: this machine's local time); LSN such as 0/3000060. \
                Only a backup on the history of the archive's newest timeline is taken (an in-place \
                restore to an earlier point leaves newer backups on the old timeline). Refused before \
                anything is written: a target before the first backup, a time in the future, an LSN \
                past the live primary's WAL, a missing repository, a repository whose stanza is of \
                another database system, an --into spec whose nodes already hold data. With --into, \
                the live cluster is only read (its repository, a commit of pgcluster's own so that a \
                recent time can be reached, and a `pgbackrest check` that archives its current WAL). \
                With --in-place, the old data is removed once every standby streams; a restore that \
                fails before its primary is promoted puts every node's own data back and starts the \
                nodes that ran. From a cluster of backend local, \
                --into takes a spec of backend local (the repository is a folder here). From a cluster \
                of backend ssh, --in-place restores on the primary's host; --into takes a spec of \
                backend local or ssh and restores on its primary's host (here, or another host), reading \
                backup.repoHost by ssh with the cluster's own key, copied there for the restore and \
                removed once its primary is promoted (or the restore fails). \
                A cluster whose local.dir is gone (destroyed: destroy keeps the backups and archives \
                the last WAL first; or lost with its machine) is restored from a repository folder \
                on this machine all the same: --in-place --yes makes it again under its own name, \
                archiving into the same stanza; --into makes a new one. Its passwords went with \
                local.dir, so the restored roles (superuser, replication, app) get new ones, set over \
                the primary's own socket as the server's OS user once it is promoted.
                """)

        @OptionGroup var options: SpecOptions

        @Option(help: ArgumentHelp("latest, a time, or an LSN.", valueName: "target"))
        var to: String

        @Option(help: ArgumentHelp("The spec of the new cluster (its own name, ports and local.dir).", valueName: "spec"))
        var into: String?

        @Flag(help: "Replace this cluster's data instead (needs --yes): every node stops, its data is kept aside until the restored cluster streams, then removed.")
        var inPlace = false

        @Flag(help: "With --in-place: yes, replace the cluster's data.")
        var yes = false

        @Flag(help: "Print the result as JSON.")
        var json = false

        func validate() throws {
            guard RestoreTarget(to) != nil else {
                throw ValidationError("--to must be latest, a time such as '2026-12-05 17:30:00+00', or an LSN such as 0/3000060, not '\(to)'")
            }
            guard (into != nil) != inPlace else { throw ValidationError("give exactly one of --into SPEC and --in-place") }
        }

        func run() async throws {
            if inPlace {
                try await executeLocked(options, "restore --in-place") { spec in
                    guard yes else {
                        throw ClusterError.refused(
                            "restore --in-place stops every node of \(spec.name) and replaces its data with the backup's; add --yes to do it")
                    }
                    let restore = try ClusterRestore(
                        inPlaceOf: try HostCluster(spec: spec, templates: options.templateSet()), to: RestoreTarget(to)!)
                    let report = try await restore.run()
                    Console.out(json ? try JSONOutput.encode(report) : report.text)
                }
                return
            }
            try await execute {
                let spec = try options.load()
                var intoOptions = options
                intoOptions.spec = into!
                let targetSpec = try intoOptions.load()
                let restore = try ClusterRestore(
                    source: try HostCluster(spec: spec, templates: options.templateSet()),
                    target: try HostCluster(spec: targetSpec, templates: options.templateSet()), to: RestoreTarget(to)!)
                let report = try await Stores.of(targetSpec).holdingLock(command: "restore") { try await restore.run() }
                Console.out(json ? try JSONOutput.encode(report) : report.text)
            }
        }
    }
}
