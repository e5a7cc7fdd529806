import Foundation

/// How `apply` restarts the primary when one of its settings needs it.
public enum PrimaryUpdate: String, Sendable, Codable, CaseIterable {
    /// A standby takes over (planned, nothing lost), the old primary restarts as its standby.
    case switchover
    /// The primary restarts in place: writes pause while it does.
    case restart
}

/// One setting as a running server reports it (a row of pg_settings).
public struct LiveSetting: Sendable, Equatable {
    public var name: String
    /// In the server's own unit (`unit`), as pg_settings.setting shows it.
    public var setting: String
    public var unit: String?
    /// bool, integer, real, enum, string.
    public var vartype: String
    /// `postmaster`: only a restart changes it.
    public var context: String
    /// Where the running value came from; nil for defaults.
    public var sourcefile: String?
    public var pendingRestart: Bool

    public init(
        name: String, setting: String, unit: String? = nil, vartype: String = "string", context: String = "sighup",
        sourcefile: String? = nil, pendingRestart: Bool = false
    ) {
        self.name = name
        self.setting = setting
        self.unit = unit
        self.vartype = vartype
        self.context = context
        self.sourcefile = sourcefile
        self.pendingRestart = pendingRestart
    }

    /// `4096 (8kB)`, `on`: for the plan.
    public var display: String { unit.map { "\(setting) (\($0))" } ?? setting }
}

/// What `apply` sees before it plans: the live servers and what pgcluster remembers.
public struct ApplyFacts: Sendable {
    /// Every node the spec or the recorded state knows, as it answered (or did not).
    public var observations: [NodeObservation]
    public var recorded: ClusterState?
    /// Each answering node's pg_settings.
    public var settings: [String: [LiveSetting]]
    /// Nodes whose host has a data folder for them (asked only for those that do not answer).
    public var hasData: Set<String>
    /// Each spec node's postgresql.conf as the spec renders it now (the desired settings).
    public var desiredConf: [String: String] = [:]

    public init(
        observations: [NodeObservation], recorded: ClusterState?, settings: [String: [LiveSetting]] = [:],
        hasData: Set<String> = []
    ) {
        self.observations = observations
        self.recorded = recorded
        self.settings = settings
        self.hasData = hasData
    }
}

/// A setting whose rendered value differs from the one a node runs with.
public struct SettingChange: Sendable, Equatable, Encodable {
    public var node: String
    public var name: String
    public var from: String
    /// The rendered value, or `(default)` for a setting no longer in the spec.
    public var to: String
    /// PostgreSQL applies it only on a restart (context postmaster).
    public var restart: Bool
}

/// One step of an `apply` plan, carried out in order.
public enum ApplyStep: Sendable, Equatable {
    /// Slot on the primary, pg_basebackup from it, start, confirm streaming.
    case addNode(String, from: String)
    /// synchronous_standby_names on the primary, verified on pg_stat_replication.
    case synchronous(SynchronousMode, standbys: [String], on: String)
    /// Stop it, drop its slot on the primary, remove its files.
    case removeNode(String, primary: String)
    /// Place the rendered files and reload.
    case reload([String])
    /// Restart a standby when PostgreSQL marks a setting pending_restart; wait until it streams.
    case restartStandby(String)
    /// Restart the primary when a setting is pending_restart: by switchover or in place.
    case restartPrimary(String, PrimaryUpdate)

    public var text: String {
        switch self {
        case .addNode(let node, let primary):
            return "add \(node): slot on \(primary), clone from \(primary) (pg_basebackup), start, confirm it streams"
        case .synchronous(let mode, let standbys, let primary):
            return "synchronous_standby_names = '\(mode.standbyNames(standbys))' on \(primary), verified on pg_stat_replication"
        case .removeNode(let node, let primary):
            return "remove \(node): stop it, drop its slot on \(primary), remove its data"
        case .reload(let nodes):
            return "write postgresql.conf and pg_hba.conf on \(nodes.joined(separator: ", ")) and reload"
        case .restartStandby(let node):
            return "restart standby \(node) if a setting is pending_restart, wait until it streams again"
        case .restartPrimary(let node, .switchover):
            return "restart primary \(node) by switchover if a setting is pending_restart (a standby takes over, \(node) restarts as its standby)"
        case .restartPrimary(let node, .restart):
            return "restart primary \(node) in place if a setting is pending_restart (writes pause while it restarts)"
        }
    }
}

/// `pgcluster apply`: from the edited spec and the live cluster to the ordered steps that
/// make them match, or a refusal (exit 2) saying the way forward. Pure: no server is touched.
///
/// Which nodes the cluster has: those recorded in the state (every writer keeps the list;
/// `init` and `apply` set it) and every node that answers. A spec node that is neither is
/// new. A recorded node that is not in the spec is removed. Before anything was recorded,
/// a spec node with data on its host counts as a member too.
public struct ApplyPlan: Sendable, Equatable {
    public var primary: String
    public var added: [String]
    public var removed: [String]
    public var changes: [SettingChange]
    /// synchronous_standby_names now and as planned, when it changes.
    public var synchronousFrom: String
    public var synchronousTo: String
    /// The standbys the operator restricted the quorum to, kept (nil: every standby).
    public var restriction: [String]?
    public var steps: [ApplyStep]
    public var notes: [String]

    /// Settings a standby needs at least as high as its primary's: raised on standbys
    /// first, lowered on the primary first.
    public static let orderedSettings: Set<String> = [
        "max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions",
        "max_locks_per_transaction",
    ]

    /// Settings pgcluster sets at run time (ALTER SYSTEM, standby.conf): not compared.
    static let runtimeSettings: Set<String> = [
        "synchronous_standby_names", "synchronous_commit", "primary_conninfo", "primary_slot_name",
    ]

    public static func make(
        spec: ClusterSpec, facts: ApplyFacts, primaryUpdate: PrimaryUpdate, force: Bool
    ) throws(ClusterError) -> ApplyPlan {
        let primaryObservation = try PrimaryLookup.find(facts.observations)
        let primary = primaryObservation.node.name
        let specNames = Set(spec.nodes.map(\.name))
        let recordedNames = facts.recorded?.nodes.map { Set($0.map(\.name)) }
        func isMember(_ observation: NodeObservation) -> Bool {
            if observation.reachable { return true }
            if let recordedNames { return recordedNames.contains(observation.node.name) }
            return facts.hasData.contains(observation.node.name)
        }
        let members = facts.observations.filter(isMember)
        let memberNames = Set(members.map(\.node.name))
        let removed = members.map(\.node.name).filter { !specNames.contains($0) }
        let added = spec.nodes.map(\.name).filter { !memberNames.contains($0) }

        if spec.backend == .compose && !(added.isEmpty && removed.isEmpty) {
            let changes = added.map { "add \($0)" } + removed.map { "remove \($0)" }
            throw ClusterError(
                "\(changes.joined(separator: ", ")): on backend compose, apply changes settings and the synchronous mode, not the nodes",
                exitCode: .refused,
                details: [
                    "keep the nodes as they are in \(spec.file) and apply again for the rest",
                    "a compose project's services are its nodes: a new cluster (pgcluster init) takes a new set",
                ])
        }
        // A node is its name and its address: apply adds and removes nodes, it neither moves
        // nor renames one (the server at the old address would be left running and unwatched,
        // and a refusal naming start or rejoin could not help).
        for node in spec.nodes {
            guard let recorded = facts.recorded?.nodes else { break }
            let address = { (host: String, port: Int) in host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
            if let was = recorded.first(where: { $0.name == node.name }), was != ClusterState.Member(node) {
                throw ClusterError(
                    "\(node.name) is at \(address(was.host, was.port))\(was.sshHost.map { " (ssh \($0))" } ?? ""), and \(spec.file) "
                        + "puts it at \(address(node.host, node.port))\(node.sshHost.map { " (ssh \($0))" } ?? ""): apply does not move a node; nothing was changed",
                    exitCode: .refused,
                    details: [
                        "put its address back; to move it, add a node at the new address (apply), switch over to it if \(node.name) is the primary, then remove \(node.name) (apply)"
                    ])
            }
            // (Not by whether it answers: at the old node's address, the old node's server
            // answers to the new name.)
            if !recorded.contains(where: { $0.name == node.name }),
                let other = recorded.first(where: { $0.name != node.name && $0.host == node.host && $0.port == node.port && specNames.contains($0.name) == false })
            {
                throw ClusterError(
                    "\(node.name) is new in \(spec.file) at \(other.name)'s address (\(address(node.host, node.port))): "
                        + "apply does not rename a node; nothing was changed",
                    exitCode: .refused,
                    details: ["put \(other.name)'s name back, or give \(node.name) an address of its own (a new node, cloned) and remove \(other.name)"])
            }
        }
        if removed.contains(primary) {
            let candidates = members.filter { specNames.contains($0.node.name) && $0.isStandby }.map(\.node.name)
            throw ClusterError(
                "\(primary) is the primary and is no longer in \(spec.file): switchover first",
                exitCode: .refused, details: [
                    "run: pgcluster switchover"
                        + (candidates.first.map { " --candidate \($0)" } ?? "") + ", then pgcluster apply again"
                ])
        }
        let known = Set(facts.observations.map(\.node.name))
        let strangers = primaryObservation.streamingStandbys.subtracting(known).sorted()
        if !strangers.isEmpty {
            throw ClusterError(
                "\(strangers.joined(separator: ", ")) stream\(strangers.count == 1 ? "s" : "") from \(primary) but "
                    + "neither \(spec.file) nor the recorded state says where \(strangers.count == 1 ? "it lives" : "they live")",
                exitCode: .refused, details: ["add it to the spec's nodes (to keep it), or stop it yourself (to drop it), then apply again"])
        }
        // Every node that stays must answer and follow: apply never works around a broken node.
        for observation in members where specNames.contains(observation.node.name) {
            let name = observation.node.name
            if !observation.reachable {
                throw ClusterError(
                    "\(name) does not answer (\(observation.error ?? "down")): nothing was changed",
                    exitCode: .refused, details: ["start it (pgcluster start \(name)) or bring it back (pgcluster rejoin \(name)), then apply again"])
            }
            if name != primary && !primaryObservation.streamingStandbys.contains(name) {
                throw ClusterError(
                    "\(name) does not stream from the primary \(primary): nothing was changed",
                    exitCode: .refused, details: ["bring it back (pgcluster rejoin \(name)), then apply again"])
            }
        }

        var notes: [String] = []
        // The synchronous standbys: the spec's mode over the standbys that remain.
        let remembered = facts.recorded?.synchronous ?? .init(spec.replication.synchronous)
        let mode = spec.replication.synchronous
        if remembered.synchronousMode != mode {
            notes.append(
                "replication.synchronous: \(remembered.synchronousMode) was in force (remembered), the spec says \(mode): apply sets the spec's")
        }
        let restriction = remembered.synchronousMode == mode
            ? remembered.standbys.map { $0.filter { specNames.contains($0) && $0 != primary } + added.filter { $0 != primary } }
            : nil
        let listedNames = restriction ?? spec.nodes.map(\.name).filter { $0 != primary }
        let listed = spec.nodes.filter { listedNames.contains($0.name) }
            .sorted { ($0.priority, $1.name) > ($1.priority, $0.name) }.map(\.name)
        let synchronousTo = mode.standbyNames(listed)
        if mode != .async && listed.count < mode.count {
            let problem = "\(mode) needs \(mode.count) standbys, but only \(listed.count) would be listed"
                + (listed.isEmpty ? "" : " (\(listed.joined(separator: ", ")))")
            guard force else {
                throw ClusterError(
                    problem + ": every commit on \(primary) would WAIT",
                    exitCode: .refused, details: ["keep enough standbys in the spec, or lower replication.synchronous, or add --force"])
            }
            notes.append(problem + ": --force, commits on \(primary) wait until more stream")
        }

        // Settings: the rendered postgresql.conf against what each node runs with.
        var changes: [SettingChange] = []
        var pendingAlready: [String] = []
        for node in spec.nodes where memberNames.contains(node.name) {
            guard let conf = facts.desiredConf[node.name] else {
                throw ClusterError("\(node.name): its configuration was not rendered before planning (a bug in pgcluster)")
            }
            let desired = SettingValue.parseConf(conf)
            let live = Dictionary((facts.settings[node.name] ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for (name, value) in desired where !runtimeSettings.contains(name) {
                guard let current = live[name] else { continue }
                if current.sourcefile?.hasSuffix("postgresql.auto.conf") == true {
                    if !SettingValue.same(value, current) {
                        notes.append("\(node.name): \(name) is set by ALTER SYSTEM (postgresql.auto.conf), which wins over the spec; left alone")
                    }
                    continue
                }
                if !SettingValue.same(value, current) {
                    changes.append(
                        SettingChange(
                            node: node.name, name: name, from: current.display, to: value, restart: current.context == "postmaster"))
                }
            }
            for current in live.values.sorted(by: { $0.name < $1.name })
            where current.sourcefile?.hasSuffix("/postgresql.conf") == true && desired.first(where: { $0.0 == current.name }) == nil
                && !runtimeSettings.contains(current.name)
            {
                changes.append(
                    SettingChange(
                        node: node.name, name: current.name, from: current.display, to: "(default)",
                        restart: current.context == "postmaster"))
            }
            if live.values.contains(where: \.pendingRestart) { pendingAlready.append(node.name) }
        }
        if !pendingAlready.isEmpty {
            notes.append("already pending_restart before this apply: \(pendingAlready.joined(separator: ", "))")
        }
        // The WAL segment size is fixed when the cluster is made: said, never planned.
        if let wanted = spec.postgres.walSegmentSize,
            let running = facts.settings.values.lazy.compactMap({ $0.first { $0.name == "wal_segment_size" } }).first,
            let bytes = Int(running.setting), bytes != wanted << 20
        {
            notes.append(
                "postgres.walSegmentSize is \(wanted)MB, the cluster runs with \(bytes >> 20)MB segments: "
                    + "PostgreSQL fixes the size when a cluster is made (init, restore --into); left as it is")
        }

        // Raised or lowered settings a standby needs at least as high as its primary's.
        var raised: Set<String> = []
        var lowered: Set<String> = []
        for change in changes where orderedSettings.contains(change.name) {
            guard let live = facts.settings[change.node]?.first(where: { $0.name == change.name }),
                let from = Double(live.setting), let to = Double(change.to)
            else { continue }
            if to > from { raised.insert(change.name) }
            if to < from { lowered.insert(change.name) }
        }
        if !raised.isEmpty && !lowered.isEmpty {
            throw ClusterError(
                "this edit raises \(raised.sorted().joined(separator: ", ")) and lowers \(lowered.sorted().joined(separator: ", ")): "
                    + "a standby needs these at least as high as its primary, so one goes up on standbys first and the other down on the primary first",
                exitCode: .refused, details: ["apply the raise and the lowering in two edits, one apply each"])
        }

        var steps: [ApplyStep] = added.map { .addNode($0, from: primary) }
        if synchronousTo != primaryObservation.synchronousStandbyNames || remembered.synchronousMode != mode
            || !added.isEmpty || !removed.isEmpty
        {
            steps.append(.synchronous(mode, standbys: listed, on: primary))
        }
        steps += removed.map { .removeNode($0, primary: primary) }
        let changed = spec.nodes.map(\.name).filter { name in changes.contains { $0.node == name } }
        if !changed.isEmpty { steps.append(.reload(changed)) }
        let restarting = spec.nodes.map(\.name).filter { name in
            pendingAlready.contains(name) || changes.contains { $0.node == name && $0.restart }
        }
        let standbys = restarting.filter { $0 != primary }.map { ApplyStep.restartStandby($0) }
        if restarting.contains(primary) {
            if !lowered.isEmpty {
                if primaryUpdate == .switchover {
                    notes.append(
                        "\(lowered.sorted().joined(separator: ", ")) goes down: \(primary) restarts in place first "
                            + "(a standby cannot run with less than its primary, so no switchover)")
                }
                steps.append(.restartPrimary(primary, .restart))
                steps += standbys
            } else {
                let (how, note) = RollingRestart.primaryUpdate(spec: spec, primary: primary, requested: primaryUpdate)
                if let note { notes.append(note) }
                steps += standbys
                steps.append(.restartPrimary(primary, how))
            }
        } else {
            steps += standbys
        }
        return ApplyPlan(
            primary: primary, added: added, removed: removed, changes: changes,
            synchronousFrom: primaryObservation.synchronousStandbyNames, synchronousTo: synchronousTo,
            restriction: restriction, steps: steps, notes: notes)
    }

    /// The plan for people: numbered steps, then the setting changes and notes.
    public var text: String {
        if steps.isEmpty {
            return (["nothing to change: the cluster matches the spec (primary \(primary))"] + notes.map { "note: " + $0 })
                .joined(separator: "\n")
        }
        var lines = ["plan (primary \(primary)), \(steps.count) step\(steps.count == 1 ? "" : "s"):"]
        for (i, step) in steps.enumerated() { lines.append("  \(i + 1). \(step.text)") }
        if !changes.isEmpty {
            lines.append("settings:")
            lines += changes.map { "  \($0.node): \($0.name) \($0.from) -> \($0.to)\($0.restart ? " (needs restart)" : "")" }
        }
        if synchronousFrom != synchronousTo {
            lines.append("synchronous_standby_names: '\(synchronousFrom)' -> '\(synchronousTo)'")
        }
        lines += notes.map { "note: " + $0 }
        return lines.joined(separator: "\n")
    }
}

extension ApplyPlan: Encodable {
    enum CodingKeys: String, CodingKey {
        case primary, added, removed, changes, synchronousFrom, synchronousTo, steps, notes
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(primary, forKey: .primary)
        try container.encode(added, forKey: .added)
        try container.encode(removed, forKey: .removed)
        try container.encode(changes, forKey: .changes)
        try container.encode(synchronousFrom, forKey: .synchronousFrom)
        try container.encode(synchronousTo, forKey: .synchronousTo)
        try container.encode(steps.map(\.text), forKey: .steps)
        try container.encode(notes, forKey: .notes)
    }
}

/// Compares a value written in postgresql.conf with the one a server reports, the way
/// PostgreSQL reads it: units converted (`32MB` is 4096 of 8kB), booleans and enums by
/// meaning. Pure.
public enum SettingValue {
    /// The `name = value` lines of a postgresql.conf, values unquoted, in order.
    public static func parseConf(_ text: String) -> [(String, String)] {
        var result: [(String, String)] = []
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard !line.hasPrefix("#"), let equals = line.firstIndex(of: "=") else { continue }
            let name = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            guard !name.isEmpty, !name.hasPrefix("include") else { continue }
            result.append((name, unquote(line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces))))
        }
        return result
    }

    static func unquote(_ value: String) -> String {
        guard value.hasPrefix("'"), value.hasSuffix("'"), value.count >= 2 else {
            // An unquoted value ends at a comment.
            return value.split(separator: "#", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? value
        }
        return String(value.dropFirst().dropLast()).replacingOccurrences(of: "''", with: "'")
            .replacingOccurrences(of: "\\'", with: "'")
    }

    public static func same(_ desired: String, _ live: LiveSetting) -> Bool {
        switch live.vartype {
        case "bool":
            return boolean(desired) == boolean(live.setting)
        case "integer", "real":
            guard let wanted = inServerUnit(desired, unit: live.unit), let running = Double(live.setting) else {
                return desired == live.setting
            }
            return abs(wanted - running) < 0.5 || (live.vartype == "real" && abs(wanted - running) < 1e-9)
        case "enum":
            return desired.lowercased() == live.setting.lowercased()
        default:
            return desired == live.setting
        }
    }

    static func boolean(_ text: String) -> String {
        switch text.lowercased() {
        case "on", "true", "yes", "1", "t", "y": return "on"
        case "off", "false", "no", "0", "f", "n": return "off"
        default: return text.lowercased()
        }
    }

    static let memory: [String: Double] = ["B": 1, "kB": 1024, "MB": 1_048_576, "GB": 1_073_741_824, "TB": 1_099_511_627_776]
    static let time: [String: Double] = ["us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000]

    /// `desired` (a number with an optional unit) in the server's unit (such as `8kB`, `ms`), rounded as PostgreSQL does.
    static func inServerUnit(_ desired: String, unit: String?) -> Double? {
        let text = desired.trimmingCharacters(in: .whitespaces)
        let numberEnd = text.firstIndex { !("0123456789.-+eE".contains($0)) } ?? text.endIndex
        guard let number = Double(text[..<numberEnd]) else { return nil }
        let given = text[numberEnd...].trimmingCharacters(in: .whitespaces)
        if given.isEmpty { return number }
        guard let unit else { return nil }
        let multiplierEnd = unit.firstIndex { !$0.isNumber } ?? unit.endIndex
        let multiplier = Double(unit[..<multiplierEnd]) ?? 1
        let base = String(unit[multiplierEnd...])
        if let from = memory[given], let to = memory[base] { return (number * from / (to * multiplier)).rounded() }
        if let from = time[given], let to = time[base] { return (number * from / (to * multiplier)).rounded() }
        return nil
    }
}
