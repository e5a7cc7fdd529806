import Foundation

/// A change of primary, as hooks see it in their environment.
public struct RoleChange: Sendable, Equatable {
    public enum Reason: String, Sendable {
        case failover, switchover
    }

    public var cluster: String
    public var newPrimary: String
    public var oldPrimary: String?
    public var timeline: Int?
    public var reason: Reason
    /// Who acted: `watch`, or nil for a person's command.
    public var by: String?

    public init(cluster: String, newPrimary: String, oldPrimary: String?, timeline: Int?, reason: Reason, by: String? = nil) {
        self.cluster = cluster
        self.newPrimary = newPrimary
        self.oldPrimary = oldPrimary
        self.timeline = timeline
        self.reason = reason
        self.by = by
    }

    /// The variables a hook gets, added to pgcluster's own environment.
    public var environment: [String: String] {
        [
            "PGCLUSTER_CLUSTER": cluster,
            "PGCLUSTER_NEW_PRIMARY": newPrimary,
            "PGCLUSTER_OLD_PRIMARY": oldPrimary ?? "",
            "PGCLUSTER_TIMELINE": timeline.map(String.init) ?? "",
            "PGCLUSTER_REASON": reason.rawValue,
            "PGCLUSTER_BY": by ?? "command",
        ]
    }
}

/// Runs the spec's `hooks` after a change of primary: `onRoleChange` after every one, then
/// `onFailover` after a failover. Each runs on this machine, from the spec's folder, as
/// pgcluster's user, within `hooks.timeout` (then it and its process group are killed);
/// its output goes to the progress stream (the watcher's log). A hook that fails, hangs or
/// cannot start is reported; it never undoes nor holds up the change, which is done.
public enum Hooks {
    /// Returns one warning per hook that did not succeed.
    public static func run(_ event: RoleChange, spec: ClusterSpec, runner: any CommandRunning = LocalRunner()) async -> [String] {
        var hooks: [(String, HookSettings.Program)] = []
        if let program = spec.hooks.onRoleChange { hooks.append(("onRoleChange", program)) }
        if event.reason == .failover, let program = spec.hooks.onFailover { hooks.append(("onFailover", program)) }
        var warnings: [String] = []
        for (name, program) in hooks {
            if let warning = await run(name, program, event: event, spec: spec, runner: runner) { warnings.append(warning) }
        }
        return warnings
    }

    /// How many of a hook's last output lines reach the log.
    static let linesShown = 40

    static func run(
        _ name: String, _ program: HookSettings.Program, event: RoleChange, spec: ClusterSpec, runner: any CommandRunning
    ) async -> String? {
        let argv = program.argv
        let folder = (spec.file as NSString).deletingLastPathComponent
        // Where the new primary listens, for a hook that re-points a pooler or a proxy.
        var environment = event.environment
        if let node = spec.node(named: event.newPrimary) {
            environment["PGCLUSTER_NEW_PRIMARY_HOST"] = node.host
            environment["PGCLUSTER_NEW_PRIMARY_PORT"] = String(node.port)
        }
        let command = Command(
            argv[0], Array(argv.dropFirst()), environment: environment,
            workingDirectory: folder.isEmpty ? nil : folder, timeout: spec.hooks.timeout)
        let started = ContinuousClock.now
        let result: CommandResult
        do {
            result = try await runner.run(command)
        } catch {
            // Killed at its timeout (or cancelled): the last lines it printed say where it hung.
            for line in error.details where line.hasPrefix("| ") {
                Console.progress("[hook \(name)] \(line.dropFirst(2))")
            }
            let kept = event.reason == .failover ? "the failover stands" : "the switchover stands"
            return "hook \(name) failed: \(error.message); \(kept)"
        }
        // Its last lines only: a hook's chatter must not flood the watcher's log.
        let lines = result.output.split(whereSeparator: \.isNewline)
        if lines.count > Self.linesShown {
            Console.progress("[hook \(name)] (\(lines.count - Self.linesShown) earlier lines of output not shown)")
        }
        for line in lines.suffix(Self.linesShown) {
            Console.progress("[hook \(name)] \(line)")
        }
        let took = ContinuousClock.now - started
        let seconds = String(format: "%.2f", Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18)
        guard result.succeeded else {
            return "hook \(name) failed (exit \(result.status), \(seconds) s): \(event.newPrimary) is the primary all the same;"
                + " check the hook (\(ShellQuote.line(argv)))"
        }
        Console.progress("[hook \(name)] done in \(seconds) s")
        return nil
    }
}

extension Failover {
    /// The spec's hooks, after the failover is recorded; what failed joins the warnings.
    func runHooks(_ result: inout Report) async {
        let event = RoleChange(
            cluster: spec.name, newPrimary: result.candidate, oldPrimary: result.oldPrimary, timeline: result.timeline,
            reason: .failover, by: by)
        if let hooksElsewhere {
            hooksElsewhere(event)
            return
        }
        result.warnings += await Hooks.run(event, spec: spec)
    }
}

/// The watcher's hooks, one after another in the order of the role changes, beside its
/// loop: a hook may take up to its timeout (a VIP moved over ssh, a pager), and meanwhile
/// the loop goes on probing, serving the health endpoints and failing over again if need be.
/// What failed is logged through `report`. ``drain()`` waits for the queue (a watcher that
/// stops lets its last hooks end first).
public final class HookQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var last: Task<Void, Never>?
    private let report: @Sendable ([String]) -> Void

    public init(report: @escaping @Sendable ([String]) -> Void) { self.report = report }

    /// Runs `event`'s hooks after those queued before it.
    public func add(_ event: RoleChange, spec: ClusterSpec) {
        let report = report
        lock.withLock {
            let previous = last
            last = Task {
                await previous?.value
                report(await Hooks.run(event, spec: spec))
            }
        }
    }

    public func drain() async {
        let pending = lock.withLock { last }
        await pending?.value
    }
}
