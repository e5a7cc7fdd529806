import Foundation
import Logging
import ServiceLifecycle

/// `pgcluster watch`: each `interval`, take the cluster lock if free, observe every node,
/// ask ``WatchDecision`` for one action and carry it out through the same code as the
/// commands (``Failover``, ``Rejoin``, ``StartNodes``, ``QuorumChange``). While another
/// command holds the lock it only observes. A graceful shutdown (SIGTERM, SIGINT) is
/// honoured between steps, never in the middle of one.
public struct Watcher: Service {
    /// The spec, backend and credentials in use; replaced between ticks on SIGHUP or an edit
    /// of the spec file (``SpecReloader``).
    public let reloader: SpecReloader
    public var control: any ServerControl { reloader.current.control }
    public var credentials: Credentials { reloader.current.credentials }
    public let logger: Logger
    /// Where the cluster lock, the state and the leadership live (local.dir or etcd).
    public let store: any ClusterStore
    /// Only the leader acts: with the files store the one watcher of local.dir; with etcd the
    /// holder of the leader key's lease, across machines.
    public let leadership: any Leadership
    /// How this watcher is named in the leader key: host and PID.
    public let id: String
    /// With `watch.http`: where each tick's observations go for the health endpoints
    /// (``HealthServer``); nil without.
    public var health: HealthState?
    /// Readiness and the watchdog for a systemd unit with `Type=notify` (no-op otherwise).
    public var notifier = SystemdNotifier()
    /// What was last said about the spec against the recorded members.
    let membership = LastSaid()
    /// The hooks of its failovers, run beside the loop (a hook's timeout never holds a tick).
    let hooks: HookQueue

    /// - Parameter reload: reads the spec file again and builds its backend and credentials;
    ///   nil: the spec is never reloaded.
    public init(
        control: any ServerControl, credentials: Credentials, logger: Logger,
        reload: (@Sendable () throws(ClusterError) -> SpecReloader.World)? = nil
    ) {
        let world = SpecReloader.World(control: control, credentials: credentials)
        reloader = SpecReloader(world, reloads: reload != nil) { () throws(ClusterError) in try reload?() ?? world }
        self.logger = logger
        hooks = HookQueue { [logger] warnings in
            for warning in warnings { logger.event("warning", warning, level: .warning) }
        }
        store = Stores.of(control.spec)
        id = "\(ProcessInfo.processInfo.hostName):\(getpid())"
        leadership = store.leadership(id: id, ttl: control.spec.watch.leaseTTL)
    }

    var spec: ClusterSpec { control.spec }
    var settings: WatchSettings { spec.watch }
    /// How long one probe waits for a node: short, so a silent node costs little of a tick.
    var probeTimeout: Double { min(2, max(0.5, settings.interval)) }

    public func run() async throws {
        // SIGHUP is taken (it no longer ends the process) before "start" says the watcher
        // runs: a reload sent the moment it started must not kill it (a CI run did that).
        reloader.listenForHangup()
        logger.event(
            "start",
            "watching cluster \(spec.name) (\(spec.nodes.count) nodes): every \(settings.interval) s, failover after "
                + "\(settings.failoverAfter) s, durability \(settings.durability.rawValue), rejoin \(settings.rejoin.rawValue)")
        let start = ContinuousClock.now
        let elapsed = { () -> Double in
            let d = ContinuousClock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        var memory = WatchDecision.Memory()
        var lastKey: String?
        // The primary's connection dropping wakes the loop at once (docs/ARCHITECTURE.md,
        // "watch"): a crash is noticed in milliseconds, not at the next probe.
        let wake = WakeSignal()
        let logger = logger
        let detector = DropDetector(credentials: credentials) { name in
            logger.event("detected", node: name, "the connection to \(name) dropped: probing now")
            wake.signal()
        }
        defer { detector.stop() }
        // One connection per server across the ticks (docs/ARCHITECTURE.md, "One session per
        // server"): a probe is a query, not a handshake; a failover starts with the standbys'
        // sessions open.
        let sessions = ServerSessions()
        defer { sessions.end() }
        await ServerSessions.holding(sessions) {
            var ready = false
            // Cancelled (a service beside it in the group failed, such as the health endpoints):
            // stop between ticks too, rather than tick on without pauses.
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let began = elapsed()
                if reportReload(lastKey: &lastKey) {
                    sessions.closeIdle()
                    health?.follow(spec)
                    if health == nil, let http = spec.watch.http {
                        logger.event("http", "watch.http (\(http)) is served from the watcher's next start", level: .warning)
                    }
                }
                let acted = await tick(&memory, now: elapsed, lastKey: &lastKey, detector: detector)
                // systemd: up once the cluster was looked at, alive while the ticks turn.
                if !ready {
                    notifier.ready()
                    ready = true
                }
                notifier.watchdog()
                if Task.isShuttingDownGracefully { break }
                // A probe every interval (a slow probe eats into the pause); after an action, look
                // again at once: the next step may follow (fence, then failover).
                let pause = settings.interval - (elapsed() - began)
                if !acted, pause > 0 {
                    await cancelWhenGracefulShutdown { await wake.sleep(pause) }
                }
            }
        }
        // The last failover's hooks end first (each within hooks.timeout).
        await hooks.drain()
        notifier.stopping()
        await leadership.resign()
        logger.event("stop", "stopped between steps on SIGTERM or SIGINT")
    }

    /// One probe, one decision, at most one action. Returns whether it acted.
    func tick(
        _ memory: inout WatchDecision.Memory, now: () -> Double, lastKey: inout String?, detector: DropDetector? = nil
    ) async -> Bool {
        // Only the leader acts; the others observe and are ready to take over.
        guard await leadership.campaign() else {
            let leader = await leadership.leader()
            var nobody = "no leader (the store does not answer)"
            if leader == nil {
                // Say why: a store that refuses this watcher (a certificate, a password, a
                // permission) is mended by the operator, not by waiting.
                do {
                    _ = try await store.lockHolder()
                } catch {
                    nobody = "no leader (\(store.label) does not answer: \(error.message))"
                }
            }
            report(.wait("following: \(leader ?? nobody) leads; observing only"), lastKey: &lastKey)
            memory.primaryLostSince = nil
            memory.primaryLastAnswered = nil
            if let health {
                // The endpoints serve from this watcher's own probes while another leads.
                let began = now()
                let observations = await Observer(credentials: credentials, timeout: probeTimeout).observeAll(spec.nodes)
                let paused = (try? await store.loadState())?.paused
                health.observed(observations, probeSeconds: now() - began, paused: paused, leader: false)
            }
            return false
        }
        // etcd: look first, take the lock only to act (``ClusterStore/looksBeforeLocking``):
        // an idle watcher writes nothing. Files: the lock each probe, a flock.
        if store.looksBeforeLocking {
            let (generation, state): (LockGeneration, ClusterState?)
            do {
                (generation, state) = try await store.lockGenerationAndState()
            } catch {
                report(.refuse(error.message), lastKey: &lastKey)
                health?.ticked()
                return false
            }
            return await tickHolding(
                nil, &memory, now: now, lastKey: &lastKey, detector: detector, generation: generation, state: .some(state))
        }
        let lock = try? await store.acquireLock(command: "watch", wait: 0)
        HeldLocks.set(lock)
        let acted = await tickHolding(lock, &memory, now: now, lastKey: &lastKey, detector: detector)
        HeldLocks.set(nil)
        await lock?.release()
        return acted
    }

    /// One look and decision, and the action under `lock`. With `generation` (a store that
    /// looks before locking) the lock is taken only when the decision changes something, and
    /// only when nobody took it since `generation` was read: whoever did may have changed
    /// the servers while this look was made, so the look is made again (returns true: the
    /// next tick comes at once).
    func tickHolding(
        _ lock: (any HeldLock)?, _ memory: inout WatchDecision.Memory, now: () -> Double, lastKey: inout String?,
        detector: DropDetector? = nil, generation: LockGeneration? = nil, state read: ClusterState?? = nil
    ) async -> Bool {
        let state: ClusterState?
        do throws(ClusterError) {
            if let read {
                state = read
            } else {
                state = try await store.loadState()
            }
        } catch {
            report(.refuse(error.message), lastKey: &lastKey)
            health?.ticked()
            return false
        }
        // Watchers started from different copies of the spec would watch different nodes:
        // said once per change (and once when they agree again).
        let differs = Membership.disagreement(spec: spec.nodes, recorded: state?.nodes)
        if membership.changed(to: differs) {
            if let differs {
                logger.event("members", differs, level: .warning)
            } else {
                logger.event("members", "this watcher's spec and the cluster's recorded members agree again")
            }
        }
        let input = await observe(state: state, probedAt: now(), now: now)
        detector?.follow(input.nodes.first { $0.observation.isPrimary }?.observation.node)
        feedHealth(input)
        // The memory keeps what this look saw (since when the primary is silent), also when
        // the look is made again below: those were real answers, or their absence.
        let action = WatchDecision.next(input, memory: &memory, settings: settings)
        guard let generation, generation.holder == nil, action.changes else {
            return await act(action, input: input, state: state, lock: lock, generation: generation, &memory, now: now, lastKey: &lastKey)
        }
        let taken: (any HeldLock)?
        do {
            taken = try await store.acquireLock(command: "watch", ifUnchangedSince: generation, leadership: leadership)
        } catch {
            report(.refuse("cannot take the cluster lock in \(store.label): \(error.message)"), lastKey: &lastKey)
            return false
        }
        // Taken or changed since the look: look again, now (this look's decision is not kept).
        guard let taken else { return true }
        HeldLocks.set(taken)
        let acted = await act(action, input: input, state: state, lock: taken, generation: generation, &memory, now: now, lastKey: &lastKey)
        HeldLocks.set(nil)
        await taken.release()
        return acted
    }

    /// The decided `action`, carried out when it changes something and `lock` is held;
    /// otherwise said (once while it stays the same). `state`: the one `input` was made from.
    func act(
        _ action: WatchDecision.Action, input: WatchDecision.Input, state: ClusterState?, lock: (any HeldLock)?,
        generation: LockGeneration?,
        _ memory: inout WatchDecision.Memory, now: () -> Double, lastKey: inout String?
    ) async -> Bool {
        // Another command holds the lock (a restore stops every node, a switchover its
        // primary): what the watcher would do or refuse is said once, as a wait, not a
        // refusal per interval about the state that command is in the middle of.
        let refusal = if case .refuse = action { true } else { false }
        let heldElsewhere = generation.map { $0.holder != nil } ?? (lock == nil)
        if action.changes || refusal, heldElsewhere {
            var holder = generation?.holder
            if generation == nil { holder = try? await store.lockHolder() }
            let named = holder?.description ?? "another command"
            report(.wait("\(named) holds the cluster lock: observing only (would \(action.event): \(action.details))"), lastKey: &lastKey)
            return false
        }
        // Leadership lapses when it could not be renewed in time: then act no more.
        if action.changes, !leadership.isLeader {
            report(.wait("leadership lapsed before acting (would \(action.event)); observing only"), lastKey: &lastKey)
            return false
        }
        report(action, lastKey: &lastKey)
        guard action.changes else { return false }
        // A rejoin may clone a large database for longer than systemd's WatchdogSec.
        await notifier.keepingAlive { await carryOut(action, input: input, state: state, memory: &memory, now: now) }
        lastKey = nil
        return true
    }

    /// This leader's observations, for the health endpoints.
    func feedHealth(_ input: WatchDecision.Input) {
        health?.observed(
            input.nodes.map(\.observation), probeSeconds: input.now - (input.probedAt ?? input.now), paused: input.paused,
            leader: true)
    }

    func observe(state: ClusterState?, probedAt: Double, now: () -> Double) async -> WatchDecision.Input {
        let observations = await Observer(credentials: credentials, timeout: probeTimeout).observeAll(watched(state))
        var nodes: [WatchDecision.Node] = []
        for observation in observations {
            let postmaster = observation.reachable ? .running : await postmaster(observation.node)
            nodes.append(.init(observation, postmaster: postmaster))
        }
        let recorded = state?.primary ?? spec.primary.name
        var applied = state?.applied ?? state?.synchronous ?? .init(spec.replication.synchronous)
        if applied.standbys == nil { applied.standbys = spec.nodes.map(\.name).filter { $0 != recorded } }
        return .init(
            nodes: nodes, recordedPrimary: recorded, applied: applied, lowered: state?.lowered, paused: state?.paused ?? false,
            now: now(), probedAt: probedAt, pending: state?.pending, recordedTimeline: state?.primary == recorded ? state?.timeline : nil)
    }

    /// Hosts the tests pretend cannot be reached (`PGCLUSTER_TEST_SILENT_HOSTS=node0,...`):
    /// on this machine every host answers, so "not provably stopped" needs this. Never set
    /// in normal use.
    static let silentHosts = Set(
        (ProcessInfo.processInfo.environment["PGCLUSTER_TEST_SILENT_HOSTS"] ?? "").split(separator: ",").map(String.init))

    func postmaster(_ node: NodeSpec) async -> WatchDecision.Postmaster {
        if Self.silentHosts.contains(node.name) { return .unknown }
        switch await control.serverRuns(node) {
        case true?: return .running
        case false?: return .stopped
        case nil: return .unknown
        }
    }

    /// Logs an action: refusals every interval, other states when they change.
    func report(_ action: WatchDecision.Action, lastKey: inout String?) {
        let key = action.event + (action.node ?? "") + action.details.filter { !$0.isNumber }
        if case .refuse = action {} else if key == lastKey { return }
        lastKey = key
        let level: Logger.Level = if case .refuse = action { .warning } else { .info }
        logger.event(action.event, node: action.node, action.details, level: level)
    }

    func carryOut(
        _ action: WatchDecision.Action, input: WatchDecision.Input, state: ClusterState?, memory: inout WatchDecision.Memory,
        now: () -> Double
    ) async {
        let live = input.nodes.first { $0.observation.isPrimary }.map(\.observation.node)
        do throws(ClusterError) {
            switch action {
            case .failover:
                var failover = Failover(
                    spec: spec, credentials: credentials, control: control, request: .init(), dryRun: false,
                    templates: control.renderer.templates)
                // The frozen positions are read from standbys that just answered a probe: a
                // slow answer there costs time once, a standby counted silent costs the
                // failover a follower. Half a second more than a probe, as before the
                // probes' deadline became their timeout.
                failover.observeTimeout = probeTimeout + 0.5
                failover.by = "watch"
                let logger = logger
                failover.onPromoted = { name in logger.event("promoted", node: name, "\(name) accepts writes") }
                failover.observed = input.nodes.map(\.observation)
                // Read this tick under the lock, or (etcd) just before taking a lock that
                // nobody took since (``tickHolding``): no other command wrote it meanwhile.
                failover.recorded = .some(state)
                let (hooks, hookSpec) = (self.hooks, spec)
                failover.hooksElsewhere = { event in hooks.add(event, spec: hookSpec) }
                let result = try await failover.run()
                memory.primaryLostSince = nil
                memory.primaryLastAnswered = nil
                memory.needsRejoin.formUnion(result.needsRejoin)
                memory.needsRejoin.remove(result.candidate)
                health?.failedOver(seconds: result.totalSeconds)
                logger.event(
                    "failed-over", node: result.candidate,
                    "\(result.candidate) is the primary on timeline \(result.timeline.map(String.init) ?? "?") "
                        + "(\(String(format: "%.3f", result.totalSeconds)) s); following: "
                        + "\(result.rePointed.isEmpty ? "none" : result.rePointed.joined(separator: ", ")); "
                        + "synchronous_standby_names = '\(result.synchronous)'"
                        + (result.needsRejoin.isEmpty ? "" : "; needs rejoin: \(result.needsRejoin.joined(separator: ", "))")
                        + "; steps: " + result.steps.map { "\($0.name) \(String(format: "%.3f", $0.seconds))" }.joined(separator: ", "))
                for warning in result.warnings { logger.event("warning", warning, level: .warning) }
                for problem in result.problems { logger.event("problem", problem, level: .warning) }
            case .fence(let name, _):
                guard let node = spec.node(named: name) else { return }
                try await HeldLocks.verify(before: "fencing \(name)")
                let done = await control.fence(node)
                memory.needsRejoin.insert(name)
                logger.event("fenced", node: name, done ?? "no postmaster was running")
            case .rejoin(let name, _):
                guard let node = spec.node(named: name) else { return }
                var rejoin = Rejoin(cluster: control, credentials: credentials, node: node, reclone: false)
                rejoin.by = "watch"
                let step = rejoin
                let outcome = await whileWatching(&memory, now: now) { () async -> Result<Rejoin.Report, ClusterError> in
                    do throws(ClusterError) { return .success(try await step.run()) } catch { return .failure(error) }
                }
                switch outcome {
                case .finished(let result):
                    let report = try result.get()
                    memory.needsRejoin.remove(name)
                    logger.event("rejoined", node: name, report.text.replacingOccurrences(of: "\n", with: "; "))
                case .stopped(let due, _):
                    // Still needs its rejoin: tried again once the due step is done.
                    logger.event(
                        "rejoin-stopped", node: name,
                        "stopped the rejoin of \(name) (its running program killed, no further step begun): "
                            + "\(due.event) is due: \(due.details)",
                        level: .warning)
                }
            case .start(let name):
                guard let node = spec.node(named: name) else { return }
                let lines = try await StartNodes(control: control, credentials: credentials).run([node])
                logger.event("started", node: name, lines.joined(separator: "; "))
            case .lowerSynchronous:
                guard let live else { return }
                try await QuorumChange(credentials: credentials, primary: live, mode: .async, standbys: [], intent: spec).set()
                try await ClusterRecord.saveLowered(
                    spec: spec, primary: live.name, applied: .init(.async, standbys: []), lowered: input.applied)
                logger.event("lowered", node: live.name, "synchronous_standby_names = '' until a synchronous standby streams (recorded)")
            case .restoreSynchronous:
                guard let live, let lowered = input.lowered else { return }
                let standbys = lowered.standbys ?? []
                try await QuorumChange(
                    credentials: credentials, primary: live, mode: lowered.synchronousMode, standbys: standbys, intent: spec
                ).set()
                try await ClusterRecord.saveLowered(spec: spec, primary: live.name, applied: lowered, lowered: nil)
                logger.event(
                    "restored", node: live.name, "synchronous_standby_names = '\(lowered.synchronousMode.standbyNames(standbys))'")
            case .nothing, .wait, .refuse, .paused:
                return
            }
        } catch {
            let name = action.node
            if case .start = action, error.exitCode == .refused, let name {
                // It cannot follow (its WAL went past the fork): a rejoin's job, not a start's.
                memory.needsRejoin.insert(name)
            } else if let name {
                memory.retryAfter[name] = now() + max(10, settings.failoverAfter * 5)
            }
            let text = ([error.message] + error.details).joined(separator: "; ")
            logger.event(action.event + "-failed", node: name, text, level: .warning)
        }
    }
}

/// How a step run by ``Watcher/whileWatching(_:now:_:)`` ended.
enum WatchedStep<T: Sendable>: Sendable {
    /// It ran to its end (or failed on its own).
    case finished(Result<T, ClusterError>)
    /// Stopped because this action became due; what the step said as it stopped.
    case stopped(WatchDecision.Action, Result<T, ClusterError>)
}

/// What the task group of ``Watcher/whileWatching(_:now:_:)`` hears next.
private enum StepOrLook<T: Sendable>: Sendable {
    case done(Result<T, ClusterError>)
    case look
}

extension Watcher {
    /// Runs a step that may take long (a rejoin: pg_rewind, and the pg_basebackup after a
    /// failed one, have no deadline: a large copy takes hours) while the cluster stays
    /// watched: every interval the nodes are observed again (the health endpoints follow)
    /// and the rules asked what they would do. When they want a step that cannot wait
    /// (``WatchDecision/Action/stopsLongStep``: a failover, a fence, lowering), this one is
    /// cancelled: its running program is killed (``LocalRunner``) and it begins no other
    /// step. The next tick then carries out the due step. The memory keeps what the
    /// observations found about the primary, so a failover counts from when it was lost,
    /// not from when the step stopped.
    func whileWatching<T: Sendable>(
        _ memory: inout WatchDecision.Memory, now: () -> Double,
        _ step: @escaping @Sendable () async -> Result<T, ClusterError>
    ) async -> WatchedStep<T> {
        var scratch = memory
        let interval = settings.interval
        let outcome = await withTaskGroup(of: StepOrLook<T>.self) { group -> WatchedStep<T> in
            let look: @Sendable () async -> StepOrLook<T> = {
                try? await Task.sleep(for: .seconds(interval))
                return .look
            }
            group.addTask { .done(await step()) }
            group.addTask(operation: look)
            var due: WatchDecision.Action?
            while let next = await group.next() {
                switch next {
                case .done(let result):
                    group.cancelAll()
                    return due.map { .stopped($0, result) } ?? .finished(result)
                case .look:
                    if due != nil { continue }
                    var loaded: ClusterState??
                    do { loaded = .some(try await store.loadState()) } catch {}
                    if let state = loaded {
                        let input = await observe(state: state, probedAt: now(), now: now)
                        feedHealth(input)
                        let action = WatchDecision.next(input, memory: &scratch, settings: settings)
                        if action.stopsLongStep {
                            due = action
                            group.cancelAll()
                            continue
                        }
                    }
                    group.addTask(operation: look)
                }
            }
            return .finished(.failure(ClusterError("the step ended without an answer")))
        }
        memory.primaryLostSince = scratch.primaryLostSince
        memory.primaryLastAnswered = scratch.primaryLastAnswered
        return outcome
    }
}

/// A line said once until it changes (nil: nothing to say), from any task.
final class LastSaid: @unchecked Sendable {
    private let lock = NSLock()
    private var last: String?
    private var first = true

    /// True when `text` differs from what was said last; the first nil is no change.
    func changed(to text: String?) -> Bool {
        lock.withLock {
            defer {
                last = text
                first = false
            }
            if first { return text != nil }
            return text != last
        }
    }
}
