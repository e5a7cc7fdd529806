import Foundation

/// A SCRAM-SHA-256 secret as PostgreSQL stores it in `pg_authid.rolpassword`
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5802 and 7677), made
/// here for the passwords pgcluster generates.
///
/// Why not PostgreSQL's own: the iteration count (4096 in PostgreSQL 15, not settable
/// before 16's `scram_iterations`) is work every client repeats on every connection
/// (PBKDF2 on the client's side: libpq measured at ~5 ms of CPU a connection here, about
/// half of a connection with TLS). pgcluster connects to every node on every command and
/// every WAL receiver reconnects on every failover: with eight standbys on one machine,
/// measured, `status` went from 0.23–0.27 to 0.13–0.14 s and a failover's CPU from
/// 0.68–0.93 to 0.51–0.67 CPU-seconds. The iterations stretch a password a person can remember; a
/// generated one (32 characters from 57, ~186 bits) gains nothing measurable from 12 bits
/// of stretching. A password given in the spec (a person's) keeps PostgreSQL's default.
public enum SCRAMSecret {
    /// The count for generated passwords: the work of a 64th of PostgreSQL's default.
    public static let generatedIterations = 64

    /// The secret of `password` with `iterations` and a random 16-byte salt; nil when the
    /// password is not plain printable ASCII (SASLprep would have to normalize it; the
    /// caller lets libpq do that).
    public static func make(password: String, iterations: Int = generatedIterations) -> String? {
        guard let salt = try? LibCrypto.randomBytes(16) else { return nil }
        return make(password: password, salt: salt, iterations: iterations)
    }

    /// The secret with a given salt (tests compare it with other implementations).
    public static func make(password: String, salt: [UInt8], iterations: Int) -> String? {
        // SASLprep leaves printable ASCII as it is (PostgreSQL's pg_saslprep returns pure
        // ASCII unchanged); anything else goes to libpq.
        guard iterations >= 1, !password.isEmpty, password.utf8.allSatisfy({ (0x20...0x7e).contains($0) }) else {
            return nil
        }
        // SaltedPassword = PBKDF2-HMAC-SHA256(password, salt, iterations), one block. (libcrypto
        // failing to hash is nil too: the caller then lets libpq make the secret.)
        let keys = { () throws(LibCrypto.Failure) -> (stored: [UInt8], server: [UInt8]) in
            let salted = try LibCrypto.pbkdf2SHA256(password: Array(password.utf8), salt: salt, iterations: iterations)
            let clientKey = try LibCrypto.hmacSHA256(key: salted, Array("Client Key".utf8))
            return (try LibCrypto.sha256(clientKey), try LibCrypto.hmacSHA256(key: salted, Array("Server Key".utf8)))
        }
        guard let (storedKey, serverKey) = try? keys() else { return nil }
        func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
        return "SCRAM-SHA-256$\(iterations):\(base64(salt))$\(base64(storedKey)):\(base64(serverKey))"
    }
}

extension Credentials.Login {
    /// For a password pgcluster generated: the statement that stores its cheap secret
    /// (``SCRAMSecret``) in place of the one PostgreSQL made; nil for any other.
    var cheapSecretStatement: String? {
        guard generated, let secret = SCRAMSecret.make(password: password) else { return nil }
        return "ALTER ROLE \(ConfigText.identifier(user)) PASSWORD \(ConfigText.sqlLiteral(secret))"
    }
}
