import ArgumentParser
import Foundation
import PGClusterKit

extension PGCluster {
    struct Destroy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop every server of the cluster and remove its data, logs and credentials.",
            discussion: """
                Removes only what pgcluster created under local.dir (data folders, logs, sockets, \
                credentials, pgpass, state and history); any other file there is kept and named. Needs --yes. \
                A compose project's own watcher (compose.watcher) is stopped first; while any other \
                `pgcluster watch` of the cluster runs (it leads: local.dir's watch lock, or etcd's \
                leader key), destroy refuses (exit 2) and names it: stop it first. \
                With backup: the backups stay: first the primary's last WAL goes to the archive \
                (`pgbackrest check`; a failure is a warning, as is a crashed primary whose last WAL \
                cannot be archived), so that `restore -f SPEC --to latest --in-place --yes` makes the \
                cluster again with its last commit (or --into NEW-SPEC a new one), also once \
                local.dir is gone (the restored roles get new passwords).
                """)

        @OptionGroup var options: SpecOptions

        @Flag(help: "Yes, erase the cluster's data.")
        var yes = false

        func validate() throws {
            if !yes { throw ValidationError("destroy erases every node's data: add --yes to confirm") }
        }

        func run() async throws {
            try await execute {
                let spec = try options.load()
                if spec.backend == .compose {
                    // The project's own watcher holds the lock while it runs; `down` would stop it anyway.
                    await ComposeCluster(spec: spec, templates: try options.templateSet()).stopWatcher()
                }
            }
            try await executeLocked(options, "destroy") { spec in
                // A watcher left running would find no server and log its refusal for ever.
                if let watcher = await Stores.of(spec).leadership(id: "destroy-\(getpid())", ttl: spec.watch.leaseTTL).leader() {
                    throw ClusterError(
                        "pgcluster watch (\(watcher)) watches cluster \(spec.name): stop it first; nothing was removed",
                        exitCode: .refused)
                }
                var kept: [String] = []
                if spec.backend == .compose {
                    try await ComposeCluster(spec: spec, templates: try options.templateSet()).destroy()
                } else {
                    kept = try await ClusterDestroy(cluster: try HostCluster(spec: spec, templates: options.templateSet())).run()
                }
                if kept.isEmpty {
                    Console.out("cluster \(spec.name) destroyed: \(spec.local.dir) cleaned")
                } else {
                    Console.out("cluster \(spec.name) destroyed; kept \(kept.count) path(s) pgcluster did not create:")
                    Console.out(kept.map { "  " + $0 }.joined(separator: "\n"))
                }
                if let backup = spec.backup, spec.backend != .compose, backup.repoHost != nil || backup.holdsBackupsHere(of: spec.name) {
                    // (From a repository host, pgcluster needs the local.dir just removed: its ssh key.)
                    Console.out(
                        backup.repoHost.map { "its backups stay in \(backup.repo) on \($0)" }
                            ?? "its backups stay in \(backup.repo): `pgcluster restore -f \(spec.file) --to latest --in-place --yes` "
                            + "makes the cluster again from them (--into NEW-SPEC: a new cluster)")
                }
            }
        }
    }
}
