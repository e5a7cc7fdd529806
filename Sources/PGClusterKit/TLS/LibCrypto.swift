import COpenSSL
import Foundation

/// OpenSSL's libcrypto, which libpq and libcurl load anyway, for the few things pgcluster
/// signs and hashes itself: the cluster CA's P-256 keys and X.509 certificates
/// (``ClusterCA``) and SCRAM secrets (``SCRAMSecret``). Each wrapper owns its pointer and
/// frees it once; none is changed after it is made, so they are shared across tasks.
///
/// Why not swift-crypto and swift-certificates, which did this before: together they were
/// 98 s of a 230 s clean build (BoringSSL's 380 C files, X509's 107 Swift files), about
/// 40 % of every CI run's build, for ~300 lines of use (docs/PERFORMANCE.md, "Build time").
enum LibCrypto {
    /// A failed libcrypto call: what was being done and the reasons on OpenSSL's error queue,
    /// which it empties. (The queue is per thread and shared with libpq and libcurl: each
    /// operation here empties it first, ``fresh()``, so the reasons are its own, and leaves
    /// it empty.)
    struct Failure: Error, CustomStringConvertible {
        let description: String

        init(_ what: String) {
            var reasons: [String] = []
            while case let code = ERR_get_error(), code != 0 {
                var buffer = [CChar](repeating: 0, count: 256)
                ERR_error_string_n(code, &buffer, buffer.count)
                reasons.append(String(cString: buffer))
            }
            description = reasons.isEmpty ? what : "\(what) (\(reasons.joined(separator: "; ")))"
        }
    }

    /// Empties this thread's error queue before an operation (what libpq or libcurl left
    /// there is not this operation's reason).
    static func fresh() { ERR_clear_error() }

    /// `count` bytes from libcrypto's random generator (the OS's, seeded by it).
    static func randomBytes(_ count: Int) throws(Failure) -> [UInt8] {
        fresh()
        var bytes = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&bytes, Int32(count)) == 1 else { throw Failure("no random bytes") }
        return bytes
    }

    static func sha256(_ data: [UInt8]) throws(Failure) -> [UInt8] {
        fresh()
        var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        guard SHA256(data, data.count, &digest) != nil else { throw Failure("SHA-256 failed") }
        return digest
    }

    static func hmacSHA256(key: [UInt8], _ data: [UInt8]) throws(Failure) -> [UInt8] {
        fresh()
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard HMAC(EVP_sha256(), key, Int32(key.count), data, data.count, &digest, &length) != nil, length == 32 else {
            throw Failure("HMAC-SHA-256 failed")
        }
        return Array(digest.prefix(Int(length)))
    }

    /// PBKDF2-HMAC-SHA256 of `password` and `salt`, one 32-byte block (SCRAM's SaltedPassword).
    static func pbkdf2SHA256(password: [UInt8], salt: [UInt8], iterations: Int) throws(Failure) -> [UInt8] {
        fresh()
        var output = [UInt8](repeating: 0, count: 32)
        let done = password.withUnsafeBufferPointer { pass in
            pass.withMemoryRebound(to: CChar.self) { pass in
                PKCS5_PBKDF2_HMAC(
                    pass.baseAddress, Int32(pass.count), salt, Int32(salt.count), Int32(iterations), EVP_sha256(), 32, &output)
            }
        }
        guard done == 1 else { throw Failure("PBKDF2 failed") }
        return output
    }

    /// What a memory BIO holds, as text (PEM).
    static func text(of bio: OpaquePointer) -> String {
        var data: UnsafeMutablePointer<CChar>?
        let count = pgc_bio_mem_data(bio, &data)
        guard let data, count > 0 else { return "" }
        return data.withMemoryRebound(to: UInt8.self, capacity: count) {
            String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self)
        }
    }

    /// Runs `body` with a read-only memory BIO over `text`.
    static func reading<T>(_ text: String, _ body: (OpaquePointer) -> T?) -> T? {
        fresh()
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { buffer -> T? in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return body(bio)
        }
    }

    /// Runs `write` into a memory BIO and returns what it wrote.
    static func writing(_ what: String, _ write: (OpaquePointer) -> Int32) throws(Failure) -> String {
        fresh()
        guard let bio = BIO_new(BIO_s_mem()) else { throw Failure("cannot write \(what): no memory") }
        defer { BIO_free(bio) }
        let text = write(bio) == 1 ? text(of: bio) : ""
        guard !text.isEmpty else { throw Failure("cannot write \(what)") }
        return text
    }


}

/// An ECDSA P-256 private key (an `EVP_PKEY`).
final class PrivateKey: @unchecked Sendable {
    let pointer: OpaquePointer

    private init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { EVP_PKEY_free(pointer) }

    /// A new P-256 key.
    static func p256() throws(LibCrypto.Failure) -> PrivateKey {
        LibCrypto.fresh()
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nil) else { throw LibCrypto.Failure("no key context") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) == 1,
            EVP_PKEY_CTX_set_ec_paramgen_curve_nid(context, NID_X9_62_prime256v1) == 1,
            EVP_PKEY_keygen(context, &key) == 1, let key
        else { throw LibCrypto.Failure("cannot make a P-256 key") }
        return PrivateKey(key)
    }

    /// A key read from PEM (PKCS #8, as ``pem()`` writes it, or SEC 1 "EC PRIVATE KEY"). An
    /// encrypted key is refused: no pass phrase is asked (OpenSSL's default would prompt on
    /// the terminal).
    convenience init(pem: String) throws(LibCrypto.Failure) {
        guard let key = LibCrypto.reading(pem, { PEM_read_bio_PrivateKey($0, nil, { _, _, _, _ in -1 }, nil) }) else {
            throw LibCrypto.Failure("not an unencrypted PEM private key")
        }
        self.init(key)
    }

    /// PKCS #8 PEM ("BEGIN PRIVATE KEY"), unencrypted: the file's mode protects it.
    func pem() throws(LibCrypto.Failure) -> String {
        try LibCrypto.writing("the key") { PEM_write_bio_PrivateKey($0, pointer, nil, nil, 0, nil, nil) }
    }
}

/// A name a certificate vouches for (a subject alternative name).
public enum AlternativeName: Sendable, Equatable {
    /// An IPv4 (4 bytes) or IPv6 (16 bytes) address.
    case ipAddress([UInt8])
    case dnsName(String)
}

/// What a certificate may prove (its extended key usage).
public enum CertificateUsage: String, Sendable {
    case serverAuth, clientAuth
}

/// An X.509 certificate (an `X509`).
final class X509Certificate: @unchecked Sendable {
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { X509_free(pointer) }

    convenience init(pem: String) throws(LibCrypto.Failure) {
        guard let certificate = LibCrypto.reading(pem, { PEM_read_bio_X509($0, nil, nil, nil) }) else {
            throw LibCrypto.Failure("not a PEM certificate")
        }
        self.init(certificate)
    }

    func pem() throws(LibCrypto.Failure) -> String { try LibCrypto.writing("the certificate") { PEM_write_bio_X509($0, pointer) } }

    /// The serial number in lower-case hexadecimal.
    var serialHex: String {
        defer { ERR_clear_error() }
        guard let number = ASN1_INTEGER_to_BN(X509_get0_serialNumber(pointer), nil) else { return "" }
        defer { BN_free(number) }
        guard let hex = BN_bn2hex(number) else { return "" }
        defer { pgc_openssl_free(hex) }
        return String(cString: hex).lowercased()
    }

    var notBefore: Date { Self.date(X509_get0_notBefore(pointer)) }
    var notAfter: Date { Self.date(X509_get0_notAfter(pointer)) }

    static func date(_ time: UnsafePointer<ASN1_TIME>?) -> Date {
        var parts = tm()
        defer { ERR_clear_error() }
        guard let time, ASN1_TIME_to_tm(time, &parts) == 1 else { return .distantPast }
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }

    /// Its subject alternative names, in order; empty when it has none.
    var alternativeNames: [AlternativeName] {
        defer { ERR_clear_error() }
        guard let raw = X509_get_ext_d2i(pointer, NID_subject_alt_name, nil, nil) else { return [] }
        let names = OpaquePointer(raw)
        defer { GENERAL_NAMES_free(names) }
        return (0..<pgc_general_names_count(names)).compactMap { index in
            guard let name = pgc_general_names_value(names, index), let string = pgc_general_name_string(name),
                let data = ASN1_STRING_get0_data(string)
            else { return nil }
            let bytes = Array(UnsafeBufferPointer(start: data, count: Int(ASN1_STRING_length(string))))
            return pgc_general_name_type(name) == GEN_IPADD ? .ipAddress(bytes) : .dnsName(String(decoding: bytes, as: UTF8.self))
        }
    }

    /// True when `key` is the private key of this certificate's public key.
    func belongs(_ key: PrivateKey) -> Bool {
        defer { ERR_clear_error() }
        return X509_check_private_key(pointer, key.pointer) == 1
    }

    /// True when `issuer` signed it: its issuer is `issuer`'s subject, and the signature
    /// checks against `issuer`'s key.
    func isSigned(by issuer: X509Certificate) -> Bool {
        defer { ERR_clear_error() }
        guard X509_NAME_cmp(X509_get_issuer_name(pointer), X509_get_subject_name(issuer.pointer)) == 0,
            let key = X509_get0_pubkey(issuer.pointer)
        else { return false }
        return X509_verify(pointer, key) == 1
    }

    /// A new certificate for `key`'s public key, signed by `issuer` (nil: by `key` itself).
    /// `extensions`: (OpenSSL's extension name, its configuration value), e.g.
    /// `("basicConstraints", "critical,CA:FALSE")`.
    static func make(
        subject: [(field: String, value: String)], key: PrivateKey, issuer: (certificate: X509Certificate, key: PrivateKey)?,
        notBefore: Date, notAfter: Date, extensions: [(name: String, value: String)], alternativeNames: [AlternativeName]
    ) throws(LibCrypto.Failure) -> X509Certificate {
        LibCrypto.fresh()
        guard let raw = X509_new() else { throw LibCrypto.Failure("no certificate") }
        let certificate = X509Certificate(raw)
        let x = certificate.pointer
        // 16 random bytes, positive and without a leading zero (RFC 5280: at most 20 octets).
        var serialBytes = try LibCrypto.randomBytes(16)
        serialBytes[0] = (serialBytes[0] & 0x7f) | 0x40
        guard let number = BN_bin2bn(serialBytes, Int32(serialBytes.count), nil) else { throw LibCrypto.Failure("no serial") }
        defer { BN_free(number) }
        guard let serial = BN_to_ASN1_INTEGER(number, nil) else { throw LibCrypto.Failure("no serial") }
        defer { ASN1_INTEGER_free(serial) }
        guard let name = X509_NAME_new() else { throw LibCrypto.Failure("no name") }
        defer { X509_NAME_free(name) }
        for (field, value) in subject {
            guard X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, value, -1, -1, 0) == 1 else {
                throw LibCrypto.Failure("cannot name the subject \(field)=\(value)")
            }
        }
        guard X509_set_version(x, 2) == 1, X509_set_serialNumber(x, serial) == 1,
            ASN1_TIME_set(X509_getm_notBefore(x), time_t(notBefore.timeIntervalSince1970)) != nil,
            ASN1_TIME_set(X509_getm_notAfter(x), time_t(notAfter.timeIntervalSince1970)) != nil,
            X509_set_subject_name(x, name) == 1,
            X509_set_issuer_name(x, issuer.map { X509_get_subject_name($0.certificate.pointer) } ?? name) == 1,
            X509_set_pubkey(x, key.pointer) == 1
        else { throw LibCrypto.Failure("cannot fill in the certificate") }

        var context = X509V3_CTX()
        X509V3_set_ctx(&context, issuer?.certificate.pointer ?? x, x, nil, nil, 0)
        for (extensionName, value) in extensions {
            guard let made = X509V3_EXT_conf_nid(nil, &context, OBJ_sn2nid(extensionName), value) else {
                throw LibCrypto.Failure("cannot make the extension \(extensionName)=\(value)")
            }
            defer { X509_EXTENSION_free(made) }
            guard X509_add_ext(x, made, -1) == 1 else { throw LibCrypto.Failure("cannot add the extension \(extensionName)") }
        }
        if !alternativeNames.isEmpty { try addAlternativeNames(alternativeNames, to: x) }
        guard X509_sign(x, (issuer?.key ?? key).pointer, EVP_sha256()) > 0 else { throw LibCrypto.Failure("cannot sign") }
        return certificate
    }

    /// The subjectAltName extension, built name by name (no configuration text to escape).
    private static func addAlternativeNames(_ names: [AlternativeName], to x: OpaquePointer) throws(LibCrypto.Failure) {
        guard let list = pgc_general_names_new() else { throw LibCrypto.Failure("no name list") }
        defer { GENERAL_NAMES_free(list) }
        for name in names {
            guard let general = GENERAL_NAME_new() else { throw LibCrypto.Failure("no name") }
            let bytes: [UInt8]
            let type: Int32
            switch name {
            case .ipAddress(let address): (bytes, type) = (address, GEN_IPADD)
            case .dnsName(let dns): (bytes, type) = (Array(dns.utf8), GEN_DNS)
            }
            guard let string = type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new() else {
                GENERAL_NAME_free(general)
                throw LibCrypto.Failure("no string for the name \(name)")
            }
            // The name owns the string from here on, and the list the name.
            GENERAL_NAME_set0_value(general, type, UnsafeMutableRawPointer(string))
            guard ASN1_STRING_set(string, bytes, Int32(bytes.count)) == 1 else {
                GENERAL_NAME_free(general)
                throw LibCrypto.Failure("cannot encode the name \(name)")
            }
            guard pgc_general_names_push(list, general) > 0 else {
                GENERAL_NAME_free(general)
                throw LibCrypto.Failure("cannot list the name \(name)")
            }
        }
        guard X509_add1_ext_i2d(x, NID_subject_alt_name, UnsafeMutableRawPointer(list), 0, UInt(X509V3_ADD_DEFAULT)) == 1 else {
            throw LibCrypto.Failure("cannot add the subject alternative names")
        }
    }
}
