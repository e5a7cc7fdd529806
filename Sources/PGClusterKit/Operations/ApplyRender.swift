/// What `apply` wants each node to run with: the spec rendered now (``Renderer``), given to
/// the pure plan (``ApplyPlan``) as text.
extension ApplyFacts {
    public mutating func render(_ spec: ClusterSpec) throws(ClusterError) {
        let renderer = Renderer(spec: spec)
        for node in spec.nodes { desiredConf[node.name] = try renderer.postgresqlConf(node) }
    }
}
