// The rules target's types (spec, observations, decisions) are PGClusterKit's too.
@_exported import PGClusterRules

/// The version `pgcluster --version` prints.
public let version = "0.1.0"
