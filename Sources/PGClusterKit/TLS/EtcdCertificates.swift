import Foundation

/// `pgcluster tls etcd`: certificates for etcd and for pgcluster's etcd client, signed by
/// the cluster CA in local.dir, so that an operator need not build a PKI by hand.
///
/// - the etcd server certificate names every `--host` (DNS or IP SANs) and may serve and
///   also authenticate as a client: etcd's JSON gateway, which pgcluster speaks to, dials
///   etcd's own gRPC port with it;
/// - the client certificate (no CommonName, see below) is what `store.etcd.cert`/`key` name;
///   etcd's `--client-cert-auth` admits it because `--trusted-ca-file` is the cluster CA.
///
/// Keys are written 0600. Nothing is put in etcd, and no key is printed.
public enum EtcdCertificates {
    public struct Report: Sendable, Encodable {
        public var out: String
        public var hosts: [String]
        public var ca: String
        public var serverCertificate: String
        public var serverKey: String
        public var clientCertificate: String
        public var clientKey: String
        /// The flags each etcd member starts with (it needs the server files copied to it).
        public var etcdFlags: [String]
        /// The lines of the spec's `store.etcd` that make pgcluster use them.
        public var storeLines: [String]

        public var text: String {
            var lines = [
                "wrote \(out): ca.crt, \(FileName.serverCertificate), \(FileName.serverKey) (0600), "
                    + "\(FileName.clientCertificate), \(FileName.clientKey) (0600); etcd's certificate names \(hosts.joined(separator: ", "))",
                "",
                "etcd (each member; copy ca.crt and the server files there, and list https:// client URLs):",
            ]
            lines += etcdFlags.map { "  \($0)" }
            lines += ["", "pgcluster spec (store.etcd):"]
            lines += storeLines.map { "    \($0)" }
            return lines.joined(separator: "\n")
        }
    }

    public enum FileName {
        public static let ca = "ca.crt"
        public static let serverCertificate = "etcd-server.crt"
        public static let serverKey = "etcd-server.key"
        public static let clientCertificate = "pgcluster-client.crt"
        public static let clientKey = "pgcluster-client.key"
    }

    /// The hosts etcd's certificate must name: the given ones, else the hosts of the spec's
    /// `store.etcd.endpoints`; an error when there are none.
    public static func hosts(_ given: [String], spec: ClusterSpec) throws(ClusterError) -> [String] {
        if !given.isEmpty { return given }
        let fromSpec = spec.store.etcd?.endpoints.compactMap(\.host) ?? []
        guard !fromSpec.isEmpty else {
            throw ClusterError(
                "name etcd's hosts: --host NAME (one per name or address clients reach etcd by)", exitCode: .usage)
        }
        return fromSpec
    }

    /// Issues both certificates from the cluster CA (made in local.dir when there is none) and
    /// writes them into `out`. Refuses to replace existing keys unless `force`.
    public static func issue(spec: ClusterSpec, out: String, hosts: [String], force: Bool) throws(ClusterError) -> Report {
        let folder = URL(fileURLWithPath: out).standardizedFileURL.path
        let path = { (name: String) in "\(folder)/\(name)" }
        if !force {
            for name in [FileName.serverKey, FileName.clientKey] where FileManager.default.fileExists(atPath: path(name)) {
                throw ClusterError(
                    "\(path(name)) exists: pgcluster does not replace etcd's keys unless told to",
                    exitCode: .refused, details: ["to issue new certificates and keys, run again with --force"])
            }
        }
        let ca = try NodeTLS.clusterCA(spec)
        let server = try ca.issue(node: "etcd", names: hosts, usages: [.serverAuth, .clientAuth], commonName: "etcd-server")
        // No CommonName: etcd's JSON gateway refuses a client certificate with one once
        // authentication is on (CVE-2018-16886, etcd #10366), and would take it for a user
        // name over gRPC. The certificate proves "a client the cluster CA vouches for"; the
        // user, when there is one, is store.etcd.user.
        let client = try ca.issue(
            node: "pgcluster-\(spec.name) etcd client", names: [], usages: [.clientAuth], commonName: "")
        // Keys first, then the certificates: a certificate is never there without its key.
        try FileWriter.writeAtomically(Data(server.keyPEM.utf8), to: path(FileName.serverKey), mode: 0o600)
        try FileWriter.writeAtomically(Data(client.keyPEM.utf8), to: path(FileName.clientKey), mode: 0o600)
        try FileWriter.writeAtomically(Data(ca.certificatePEM.utf8), to: path(FileName.ca), mode: 0o644)
        try FileWriter.writeAtomically(Data(server.certificatePEM.utf8), to: path(FileName.serverCertificate), mode: 0o644)
        try FileWriter.writeAtomically(Data(client.certificatePEM.utf8), to: path(FileName.clientCertificate), mode: 0o644)
        let port = spec.store.etcd?.endpoints.first?.port ?? 2379
        let urls = hosts.map { "https://\(hostInURL($0)):\(port)" }
        // etcd binds to addresses only; a member listens on its own, and advertises its names.
        let listen = hosts.filter { ClusterCA.ipAddressBytes($0) != nil }.map { "https://\(hostInURL($0)):\(port)" }
        return Report(
            out: folder, hosts: hosts, ca: path(FileName.ca), serverCertificate: path(FileName.serverCertificate),
            serverKey: path(FileName.serverKey), clientCertificate: path(FileName.clientCertificate),
            clientKey: path(FileName.clientKey),
            etcdFlags: [
                "--cert-file=\(path(FileName.serverCertificate))", "--key-file=\(path(FileName.serverKey))",
                "--trusted-ca-file=\(path(FileName.ca))", "--client-cert-auth",
                "--listen-client-urls=\((listen.isEmpty ? ["https://0.0.0.0:\(port)"] : listen).joined(separator: ","))",
                "--advertise-client-urls=\(urls.joined(separator: ","))",
                // etcd keeps every revision until compacted, and stops all writes at its quota.
                "--auto-compaction-mode=periodic", "--auto-compaction-retention=1h",
            ],
            storeLines: [
                "endpoints: [\(urls.joined(separator: ", "))]", "ca: \(path(FileName.ca))",
                "cert: \(path(FileName.clientCertificate))", "key: \(path(FileName.clientKey))",
            ])
    }

    static func hostInURL(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }
}
