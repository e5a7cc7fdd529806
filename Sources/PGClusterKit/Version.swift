/// The version `pgcluster --version` prints.
public let version = "0.1.0"
