import Foundation

/// `work`'s value or its error, as a value: for an `async let` whose failure the caller
/// handles where it awaits it (a step run beside others), or a failure that does not stop it.
func outcome<T: Sendable>(_ work: () async throws(ClusterError) -> T) async -> Result<T, ClusterError> {
    do throws(ClusterError) {
        return .success(try await work())
    } catch {
        return .failure(error)
    }
}

extension Result where Failure == ClusterError {
    /// The error, nil on success.
    var error: ClusterError? {
        if case .failure(let error) = self { error } else { nil }
    }
}

/// Runs `body` for every node (or host) at once; returns each with its result, in order.
func parallelResults<Item: Sendable, T: Sendable>(
    _ nodes: [Item], _ body: @escaping @Sendable (Item) async throws(ClusterError) -> T
) async -> [(Item, Result<T, ClusterError>)] {
    await withTaskGroup(of: (Int, Result<T, ClusterError>).self) { group in
        for (i, node) in nodes.enumerated() {
            group.addTask { (i, await outcome { () async throws(ClusterError) in try await body(node) }) }
        }
        var results: [Int: Result<T, ClusterError>] = [:]
        for await (i, result) in group { results[i] = result }
        return nodes.indices.map { (nodes[$0], results[$0]!) }
    }
}

/// Runs `body` for every node (or host) at once; returns each with its error, if any.
func parallel<Item: Sendable>(
    _ nodes: [Item], _ body: @escaping @Sendable (Item) async throws(ClusterError) -> Void
) async -> [(Item, ClusterError?)] {
    await parallelResults(nodes, body).map { ($0, $1.error) }
}

extension ClusterError {
    /// The first of `errors` naming the others ("also: …"), for steps run on several nodes
    /// at once; nil when there is none.
    static func combined(_ errors: [ClusterError]) -> ClusterError? {
        guard var first = errors.first else { return nil }
        first.details += errors.dropFirst().map { "also: \($0.message)" }
        return first
    }
}
