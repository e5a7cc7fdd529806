/// What a running `pgcluster watch` may take from an edited spec. Nodes, priorities, the
/// synchronous mode, the watch settings and parameters follow the file; what names the
/// cluster and where it lives and remembers (name, backend, local.dir, store, leaseTTL)
/// cannot change under a running watcher: its lock, leadership and state would then be
/// somewhere else. Such an edit is refused whole and the old spec kept, until a restart.
public enum SpecReload {
    /// Why `new` cannot replace `old` in a running watcher; nil when it can.
    public static func refusal(old: ClusterSpec, new: ClusterSpec) -> String? {
        var changed: [String] = []
        if old.name != new.name { changed.append("name (\(old.name) -> \(new.name))") }
        if old.backend != new.backend { changed.append("backend (\(old.backend.rawValue) -> \(new.backend.rawValue))") }
        if old.local.dir != new.local.dir { changed.append("local.dir") }
        if old.store != new.store { changed.append("store") }
        if old.watch.leaseTTL != new.watch.leaseTTL { changed.append("watch.leaseTTL") }
        guard !changed.isEmpty else { return nil }
        return "\(changed.joined(separator: ", ")) cannot change while watch runs: restart the watcher to use them"
    }

    /// One line saying what a reload changed, for the log.
    public static func summary(old: ClusterSpec, new: ClusterSpec) -> String {
        let before = Set(old.nodes.map(\.name))
        let after = Set(new.nodes.map(\.name))
        var parts: [String] = []
        let added = new.nodes.map(\.name).filter { !before.contains($0) }
        let removed = old.nodes.map(\.name).filter { !after.contains($0) }
        if !added.isEmpty { parts.append("nodes added: \(added.joined(separator: ", "))") }
        if !removed.isEmpty { parts.append("nodes removed: \(removed.joined(separator: ", "))") }
        let changedNodes = new.nodes.filter { node in old.node(named: node.name).map { $0 != node } ?? false }.map(\.name)
        if !changedNodes.isEmpty { parts.append("nodes changed: \(changedNodes.joined(separator: ", "))") }
        // The order is which health port answers for which node (watch.http: node i on port + i).
        let kept = new.nodes.map(\.name).filter(before.contains)
        if kept != old.nodes.map(\.name).filter(after.contains) { parts.append("nodes reordered: \(kept.joined(separator: ", "))") }
        if old.watch.http != new.watch.http { parts.append("watch.http \(new.watch.http.map { "\($0)" } ?? "removed")") }
        var (oldWatch, newWatch) = (old.watch, new.watch)
        (oldWatch.http, newWatch.http) = (nil, nil)
        if oldWatch != newWatch { parts.append("watch settings changed") }
        if old.replication != new.replication { parts.append("replication settings changed") }
        if old.hooks != new.hooks { parts.append("hooks changed") }
        return parts.isEmpty ? "no change that the watcher uses" : parts.joined(separator: "; ")
    }
}
