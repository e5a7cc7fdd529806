import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Quorum: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make commits wait for standbys: ANY k (quorum), FIRST k (priority) or async.",
            discussion: """
                Default: --any 1 over every standby that answers. On the live primary, ALTER SYSTEM sets \
                synchronous_commit = on and synchronous_standby_names, pg_reload_conf() applies it, and \
                the command waits until pg_stat_replication shows the new sync_state (quorum for ANY; \
                sync and potential for FIRST; async). The mode is remembered: failover, switchover and \
                rejoin keep it. FIRST lists standbys by failover priority, highest first.
                Refuses (exit 2) a count larger than the standbys listed, and fewer of them streaming \
                than the count (commits would wait) unless --force.
                """)

        @OptionGroup var options: SpecOptions

        // `.unconditional`: `--first -1` is a count to refuse by name, not a missing value.
        @Option(
            parsing: .unconditional,
            help: ArgumentHelp("Quorum commit: every commit waits for any N of the listed standbys.", valueName: "n"))
        var any: Int?

        @Option(
            parsing: .unconditional,
            help: ArgumentHelp("Priority commit: every commit waits for the first N connected standbys of the list.", valueName: "n"))
        var first: Int?

        @Flag(help: "Asynchronous replication: commits never wait for standbys.")
        var async = false

        @Option(
            help: ArgumentHelp("Comma-separated standbys to list (default: every standby that answers).", valueName: "a,b"),
            transform: {
                $0.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingCharacters(in: .whitespaces) }
            })
        var standbys: [String]?

        @Flag(help: "Set it even when fewer standbys stream than the mode needs (commits wait meanwhile).")
        var force = false

        @Option(help: "Seconds to wait for pg_stat_replication to show the new mode.")
        var timeout: Double = 30

        @Flag(help: "Print the result as JSON.")
        var json = false

        func validate() throws {
            let chosen = [any != nil, first != nil, async].filter { $0 }.count
            if chosen > 1 { throw ValidationError("give one of --any N, --first N and --async") }
            if let n = any ?? first, n < 1 {
                throw ValidationError("--\(any != nil ? "any" : "first") needs a count of at least 1, not \(n)")
            }
            if let standbys {
                if standbys.allSatisfy(\.isEmpty) {
                    throw ValidationError("--standbys needs at least one standby name (such as --standbys db_1,db_2)")
                }
                if standbys.contains("") {
                    throw ValidationError("--standbys: an empty name in the list (two commas in a row, or one at an end)")
                }
            }
        }

        var mode: SynchronousMode {
            if async { return .async }
            if let first { return .first(first) }
            return .any(any ?? 1)
        }

        func run() async throws {
            try await executeLocked(options, "quorum") { spec in
                let credentials = try ClusterAccess.credentials(spec)
                let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
                let plan = try QuorumPlan.make(
                    spec: spec, observations: observations, mode: mode, requested: standbys, force: force)
                if !plan.leftOut.isEmpty {
                    Console.warn("not listed, because they do not answer: \(plan.leftOut.joined(separator: ", ")); run quorum again once they are back")
                }
                if plan.mode != .async && plan.streaming.count < plan.mode.count {
                    Console.warn("only \(plan.streaming.count) listed standby(s) stream: commits on \(plan.primary) WAIT until \(plan.mode.count) do")
                }
                let primary = spec.node(named: plan.primary)!
                let change = QuorumChange(
                    credentials: credentials, primary: primary, mode: plan.mode, standbys: plan.standbys,
                    timeout: timeout, intent: spec)
                Console.progress("[\(primary.name)] synchronous_standby_names = '\(change.value)'")
                let rows = try await change.apply()
                try await ClusterRecord.saveSynchronous(
                    spec: spec, primary: plan.primary, mode: plan.mode, standbys: standbys == nil ? nil : plan.standbys,
                    applied: (plan.mode, plan.standbys))
                if json {
                    Console.out(
                        try JSONOutput.encode(
                            QuorumResult(
                                primary: plan.primary, synchronousStandbyNames: change.value, mode: plan.mode.description,
                                standbys: plan.standbys, leftOut: plan.leftOut,
                                replication: rows.map { .init(standby: $0.applicationName, state: $0.state, sync: $0.syncState) })))
                    return
                }
                Console.out("\(plan.primary): synchronous_standby_names = '\(change.value)', synchronous_commit = on")
                Console.out(TextTable.render([["STANDBY", "STATE", "SYNC"]] + rows.map { [$0.applicationName, $0.state, $0.syncState] }))
            }
        }
    }
}

/// `quorum --json`: what was set, and pg_stat_replication as the command saw it last.
struct QuorumResult: Encodable {
    struct Row: Encodable {
        var standby: String
        var state: String
        var sync: String
    }

    var primary: String
    var synchronousStandbyNames: String
    var mode: String
    var standbys: [String]
    /// Standbys not listed because they did not answer.
    var leftOut: [String]
    var replication: [Row]
}
