import Foundation

/// How a rolling restart takes the primary, for `apply` and `restart` alike: by switchover
/// unless asked for in place, or unless no standby may take over (every other node has
/// priority 0). Returns how, and a note when the request could not be honoured. Pure.
public enum RollingRestart {
    public static func primaryUpdate(spec: ClusterSpec, primary: String, requested: PrimaryUpdate) -> (PrimaryUpdate, String?) {
        guard requested == .switchover else { return (.restart, nil) }
        if spec.nodes.contains(where: { $0.name != primary && $0.priority > 0 }) { return (.switchover, nil) }
        return (.restart, "no standby with a priority above 0 can take over: \(primary) restarts in place")
    }
}

/// `pgcluster restart [NODE...] [--pending]`: which nodes restart, in which order. Standbys
/// first, one at a time (each must stream again before the next), the primary last, by
/// switchover or in place. Refuses (exit 2), before anything restarts, a named node that
/// does not answer or a standby that does not stream from the primary: a rolling restart
/// never works around a broken node. Pure: from observations to steps.
public struct RestartPlan: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        /// Stop (fast) and start the standby, wait until it streams from the primary again.
        case standby(String)
        /// The primary: a switchover (a standby takes over, the old primary restarts as its
        /// standby) or a restart in place (writes pause meanwhile).
        case primary(String, PrimaryUpdate)

        public var node: String {
            switch self {
            case .standby(let name), .primary(let name, _): name
            }
        }

        public func text(pendingOnly: Bool) -> String {
            let condition = pendingOnly ? " if a setting is still pending_restart" : ""
            switch self {
            case .standby(let name):
                return "restart standby \(name)\(condition), wait until it streams again"
            case .primary(let name, .switchover):
                return "restart primary \(name) by switchover\(condition) (a standby takes over, \(name) restarts as its standby)"
            case .primary(let name, .restart):
                return "restart primary \(name) in place\(condition) (writes pause while it restarts)"
            }
        }
    }

    public var primary: String
    public var steps: [Step]
    /// Only nodes with a setting pending_restart were planned.
    public var pendingOnly: Bool
    /// Named (or, with none named, every) node left out because nothing waits for a restart there.
    public var skipped: [String]
    public var notes: [String]

    /// - Parameters:
    ///   - selected: the nodes to restart, in spec order (every node when none was named).
    ///   - observations: every spec node as it answered.
    public static func make(
        spec: ClusterSpec, observations: [NodeObservation], selected: [String], pendingOnly: Bool, primaryUpdate: PrimaryUpdate
    ) throws(ClusterError) -> RestartPlan {
        let primaryObservation = try PrimaryLookup.find(observations)
        let primary = primaryObservation.node.name
        let byName = Dictionary(observations.map { ($0.node.name, $0) }, uniquingKeysWith: { a, _ in a })
        var chosen: [String] = []
        var skipped: [String] = []
        for name in spec.nodes.map(\.name) where selected.contains(name) {
            guard let observation = byName[name], observation.reachable else {
                throw ClusterError(
                    "\(name) does not answer (\(byName[name]?.error ?? "not observed")): nothing was restarted",
                    exitCode: .refused,
                    details: ["start it (pgcluster start \(name)) or bring it back (pgcluster rejoin \(name)), or leave it out of the NODE list"])
            }
            if name != primary && !primaryObservation.streamingStandbys.contains(name) {
                throw ClusterError(
                    "\(name) does not stream from the primary \(primary): nothing was restarted",
                    exitCode: .refused, details: ["bring it back (pgcluster rejoin \(name)), then restart again"])
            }
            if pendingOnly && !observation.pendingRestart {
                skipped.append(name)
            } else {
                chosen.append(name)
            }
        }
        var notes: [String] = []
        var steps = chosen.filter { $0 != primary }.map(Step.standby)
        if chosen.contains(primary) {
            var (how, note) = RollingRestart.primaryUpdate(spec: spec, primary: primary, requested: primaryUpdate)
            if how == .switchover && primaryObservation.streamingStandbys.isEmpty {
                // A switchover needs a standby that streams now.
                (how, note) = (.restart, "no standby streams from \(primary): it restarts in place")
            }
            if let note { notes.append(note) }
            steps.append(.primary(primary, how))
        }
        if !skipped.isEmpty {
            notes.append("nothing pending_restart on \(skipped.joined(separator: ", ")): not restarted")
        }
        return RestartPlan(primary: primary, steps: steps, pendingOnly: pendingOnly, skipped: skipped, notes: notes)
    }

    /// The plan for people: numbered steps, then the notes.
    public var text: String {
        var lines =
            steps.isEmpty
            ? ["nothing to restart" + (pendingOnly ? ": no node has a setting pending_restart" : "") + " (primary \(primary))"]
            : ["restart plan (primary \(primary)), \(steps.count) step\(steps.count == 1 ? "" : "s"):"]
                + steps.enumerated().map { "  \($0.offset + 1). " + $0.element.text(pendingOnly: pendingOnly) }
        lines += notes.map { "note: " + $0 }
        return lines.joined(separator: "\n")
    }
}

extension RestartPlan: Encodable {
    enum CodingKeys: String, CodingKey { case primary, pendingOnly, steps, skipped, notes }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(primary, forKey: .primary)
        try container.encode(pendingOnly, forKey: .pendingOnly)
        try container.encode(steps.map { $0.text(pendingOnly: pendingOnly) }, forKey: .steps)
        try container.encode(skipped, forKey: .skipped)
        try container.encode(notes, forKey: .notes)
    }
}
