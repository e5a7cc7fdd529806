import ArgumentParser
import Foundation
import Logging
import PGClusterKit
import ServiceLifecycle

extension PGCluster {
    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Automatic failover: watch the cluster in the foreground until SIGTERM or SIGINT.",
            discussion: """
                Every watch.interval it observes each node and takes at most one step, holding the \
                cluster lock (while another command holds it, it only observes); it also holds one idle \
                connection to the primary, and probes at once when that connection drops (a crash). A primary whose \
                postmaster is gone (its host answers) is failed over at once; one that does not answer \
                only once it stayed lost for watch.failoverAfter and no standby streams from it any more. \
                The failover's rules hold: no failover when the quorum cannot be proven (never \
                --allow-data-loss), and with asynchronous replication only when the old primary is \
                proven stopped or fenced; a refusal is logged each interval. A failed primary that \
                comes back is rejoined (watch.rejoin: auto) or kept stopped (manual), never a second \
                primary; a stopped standby is started. While a rejoin runs (pg_rewind, or pg_basebackup when \
                that fails: no deadline), it keeps observing, and stops the rejoin (its program killed) \
                when a failover, a fence or lowering is due; the node is rejoined after. durability: available empties \
                synchronous_standby_names while no synchronous standby streams, and restores it. \
                `pgcluster pause` makes it observe and report only. One line per event on stderr \
                (--json: one JSON object per line); failovers go to history with "by": "watch". \
                SIGTERM or SIGINT stops it between steps, exit 0. SIGHUP, or an edit of the spec \
                file (its modification time, looked at each interval), reloads the spec between \
                steps: validated first, a bad one is logged and the old one kept; a node that \
                `apply` added is watched from then on and can be failed over to. name, backend, \
                local.dir, store and watch.leaseTTL need a restart of the watcher. With watch.http it also serves \
                Patroni's health endpoints, node i (spec order) on port + i: /primary /leader \
                /replica[?lag=16MB|5s] /read-only /sync /read-only-sync /quorum /read-only-quorum /async \
                /health /liveness /readiness (200 or 503), /cluster (status --json with "leader") and \
                /metrics (Prometheus), also while paused or not leading; a reload that reorders, adds \
                or removes nodes moves the ports with them.
                """)

        @OptionGroup var options: SpecOptions

        @Flag(help: "Log one JSON object per line: time, event, node, details.")
        var json = false

        func run() async throws {
            // A reload (SIGHUP) sent while the watcher starts must not end it (SIGHUP's default
            // action): ignored from the first moment, taken over by the spec reloader later.
            signal(SIGHUP, SIG_IGN)
            // No terminal's Ctrl-C to share with its children: each gets a process group of its
            // own, so a step the watcher cancels ends with all it started.
            Spawn.ownGroupForEveryChild = true
            try await execute(passesOnInterrupts: false) {
                let spec = try options.load()
                let credentials = try ClusterAccess.credentials(spec)
                let control = try ClusterAccess.control(spec, options)
                let logger = WatchLogHandler.logger(format: json ? .json : .text)
                // What the shared steps print becomes events of this one logger.
                Console.redirect = { text, isWarning in
                    logger.log(level: isWarning ? .warning : .info, "\(text)", metadata: ["event": .string(isWarning ? "warning" : "progress")])
                }
                var quiet = logger
                quiet.logLevel = .warning
                let reload: @Sendable () throws(ClusterError) -> SpecReloader.World = { () throws(ClusterError) in
                    let spec = try options.load()
                    return .init(control: try ClusterAccess.control(spec, options), credentials: try ClusterAccess.credentials(spec))
                }
                var watcher = Watcher(control: control, credentials: credentials, logger: logger, reload: reload)
                var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
                if let address = spec.watch.http {
                    let health = HealthState(spec: spec)
                    watcher.health = health
                    let server = HealthServer(state: health, address: address, logger: logger)
                    try server.checkPorts()
                    // Endpoints that fail end the watcher between steps (then systemd starts it
                    // again), never by cancelling it: a cancelled step is killed where it stands.
                    services.append(
                        .init(service: server, successTerminationBehavior: .gracefullyShutdownGroup,
                            failureTerminationBehavior: .gracefullyShutdownGroup))
                    let ports = spec.nodes.enumerated().map { "\($1.name) \(address.port(forNode: $0))" }.joined(separator: ", ")
                    logger.info("health endpoints on \(address.host): \(ports)", metadata: ["event": "http"])
                }
                services.insert(.init(service: watcher), at: 0)
                let group = ServiceGroup(
                    configuration: ServiceGroupConfiguration(
                        services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: quiet))
                try await group.run()
            }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Maintenance: `pgcluster watch` observes and reports, and changes nothing, until resume.")

        @OptionGroup var options: SpecOptions

        func run() async throws {
            try await executeLocked(options, "pause") { spec in
                try await ClusterRecord.savePaused(spec: spec, true)
                Console.out("cluster \(spec.name) paused: watch observes and reports only (pgcluster resume)")
            }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End `pause`: `pgcluster watch` acts again.")

        @OptionGroup var options: SpecOptions

        func run() async throws {
            try await executeLocked(options, "resume") { spec in
                try await ClusterRecord.savePaused(spec: spec, false)
                Console.out("cluster \(spec.name) resumed: watch acts again")
            }
        }
    }
}
