/// libpq multi-host connection strings for applications: libpq itself finds the
/// primary (`read-write`) or prefers a standby (`prefer-standby`), so moving reads to
/// replicas needs only a connection string.
public enum ConnectionStrings {
    public static func make(
        spec: ClusterSpec, readOnly: Bool, user: String, password: String?, database: String = "postgres"
    ) -> String {
        var pairs: [(String, String)] = [
            ("host", spec.nodes.map(\.host).joined(separator: ",")),
            ("port", spec.nodes.map { String($0.port) }.joined(separator: ",")),
            ("user", user),
        ]
        if let password { pairs.append(("password", password)) }
        pairs += [
            ("dbname", database),
            ("connect_timeout", "2"),
            ("target_session_attrs", readOnly ? "prefer-standby" : "read-write"),
        ]
        pairs += keepalives
        // Applications verify every node as pgcluster does: the cluster CA, by its absolute path.
        if let rootCertificate = Credentials.rootCertificate(for: spec) {
            pairs += [("sslmode", "verify-full"), ("sslrootcert", rootCertificate)]
        }
        return ConfigText.conninfo(pairs)
    }

    /// TCP keepalives: a client whose server's host vanished (cut off, powered off) gets an
    /// error within about 11 s (5 s idle, then 3 probes 2 s apart) and reconnects through
    /// the string to the new primary, instead of waiting for the kernel's two hours. That
    /// is the case pgcluster cannot fence: a partitioned primary, where a commit waits for
    /// standbys that follow another node now.
    public static let keepalives: [(String, String)] = [
        ("keepalives", "1"), ("keepalives_idle", "5"), ("keepalives_interval", "2"), ("keepalives_count", "3"),
    ]
}
