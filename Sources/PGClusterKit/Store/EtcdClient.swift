import Foundation

/// A small client for etcd's v3 JSON gateway (`POST /v3/kv/range`, `/v3/kv/put`,
/// `/v3/kv/deleterange`, `/v3/kv/txn`, `/v3/lease/grant`, `/v3/lease/keepalive`,
/// `/v3/lease/revoke`): keys and values base64, 64-bit numbers as JSON strings.
///
/// Requests go over `HTTPPost` (libcurl, one connection a call; https verified against
/// `store.etcd.ca` and the endpoint's host name, with the client certificate when given),
/// not URLSession. With `store.etcd.user`, every call carries the token of
/// `/v3/auth/authenticate` as its `Authorization` header; a token etcd no longer accepts is
/// renewed once and the call made again.
/// Every call has a timeout; the endpoints are tried in turn, the last one that answered
/// first. A member whose raft term is older than one already seen is stale (cut off from
/// its cluster's leader, it may serve old data): its answer is dropped and the next
/// endpoint asked, as Patroni's etcd3 driver does.
public final class EtcdClient: @unchecked Sendable {
    public struct KeyValue: Sendable, Equatable {
        public var key: String
        public var value: Data
        public var createRevision: Int64
        public var modRevision: Int64
        public var lease: Int64
    }

    /// etcd authentication: a user and the file its password is read from (when needed,
    /// never kept longer than one authenticate call, never logged nor put in an error).
    public struct Credentials: Sendable, Equatable {
        public var user: String
        public var passwordFile: String

        public init(user: String, passwordFile: String) {
            self.user = user
            self.passwordFile = passwordFile
        }
    }

    public let endpoints: [URL]
    /// Seconds each request may take.
    public let timeout: Double
    /// https: the CA that verifies etcd, and the client certificate presented to it.
    public let tls: TLSFiles
    public let credentials: Credentials?
    private let lock = NSLock()
    private var preferred = 0
    private var highestTerm: Int64 = 0
    /// The token `/v3/auth/authenticate` gave, sent as `Authorization` on every call.
    private var token: String?

    public init(endpoints: [URL], timeout: Double = 2, tls: TLSFiles = TLSFiles(), credentials: Credentials? = nil) {
        self.endpoints = endpoints
        self.timeout = timeout
        self.tls = tls
        self.credentials = credentials
    }

    /// The client `store.etcd` describes.
    public convenience init(settings: EtcdSettings) {
        self.init(
            endpoints: settings.endpoints, timeout: settings.timeout,
            tls: TLSFiles(ca: settings.ca, cert: settings.cert, key: settings.key),
            credentials: settings.user.flatMap { user in settings.passwordFile.map { Credentials(user: user, passwordFile: $0) } })
    }

    // MARK: Keys

    public func get(_ key: String) async throws(ClusterError) -> KeyValue? {
        try await range(key).first
    }

    /// Every key that starts with `prefix`.
    public func list(prefix: String) async throws(ClusterError) -> [KeyValue] {
        try await range(prefix, end: Self.prefixEnd(prefix))
    }

    func range(_ key: String, end: String? = nil) async throws(ClusterError) -> [KeyValue] {
        var body: [String: Any] = ["key": Self.b64(key)]
        if let end { body["range_end"] = Self.b64(end) }
        let reply = try await call("/v3/kv/range", body)
        return ((reply["kvs"] as? [[String: Any]]) ?? []).compactMap(Self.keyValue)
    }

    public func delete(_ key: String, prefix: Bool = false) async throws(ClusterError) {
        var body: [String: Any] = ["key": Self.b64(key)]
        if prefix { body["range_end"] = Self.b64(Self.prefixEnd(key)) }
        _ = try await call("/v3/kv/deleterange", body)
    }

    /// Puts `value` only while `key` is as `expected` says: absent (`nil`), or at that
    /// mod revision. Returns whether it was put, and the key as it is now when not.
    ///
    /// `fence`: a key that must still have that create revision (the cluster lock this
    /// writer holds: its epoch); when it does not, `fenced` is what the key is now (nil when
    /// it is gone) and nothing was put. Put, `revision` is the key's new mod revision.
    public func put(
        _ key: String, _ value: Data, lease: Int64? = nil, ifModRevision expected: Int64?,
        fence: (key: String, createRevision: Int64)? = nil
    ) async throws(ClusterError) -> (done: Bool, current: KeyValue?, fenced: KeyValue??, revision: Int64?) {
        let compare: [String: Any] =
            if let expected {
                ["key": Self.b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": String(expected)]
            } else {
                ["key": Self.b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"]
            }
        var compares = [compare]
        var failure: [[String: Any]] = [["request_range": ["key": Self.b64(key)]]]
        if let fence {
            compares.append(
                ["key": Self.b64(fence.key), "result": "EQUAL", "target": "CREATE", "create_revision": String(fence.createRevision)])
            failure.append(["request_range": ["key": Self.b64(fence.key)]])
        }
        var put: [String: Any] = ["key": Self.b64(key), "value": value.base64EncodedString()]
        if let lease { put["lease"] = String(lease) }
        let reply = try await call(
            "/v3/kv/txn", ["compare": compares, "success": [["request_put": put]], "failure": failure])
        if reply["succeeded"] as? Bool == true { return (true, nil, nil, Self.revision(of: reply)) }
        let responses = reply["responses"] as? [[String: Any]] ?? []
        func kv(_ index: Int) -> KeyValue? {
            guard index < responses.count, let range = responses[index]["response_range"] as? [String: Any] else { return nil }
            return (range["kvs"] as? [[String: Any]])?.first.flatMap(Self.keyValue)
        }
        let current = kv(0)
        guard let fence else { return (false, current, nil, nil) }
        let holder = kv(1)
        return (false, current, holder?.createRevision == fence.createRevision ? nil : .some(holder), nil)
    }

    /// Puts every one of `puts` (key, value, lease) when each of `compares` holds
    /// (``compareCreated(_:_:)``, ``compareModified(_:_:)``); returns the revision they were
    /// put at (a transaction's puts all share one: each new key's create revision), nil
    /// when a compare did not hold.
    public func transaction(compares: [[String: Any]], puts: [(key: String, value: Data, lease: Int64?)]) async throws(ClusterError)
        -> Int64?
    {
        let requests: [[String: Any]] = puts.map { put in
            var request: [String: Any] = ["key": Self.b64(put.key), "value": put.value.base64EncodedString()]
            if let lease = put.lease { request["lease"] = String(lease) }
            return ["request_put": request]
        }
        let reply = try await call("/v3/kv/txn", ["compare": compares, "success": requests])
        guard reply["succeeded"] as? Bool == true else { return nil }
        guard let revision = Self.revision(of: reply) else {
            throw ClusterError("etcd answered a transaction without its revision: \(reply)")
        }
        return revision
    }

    /// A transaction's condition: `key` was created at `revision` (0: it does not exist).
    public static func compareCreated(_ key: String, _ revision: Int64) -> [String: Any] {
        ["key": b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": String(revision)]
    }

    /// A transaction's condition: `key` exists on `lease`.
    public static func compareLease(_ key: String, _ lease: Int64) -> [String: Any] {
        ["key": b64(key), "result": "EQUAL", "target": "LEASE", "lease": String(lease)]
    }

    /// Deletes `key` only while it is the one created at `revision`; whether it did.
    @discardableResult
    public func delete(_ key: String, ifCreated revision: Int64) async throws(ClusterError) -> Bool {
        let reply = try await call(
            "/v3/kv/txn",
            ["compare": [Self.compareCreated(key, revision)], "success": [["request_delete_range": ["key": Self.b64(key)]]]])
        return reply["succeeded"] as? Bool == true
    }

    /// A transaction's condition: `key` was last changed at `revision` (0: it does not exist).
    public static func compareModified(_ key: String, _ revision: Int64) -> [String: Any] {
        ["key": b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": String(revision)]
    }

    // MARK: Leases

    /// A lease of `ttl` seconds; its ID.
    public func grant(ttl: Int) async throws(ClusterError) -> Int64 {
        let reply = try await call("/v3/lease/grant", ["TTL": String(ttl)])
        guard let id = Self.int(reply["ID"]) else { throw ClusterError("etcd granted no lease: \(reply)") }
        return id
    }

    /// Renews the lease; returns the seconds it now has, 0 when it had already expired.
    public func keepAlive(_ lease: Int64) async throws(ClusterError) -> Int {
        let reply = try await call("/v3/lease/keepalive", ["ID": String(lease)])
        let result = reply["result"] as? [String: Any] ?? reply
        return Self.int(result["TTL"]).map(Int.init) ?? 0
    }

    public func revoke(_ lease: Int64) async {
        _ = try? await call("/v3/lease/revoke", ["ID": String(lease)])
    }

    // MARK: Authentication

    /// etcd's messages for a token it no longer accepts: expired (simple tokens live five
    /// minutes unused), or issued before the auth store changed. Authenticating again mends both.
    static func isStaleToken(_ message: String) -> Bool {
        message.contains("invalid auth token") || message.contains("auth store is old")
            || message.contains("revision of auth store is old")
    }

    /// A fresh token for `credentials`, from `/v3/auth/authenticate`; kept for later calls.
    func authenticate(_ credentials: Credentials) async throws(ClusterError) -> String {
        let password: String
        do {
            let text = try String(contentsOfFile: credentials.passwordFile, encoding: .utf8)
            // The file's last line break is not part of the password (echo pw > file).
            password = text.hasSuffix("\r\n") ? String(text.dropLast(2)) : text.hasSuffix("\n") ? String(text.dropLast()) : text
        } catch {
            throw ClusterError(
                "cannot read store.etcd.passwordFile \(credentials.passwordFile): \(error.localizedDescription)",
                details: ["it must be readable by the user pgcluster runs as, and mode 0600"])
        }
        let reply: [String: Any]
        switch try await exchange("/v3/auth/authenticate", ["name": credentials.user, "password": password], token: nil) {
        case .reply(let object): reply = object
        case .staleToken(let message): throw ClusterError(message)
        }
        guard let token = reply["token"] as? String, !token.isEmpty else {
            throw ClusterError("etcd gave no token to user \(credentials.user): is authentication enabled on it (etcdctl auth enable)?")
        }
        lock.withLock { self.token = token }
        return token
    }

    /// Tests: replaces the token, as if etcd had let it expire.
    func replaceToken(with token: String) { lock.withLock { self.token = token } }

    // MARK: Transport

    /// What one round over the endpoints gave: etcd's answer, or a token etcd no longer takes.
    enum Exchange {
        case reply([String: Any])
        case staleToken(String)
    }

    /// POSTs `body` to the endpoints in turn; with credentials, under the token (got first
    /// when there is none), and once more with a new token when etcd says it expired.
    func call(_ path: String, _ body: [String: Any]) async throws(ClusterError) -> [String: Any] {
        guard let credentials else {
            switch try await exchange(path, body, token: nil) {
            case .reply(let reply): return reply
            case .staleToken(let message): throw ClusterError(message, details: ["etcd wants authentication: set store.etcd.user and passwordFile"])
            }
        }
        var token = lock.withLock { self.token }
        if token == nil { token = try await authenticate(credentials) }
        switch try await exchange(path, body, token: token) {
        case .reply(let reply): return reply
        case .staleToken: break
        }
        let renewed = try await authenticate(credentials)
        switch try await exchange(path, body, token: renewed) {
        case .reply(let reply): return reply
        case .staleToken(let message): throw ClusterError(message)
        }
    }

    /// One round over the endpoints (the one that answered last first); the first fresh
    /// answer. etcd's own errors (a lease not found, a bad request, permission denied) are
    /// final; a stale token is returned for the caller to renew. Nothing of the request body
    /// (it may hold the password) goes into an error.
    private func exchange(_ path: String, _ body: [String: Any], token: String?) async throws(ClusterError) -> Exchange {
        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: body)
        } catch {
            throw ClusterError("cannot encode an etcd request to \(path)")
        }
        let headers = token.map { ["Authorization: \($0)"] } ?? []
        let start = lock.withLock { preferred }
        var problems: [String] = []
        var tlsFailures = 0
        for offset in 0..<endpoints.count {
            let index = (start + offset) % endpoints.count
            let endpoint = endpoints[index]
            let reply: [String: Any]
            switch await HTTPPost.post(endpoint.appendingPathComponent(path), body: data, headers: headers, tls: tls, timeout: timeout) {
            case .failure(let failure):
                if case .tls = failure { tlsFailures += 1 }
                problems.append("\(endpoint.absoluteString): \(failure)")
                continue
            case .success(let response):
                // Only etcd's 200 with a JSON object is an answer. Anything else (an error page,
                // a proxy's, a member that fails) is an error, never "no keys".
                let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any]
                let message = object?["message"] as? String ?? object?["error"] as? String
                let text = String(decoding: response.body.prefix(120), as: UTF8.self)
                guard response.status == 200 else {
                    if let message, Self.isStaleToken(message) {
                        return .staleToken("etcd at \(endpoint.absoluteString) refused \(path): \(message)")
                    }
                    if (400..<500).contains(response.status), let message {
                        throw refusal(endpoint, path, "HTTP \(response.status): \(message)")
                    }
                    problems.append("\(endpoint.absoluteString): HTTP \(response.status): \(message ?? text)")
                    continue
                }
                guard let object else {
                    problems.append("\(endpoint.absoluteString): HTTP \(response.status), not a JSON object: \(text)")
                    continue
                }
                reply = object
            }
            if let message = reply["message"] as? String ?? reply["error"] as? String {
                if Self.isStaleToken(message) { return .staleToken("etcd at \(endpoint.absoluteString) refused \(path): \(message)") }
                throw refusal(endpoint, path, message)
            }
            let header = (reply["header"] as? [String: Any]) ?? ((reply["result"] as? [String: Any])?["header"] as? [String: Any])
            if let term = Self.int(header?["raft_term"]) {
                let stale: Bool = lock.withLock {
                    if term < highestTerm { return true }
                    highestTerm = term
                    return false
                }
                if stale {
                    problems.append("\(endpoint.absoluteString): a stale member (raft term \(term), older than one already seen)")
                    continue
                }
            }
            lock.withLock { preferred = index }
            return .reply(reply)
        }
        let hint =
            tlsFailures > 0
            ? "check store.etcd.ca (the CA that signed etcd's certificate), that the endpoint's host name is in that certificate, "
                + "and store.etcd.cert/key (a client certificate etcd's --trusted-ca-file trusts)"
            : "check that etcd runs and that store.etcd.endpoints lists it"
        throw ClusterError(
            "no etcd endpoint answered \(path) within \(ClusterLock.formatSeconds(timeout)): \(problems.joined(separator: "; "))",
            details: [hint])
    }

    /// etcd's own refusal, with what to check for the refusals an operator can mend.
    private func refusal(_ endpoint: URL, _ path: String, _ message: String) -> ClusterError {
        var details: [String] = []
        if message.contains("authentication failed") {
            details.append("check store.etcd.user (\(credentials?.user ?? "not set")) and the password in store.etcd.passwordFile")
        } else if message.contains("permission denied") {
            details.append(
                credentials.map { "etcd user \($0.user) needs a role with readwrite on store.etcd.prefix (etcdctl role grant-permission --prefix)" }
                    ?? "etcd has authentication enabled: set store.etcd.user and passwordFile")
        } else if message.contains("user name is empty") || message.contains("user name not found") {
            details.append("etcd has authentication enabled: set store.etcd.user and passwordFile")
        }
        return ClusterError("etcd at \(endpoint.absoluteString) refused \(path): \(message)", details: details)
    }

    static func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    static func int(_ value: Any?) -> Int64? {
        if let text = value as? String { return Int64(text) }
        if let number = value as? NSNumber { return number.int64Value }
        return nil
    }

    /// The store's revision a reply was made at (its header's): after a write, the write's.
    static func revision(of reply: [String: Any]) -> Int64? {
        int((reply["header"] as? [String: Any])?["revision"])
    }

    static func keyValue(_ object: [String: Any]) -> KeyValue? {
        guard let key = (object["key"] as? String).flatMap({ Data(base64Encoded: $0) }) else { return nil }
        return KeyValue(
            key: String(decoding: key, as: UTF8.self),
            value: (object["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data(),
            createRevision: int(object["create_revision"]) ?? 0, modRevision: int(object["mod_revision"]) ?? 0,
            lease: int(object["lease"]) ?? 0)
    }

    /// The end of the range of keys that start with `prefix`: its last byte plus one.
    static func prefixEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.removeLast()
        }
        return "\0"
    }
}
