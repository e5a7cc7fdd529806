import Foundation

/// The accounts of a cluster: the superuser pgcluster connects with, the replication role
/// standbys stream with, and the spec's application role (`app:`), if any. Stored with
/// mode 0600; never printed.
public struct Credentials: Sendable, Equatable, Codable, CustomStringConvertible {
    public struct Login: Sendable, Equatable, Codable {
        public var user: String
        public var password: String
        /// Whether pgcluster made the password (``Credentials/generatePassword()``), not a
        /// person: only such a password is stored with a cheap SCRAM secret
        /// (``SCRAMSecret/generatedIterations``). A file from before this was recorded reads
        /// false: its passwords keep PostgreSQL's default.
        public var generated: Bool

        public init(user: String, password: String, generated: Bool = false) {
            self.user = user
            self.password = password
            self.generated = generated
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            user = try container.decode(String.self, forKey: .user)
            password = try container.decode(String.self, forKey: .password)
            generated = try container.decodeIfPresent(Bool.self, forKey: .generated) ?? false
        }

        /// The spec's password (a person's), else the stored one, else a new one.
        static func resolve(user: String, given: String?, stored: Login?) -> Login {
            if let given { return Login(user: user, password: given) }
            if let stored { return Login(user: user, password: stored.password, generated: stored.generated) }
            return Login(user: user, password: generatePassword(), generated: true)
        }
    }

    public var superuser: Login
    public var replication: Login
    /// `app.user` and its generated password; nil without `app:` in the spec.
    public var app: Login?
    /// The CA certificate pgcluster verifies the servers with (a path on this machine), or
    /// nil with `tls.mode: off`. Not stored: it follows from the spec. It travels with the
    /// passwords because everything that connects to a node carries both.
    public var rootCertificate: String?

    enum CodingKeys: String, CodingKey {
        case superuser, replication, app
    }

    public init(superuser: Login, replication: Login, app: Login? = nil, rootCertificate: String? = nil) {
        self.superuser = superuser
        self.replication = replication
        self.app = app
        self.rootCertificate = rootCertificate
    }

    /// The CA certificate clients of `spec`'s servers verify them with: local.dir/ca.crt
    /// (generate), the spec's `tls.caFile` (files), none (off).
    public static func rootCertificate(for spec: ClusterSpec) -> String? {
        switch spec.tls.mode {
        case .generate: LocalLayout(spec: spec).caCertificate
        case .files: spec.tls.caFile
        case .off: nil
        }
    }

    /// Passwords are left out on purpose.
    public var description: String { "Credentials(superuser: \(superuser.user), replication: \(replication.user))" }

    /// A random password of 32 characters from an alphabet that needs no quoting anywhere.
    public static func generatePassword() -> String {
        let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<32).map { _ in alphabet.randomElement(using: &generator)! })
    }

    /// The spec's passwords where it gives them; otherwise those stored earlier at `path`;
    /// otherwise new ones (stored by ``save(to:)``).
    public static func resolve(spec: ClusterSpec, storedAt path: String) throws(ClusterError) -> Credentials {
        let stored = try load(path)
        return Credentials(
            superuser: .resolve(user: spec.superuser.user, given: spec.superuser.password, stored: stored?.superuser),
            replication: .resolve(user: spec.replication.user, given: spec.replication.password, stored: stored?.replication),
            app: spec.app.map { app in
                .resolve(user: app.user, given: nil, stored: stored?.app.flatMap { $0.user == app.user ? $0 : nil })
            },
            rootCertificate: rootCertificate(for: spec))
    }

    /// The cluster's stored credentials; an error saying how to create the cluster when
    /// there are none.
    public static func stored(spec: ClusterSpec) throws(ClusterError) -> Credentials {
        guard let stored = try storedIfAny(spec: spec) else {
            var details = ["create it with: pgcluster init -f \(spec.file)"]
            if let backup = spec.backup, backup.holdsBackupsHere(of: spec.name) {
                // Destroyed (or local.dir lost): its backups can make it again, and init would refuse their repository.
                details = ["make it again from its backups in \(backup.repo): pgcluster restore -f \(spec.file) --to latest --in-place --yes"]
            }
            throw ClusterError("no cluster at \(spec.local.dir): \(LocalLayout(spec: spec).credentialsFile) is missing", details: details)
        }
        return stored
    }

    /// The cluster's stored credentials, nil when its local.dir has none (a cluster
    /// destroyed, or whose local.dir was lost with its machine).
    public static func storedIfAny(spec: ClusterSpec) throws(ClusterError) -> Credentials? {
        guard var stored = try load(LocalLayout(spec: spec).credentialsFile) else { return nil }
        stored.rootCertificate = rootCertificate(for: spec)
        return stored
    }

    public static func load(_ path: String) throws(ClusterError) -> Credentials? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(Credentials.self, from: data)
        } catch {
            throw ClusterError("the credentials file \(path) is damaged; restore it or give the passwords in the spec")
        }
    }

    public func save(to path: String) throws(ClusterError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = (try? encoder.encode(self)) ?? Data()
        try FileWriter.writeAtomically(data, to: path, mode: 0o600)
    }

    /// A libpq password file line for the replication role on every host, for walreceivers
    /// and pg_basebackup: `*:*:*:user:password`, with `:` and `\` escaped.
    public var replicationPassfile: String {
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: ":", with: "\\:")
        }
        return "*:*:*:\(escape(replication.user)):\(escape(replication.password))\n"
    }
}
