import Foundation

@testable import PGClusterKit
@testable import PGClusterRules

/// What the TLS tests read of a running cluster, whichever backend started it.
enum TLSProbe {
    /// On a primary: each streaming standby (application_name) and whether its connection
    /// is over TLS (`pg_stat_ssl.ssl`, "true"/"false").
    static let replicationQuery = """
        SELECT r.application_name, s.ssl::text FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)
        WHERE r.state = 'streaming' ORDER BY 1
        """

    static func replicationTLS(_ rows: QueryResult) -> [String: String] {
        Dictionary(uniqueKeysWithValues: rows.rows.map { ($0[0] ?? "?", $0[1] ?? "?") })
    }

    /// The serial number of the certificate a server presents in its TLS handshake (not the
    /// file: what a client gets), read with `openssl s_client`.
    static func servedSerial(host: String, port: Int) -> String? {
        let connect = TestCluster.spawnWithFiles(
            ["/usr/bin/openssl", "s_client", "-starttls", "postgres", "-connect", "\(host):\(port)", "-showcerts"],
            timeout: 10)
        guard let begin = connect.stdout.range(of: "-----BEGIN CERTIFICATE-----"),
            let end = connect.stdout.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<connect.stdout.endIndex)
        else { return nil }
        return try? CertificateSummary(pem: String(connect.stdout[begin.lowerBound..<end.upperBound])).serial
    }
}
