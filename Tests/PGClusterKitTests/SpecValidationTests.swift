import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension SpecValidationTests {
    /// A spec that must be refused, and the problem it must be refused with.
    struct BadSpec: Sendable, CustomTestStringConvertible {
        var label: String
        var yaml: String
        /// The key path the problem names (`""` for the file as a whole).
        var key: String
        /// A part of the problem's reason.
        var reason: String
        /// The line the problem points at, when it must point at one.
        var line: Int? = nil

        var testDescription: String { label }
    }
}

/// A valid three-node spec; each bad spec replaces or adds one part.
private func specYAML(
    top: String = "", name: String = "name: t\n", nodes: String? = nil, replication: String = "",
    postgres: String = ""
) -> String {
    let defaultNodes = """
        nodes:
          - name: db_0
            port: 15432
            role: primary
          - name: db_1
            port: 15433
          - name: db_2
            port: 15434

        """
    return name + top + postgres + replication + (nodes ?? defaultNodes)
}

private func nodesYAML(_ entries: [String]) -> String {
    "nodes:\n" + entries.map { "  - " + $0.replacingOccurrences(of: "\n", with: "\n    ") + "\n" }.joined()
}

@Suite("Spec validation")
struct SpecValidationTests {
    static let badSpecs: [BadSpec] = [
        // Issue 20: a login or host that ssh would read as an option (-oProxyCommand=...).
        BadSpec(
            label: "ssh.user starting with '-'", yaml: specYAML(
                top: "backend: ssh\nssh:\n  user: -oProxyCommand=touch\n",
                nodes: "nodes:\n  - {name: db_0, host: 10.0.0.1, port: 5432, role: primary}\n  - {name: db_1, host: 10.0.0.2, port: 5432}\n"),
            key: "ssh.user", reason: "not a login name"),
        BadSpec(
            label: "a host starting with '-'",
            yaml: specYAML(nodes: "nodes:\n  - {name: db_0, host: -oProxyCommand=x, port: 15432, role: primary}\n  - {name: db_1, port: 15433}\n"),
            key: "nodes[0].host", reason: "not a host name"),
        BadSpec(label: "unknown key in watch", yaml: specYAML(top: "watch:\n  intervall: 1\n"), key: "watch.intervall", reason: "unknown key", line: 3),
        BadSpec(label: "watch.interval not a duration", yaml: specYAML(top: "watch:\n  interval: soon\n"), key: "watch.interval", reason: "not a duration", line: 3),
        BadSpec(label: "watch.interval of zero", yaml: specYAML(top: "watch:\n  interval: 0\n"), key: "watch.interval", reason: "outside"),
        BadSpec(label: "watch.failoverAfter shorter than the interval", yaml: specYAML(top: "watch:\n  interval: 5\n  failoverAfter: 1\n"), key: "watch.failoverAfter", reason: "shorter than watch.interval"),
        BadSpec(label: "watch.failoverAfter negative", yaml: specYAML(top: "watch:\n  failoverAfter: -2\n"), key: "watch.failoverAfter", reason: "outside"),
        BadSpec(label: "watch.durability unknown", yaml: specYAML(top: "watch:\n  durability: relaxed\n"), key: "watch.durability", reason: "strict or available", line: 3),
        BadSpec(label: "watch.rejoin unknown", yaml: specYAML(top: "watch:\n  rejoin: always\n"), key: "watch.rejoin", reason: "auto or manual", line: 3),
        BadSpec(
            label: "http and https etcd endpoints mixed",
            yaml: specYAML(top: "store:\n  etcd:\n    endpoints: [https://10.0.0.5:2379, http://10.0.0.6:2379]\n"),
            key: "store.etcd.endpoints[1]", reason: "mixes http with https", line: 4),
        BadSpec(
            label: "an etcd CA with http endpoints",
            yaml: specYAML(top: "store:\n  etcd:\n    endpoints: [http://10.0.0.5:2379]\n    ca: /etc/ssl/ca.crt\n"),
            key: "store.etcd.ca", reason: "https:// endpoints only", line: 5),
        BadSpec(
            label: "an etcd endpoint that is not a URL", yaml: specYAML(top: "store:\n  etcd:\n    endpoints: [10.0.0.5:2379]\n"),
            key: "store.etcd.endpoints[0]", reason: "not an etcd client URL", line: 4),
        BadSpec(label: "no etcd endpoints", yaml: specYAML(top: "store:\n  etcd:\n    endpoints: []\n"), key: "store.etcd.endpoints", reason: "at least one"),
        // Issue 22: the health endpoints and the HAProxy routing.
        BadSpec(label: "watch.http without a port", yaml: specYAML(top: "watch:\n  http: 127.0.0.1\n"), key: "watch.http", reason: "not IP-ADDRESS:PORT", line: 3),
        BadSpec(label: "watch.http with a host name", yaml: specYAML(top: "watch:\n  http: localhost:8008\n"), key: "watch.http", reason: "not a host name"),
        BadSpec(label: "watch.http port out of range", yaml: specYAML(top: "watch:\n  http: 127.0.0.1:70000\n"), key: "watch.http", reason: "not IP-ADDRESS:PORT"),
        BadSpec(label: "watch.http on 0.0.0.0 without httpPublic", yaml: specYAML(top: "watch:\n  http: 0.0.0.0:8008\n"), key: "watch.http", reason: "watch.httpPublic: true", line: 3),
        BadSpec(label: "watch.http on [::] without httpPublic", yaml: specYAML(top: "watch:\n  http: '[::]:8008'\n"), key: "watch.http", reason: "binds every interface"),
        BadSpec(label: "watch.httpPublic without watch.http", yaml: specYAML(top: "watch:\n  httpPublic: true\n"), key: "watch.httpPublic", reason: "with watch.http only"),
        BadSpec(label: "watch.httpPublic not a boolean", yaml: specYAML(top: "watch:\n  http: 127.0.0.1:8008\n  httpPublic: maybe\n"), key: "watch.httpPublic", reason: "true or false"),
        BadSpec(label: "the last node's HTTP port reaches 32768", yaml: specYAML(top: "watch:\n  http: 127.0.0.1:32766\n"), key: "watch.http", reason: "below 32768", line: 3),
        BadSpec(label: "an HTTP port that is a node's PostgreSQL port", yaml: specYAML(top: "watch:\n  http: 127.0.0.1:15431\n"), key: "watch.http", reason: "nodes[0]'s PostgreSQL port"),
        BadSpec(label: "routing without watch.http", yaml: specYAML(top: "routing: {rw: 5000}\n"), key: "routing", reason: "with watch.http only", line: 2),
        BadSpec(label: "routing.rw and ro equal", yaml: specYAML(top: "watch: {http: '127.0.0.1:8008'}\nrouting: {rw: 6000, ro: 6000}\n"), key: "routing.ro", reason: "routing.rw too"),
        BadSpec(label: "routing.ro out of range", yaml: specYAML(top: "watch: {http: '127.0.0.1:8008'}\nrouting: {ro: 0}\n"), key: "routing.ro", reason: "from 1 to 65535"),
        BadSpec(label: "unknown key in routing", yaml: specYAML(top: "watch: {http: '127.0.0.1:8008'}\nrouting: {rw: 6000, readonly: 6001}\n"), key: "routing.readonly", reason: "unknown key"),
        BadSpec(label: "watch.leaseTTL under 2 s", yaml: specYAML(top: "watch:\n  leaseTTL: 1\n"), key: "watch.leaseTTL", reason: "outside"),
        BadSpec(label: "watch.leaseTTL too long", yaml: specYAML(top: "watch:\n  leaseTTL: 1h\n"), key: "watch.leaseTTL", reason: "not a duration"),
        BadSpec(
            label: "unknown top-level key", yaml: specYAML(top: "nmae: typo\n"), key: "nmae", reason: "unknown key", line: 2),
        BadSpec(
            label: "unknown nested key",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nprot: 15432\nport: 15432\nrole: primary", "name: db_1\nport: 15433"])),
            key: "nodes[0].prot", reason: "unknown key", line: 4),
        BadSpec(
            label: "unknown key in replication.synchronous",
            yaml: specYAML(replication: "replication:\n  synchronous:\n    mode: any\n    cnt: 1\n"),
            key: "replication.synchronous.cnt", reason: "unknown key"),
        BadSpec(label: "missing name", yaml: specYAML(name: ""), key: "name", reason: "required"),
        BadSpec(label: "bad cluster name", yaml: specYAML(name: "name: My Cluster\n"), key: "name", reason: "not a valid name"),
        BadSpec(
            label: "node name in uppercase",
            yaml: specYAML(nodes: nodesYAML(["name: DB_0\nport: 15432\nrole: primary", "name: db_1\nport: 15433"])),
            key: "nodes[0].name", reason: "'DB_0' is not a valid name", line: 3),
        BadSpec(
            label: "node name with a space",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db 1\nport: 15433"])),
            key: "nodes[1].name", reason: "not a valid name"),
        BadSpec(
            label: "node name longer than 63",
            yaml: specYAML(
                nodes: nodesYAML([
                    "name: db_0\nport: 15432\nrole: primary", "name: \(String(repeating: "a", count: 64))\nport: 15433",
                ])),
            key: "nodes[1].name", reason: "not a valid name"),
        BadSpec(
            label: "node name too long for its slot name",
            yaml: specYAML(
                nodes: nodesYAML([
                    "name: db_0\nport: 15432\nrole: primary", "name: \(String(repeating: "a", count: 54))\nport: 15433",
                ])),
            key: "nodes[1].name", reason: "at most 53 characters"),
        BadSpec(
            label: "node name starting with '-'",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: \"-db\"\nport: 15433"])),
            key: "nodes[1].name", reason: "starting with a letter or digit"),
        BadSpec(
            label: "node name with a dot",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db.1\nport: 15433"])),
            key: "nodes[1].name", reason: "not a valid name"),
        BadSpec(
            label: "duplicate node names",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db_0\nport: 15433"])),
            key: "nodes[1].name", reason: "duplicate node name 'db_0' (also nodes[0]", line: 6),
        BadSpec(
            label: "names equal after '-'/'_' normalization",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db-0\nport: 15433"])),
            key: "nodes[1].name", reason: "'-' and '_' count as the same"),
        BadSpec(
            label: "duplicate ports on the same host",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db_1\nport: 15432"])),
            key: "nodes[1].port", reason: "duplicate port 15432 on 127.0.0.1 (also nodes[0])", line: 7),
        BadSpec(
            label: "duplicate ports, one host given explicitly",
            yaml: specYAML(
                nodes: nodesYAML([
                    "name: db_0\nport: 15432\nrole: primary", "name: db_1\nhost: 127.0.0.1\nport: 15432",
                ])),
            key: "nodes[1].port", reason: "duplicate port"),
        BadSpec(
            label: "missing port",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db_1"])),
            key: "nodes[1].port", reason: "required"),
        BadSpec(
            label: "port above 65535",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db_1\nport: 65536"])),
            key: "nodes[1].port", reason: "must be from 1 to 65535"),
        BadSpec(
            label: "port zero",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 0\nrole: primary", "name: db_1\nport: 15433"])),
            key: "nodes[0].port", reason: "must be from 1 to 65535"),
        BadSpec(
            label: "port not a number",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db_1\nport: fifteen"])),
            key: "nodes[1].port", reason: "expected a whole number"),
        BadSpec(
            label: "zero primaries",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432", "name: db_1\nport: 15433"])),
            key: "nodes", reason: "no node has role: primary"),
        BadSpec(
            label: "two primaries",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db_1\nport: 15433\nrole: primary"])),
            key: "nodes[1].role", reason: "more than one primary (nodes[0], nodes[1])"),
        BadSpec(
            label: "bad role",
            yaml: specYAML(
                nodes: nodesYAML(["name: db_0\nport: 15432\nrole: leader", "name: db_1\nport: 15433\nrole: primary"])),
            key: "nodes[0].role", reason: "must be primary or standby, not 'leader'"),
        BadSpec(
            label: "empty node list", yaml: specYAML(nodes: "nodes: []\n"), key: "nodes", reason: "list at least a primary"),
        BadSpec(
            label: "synchronous count larger than the standbys",
            yaml: specYAML(replication: "replication:\n  synchronous:\n    mode: any\n    count: 3\n"),
            key: "replication.synchronous.count", reason: "3 is more than the 2 standby node(s)", line: 5),
        BadSpec(
            label: "bad synchronous mode",
            yaml: specYAML(replication: "replication:\n  synchronous:\n    mode: quorum\n"),
            key: "replication.synchronous.mode", reason: "must be async, any or first, not 'quorum'"),
        BadSpec(
            label: "synchronous count zero",
            yaml: specYAML(replication: "replication:\n  synchronous:\n    mode: first\n    count: 0\n"),
            key: "replication.synchronous.count", reason: "must be from 1 to 100"),
        BadSpec(
            label: "CIDR that is not an address",
            yaml: specYAML(top: "network:\n  allow: [localhost/32]\n"),
            key: "network.allow[0]", reason: "not an IPv4 or IPv6 address"),
        BadSpec(
            label: "CIDR without a prefix",
            yaml: specYAML(top: "network:\n  allow: [127.0.0.1/32, 10.0.0.1]\n"),
            key: "network.allow[1]", reason: "expected ADDRESS/PREFIX"),
        BadSpec(
            label: "IPv4 prefix too large",
            yaml: specYAML(top: "network:\n  allow: [127.0.0.1/33]\n"),
            key: "network.allow[0]", reason: "prefix must be a number from 0 to 32"),
        BadSpec(
            label: "IPv6 prefix too large",
            yaml: specYAML(top: "network:\n  allow: ['::1/129']\n"),
            key: "network.allow[0]", reason: "prefix must be a number from 0 to 128"),
        BadSpec(
            label: "CIDR with host bits set",
            yaml: specYAML(top: "network:\n  allow: [10.0.0.1/8]\n"),
            key: "network.allow[0]", reason: "bad CIDR '10.0.0.1/8': address has bits set beyond the prefix"),
        BadSpec(
            label: "empty allow list", yaml: specYAML(top: "network:\n  allow: []\n"),
            key: "network.allow", reason: "at least one CIDR"),
        BadSpec(
            label: "bad compose subnet",
            yaml: specYAML(top: "backend: compose\ncompose:\n  subnet: 172.28.0.1/16\n"),
            key: "compose.subnet", reason: "bits set beyond the prefix"),
        BadSpec(label: "bad backend", yaml: specYAML(top: "backend: kubernetes\n"), key: "backend", reason: "must be local, ssh or compose, not 'kubernetes'"),
        BadSpec(
            label: "managed parameter in postgres.parameters",
            yaml: specYAML(postgres: "postgres:\n  parameters:\n    max_wal_size: 1GB\n    port: 5433\n"),
            key: "postgres.parameters.port", reason: "set by pgcluster itself", line: 5),
        BadSpec(
            label: "synchronous_standby_names in postgres.parameters",
            yaml: specYAML(postgres: "postgres:\n  parameters:\n    synchronous_standby_names: '*'\n"),
            key: "postgres.parameters.synchronous_standby_names", reason: "set by pgcluster itself"),
        BadSpec(
            label: "bad parameter name",
            yaml: specYAML(postgres: "postgres:\n  parameters:\n    Max-WAL: 1GB\n"),
            key: "postgres.parameters.Max-WAL", reason: "not a PostgreSQL parameter name"),
        BadSpec(
            label: "relative bindir",
            yaml: specYAML(postgres: "postgres:\n  bindir: usr/lib/postgresql/15/bin\n"),
            key: "postgres.bindir", reason: "must be an absolute path"),
        BadSpec(
            label: "replication.user equal to superuser.user",
            yaml: specYAML(top: "superuser:\n  user: admin\n", replication: "replication:\n  user: admin\n"),
            key: "replication.user", reason: "must differ from superuser.user ('admin')"),
        BadSpec(
            label: "replication.user postgres when superuser is the default",
            yaml: specYAML(replication: "replication:\n  user: postgres\n"),
            key: "replication.user", reason: "must differ from superuser.user"),
        BadSpec(
            label: "bad role name", yaml: specYAML(top: "superuser:\n  user: Admin\n"),
            key: "superuser.user", reason: "not a valid role name"),
        BadSpec(
            label: "empty password", yaml: specYAML(top: "superuser:\n  password: ''\n"),
            key: "superuser.password", reason: "must not be empty"),
        BadSpec(
            label: "slots not a boolean", yaml: specYAML(replication: "replication:\n  slots: maybe\n"),
            key: "replication.slots", reason: "expected true or false"),
        BadSpec(
            label: "serviceHost with the local backend",
            yaml: specYAML(nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db_1\nport: 15433\nserviceHost: db1"])),
            key: "nodes[1]", reason: "compose backend only"),
        BadSpec(
            label: "unsupported version", yaml: specYAML(top: "version: 2\n"), key: "version", reason: "must be 1"),
        BadSpec(
            label: "key given twice", yaml: specYAML(top: "backend: local\nbackend: compose\n"), key: "",
            reason: "malformed YAML: key given twice in one mapping: 'backend'", line: 2),
        BadSpec(
            label: "nested key given twice", yaml: specYAML(top: "superuser:\n  password: a1\n  password: b2\n"), key: "",
            reason: "malformed YAML: key given twice in one mapping: 'password'", line: 3),
        BadSpec(
            label: "control character", yaml: "name: t\nnodes: []\nbackend: lo\u{01}cal\n", key: "",
            reason: "malformed YAML: control characters are not allowed", line: 3),
        BadSpec(
            label: "malformed YAML (unclosed flow sequence)",
            yaml: "name: t\nnodes:\n  - name: db_0\n    port: [15432\n  - name: db_1\n    port: 15433\n",
            key: "", reason: "malformed YAML", line: 5),
        BadSpec(
            label: "malformed YAML (bad indentation)",
            yaml: "name: t\nnodes:\n  - name: db_0\n    port: 15432\n    role: primary\n   extra: 1\n",
            key: "", reason: "malformed YAML", line: 6),
        BadSpec(
            label: "PostgreSQL version not supported", yaml: specYAML(postgres: "postgres:\n  version: 99\n"),
            key: "postgres.version", reason: "PostgreSQL 99 is not supported", line: 3),
        BadSpec(
            label: "PostgreSQL version too old", yaml: specYAML(postgres: "postgres:\n  version: 12\n"),
            key: "postgres.version", reason: "PostgreSQL 12 is not supported"),
        BadSpec(
            label: "fsync off", yaml: specYAML(postgres: "postgres:\n  parameters:\n    fsync: off\n"),
            key: "postgres.parameters.fsync", reason: "acknowledged commits", line: 4),
        BadSpec(
            label: "fsync given as a prefix of false", yaml: specYAML(postgres: "postgres:\n  parameters:\n    fsync: 'fa'\n"),
            key: "postgres.parameters.fsync", reason: "acknowledged commits"),
        BadSpec(
            label: "fsync not a boolean", yaml: specYAML(postgres: "postgres:\n  parameters:\n    fsync: maybe\n"),
            key: "postgres.parameters.fsync", reason: "not a boolean"),
        BadSpec(
            label: "full_page_writes off",
            yaml: specYAML(postgres: "postgres:\n  parameters:\n    full_page_writes: 'false'\n"),
            key: "postgres.parameters.full_page_writes", reason: "torn pages"),
        BadSpec(
            label: "recovery_min_apply_delay",
            yaml: specYAML(postgres: "postgres:\n  parameters:\n    recovery_min_apply_delay: 5min\n"),
            key: "postgres.parameters.recovery_min_apply_delay", reason: "failover"),
        BadSpec(
            label: "synchronous_commit local",
            yaml: specYAML(postgres: "postgres:\n  parameters:\n    synchronous_commit: local\n"),
            key: "postgres.parameters.synchronous_commit", reason: "no standby has"),
        BadSpec(
            label: "max_slot_wal_keep_size in parameters",
            yaml: specYAML(postgres: "postgres:\n  parameters:\n    max_slot_wal_keep_size: 1GB\n"),
            key: "postgres.parameters.max_slot_wal_keep_size", reason: "replication.maxSlotWalKeep"),
        BadSpec(
            label: "maxSlotWalKeep not a size", yaml: specYAML(replication: "replication:\n  maxSlotWalKeep: 8 apples\n"),
            key: "replication.maxSlotWalKeep", reason: "not a size", line: 3),
        BadSpec(
            label: "maxSlotWalKeep in bytes", yaml: specYAML(replication: "replication:\n  maxSlotWalKeep: 8gb\n"),
            key: "replication.maxSlotWalKeep", reason: "not a size"),
        BadSpec(
            label: "maxSlotWalKeep below one WAL segment",
            yaml: specYAML(replication: "replication:\n  maxSlotWalKeep: 1MB\n"),
            key: "replication.maxSlotWalKeep", reason: "at least 16MB"),
        BadSpec(
            label: "walSegmentSize not a power of two", yaml: specYAML(postgres: "postgres:\n  walSegmentSize: 12MB\n"),
            key: "postgres.walSegmentSize", reason: "a power of two from 1MB to 1GB"),
        BadSpec(
            label: "walSegmentSize above 1GB", yaml: specYAML(postgres: "postgres:\n  walSegmentSize: 2GB\n"),
            key: "postgres.walSegmentSize", reason: "a power of two from 1MB to 1GB"),
        BadSpec(
            label: "walSegmentSize 64MB over the default min_wal_size", yaml: specYAML(postgres: "postgres:\n  walSegmentSize: 64MB\n"),
            key: "postgres.walSegmentSize", reason: "give postgres.parameters.min_wal_size of at least 128MB"),
        BadSpec(
            label: "walSegmentSize 1GB with a max_wal_size too small",
            yaml: specYAML(postgres: "postgres:\n  walSegmentSize: 1GB\n  parameters:\n    min_wal_size: 2GB\n    max_wal_size: 1536MB\n"),
            key: "postgres.walSegmentSize", reason: "max_wal_size (1536MB) must be at least two WAL segments"),
        BadSpec(
            label: "walSegmentSize in kB", yaml: specYAML(postgres: "postgres:\n  walSegmentSize: 512kB\n"),
            key: "postgres.walSegmentSize", reason: "not a WAL segment size"),
        BadSpec(
            label: "tls.mode not a mode", yaml: specYAML(top: "tls:\n  mode: on\n"), key: "tls.mode",
            reason: "must be generate, files or off", line: 3),
        BadSpec(
            label: "unknown key in tls", yaml: specYAML(top: "tls:\n  mode: off\n  ca: x\n"), key: "tls.ca",
            reason: "unknown key"),
        BadSpec(
            label: "tls.caFile with mode generate", yaml: specYAML(top: "tls:\n  caFile: /etc/passwd\n"), key: "tls.caFile",
            reason: "applies to mode files only"),
        BadSpec(
            label: "tls mode files without caFile",
            yaml: specYAML(top: "tls:\n  mode: files\n", nodes: nodesYAML([
                    "name: db_0\nport: 15432\nrole: primary\ntlsCert: /etc/passwd\ntlsKey: /etc/passwd",
                    "name: db_1\nport: 15433\ntlsCert: /etc/passwd\ntlsKey: /etc/passwd",
                ])),
            key: "tls.caFile", reason: "required with mode files"),
        BadSpec(
            label: "tls.caFile that does not exist",
            yaml: specYAML(top: "tls:\n  mode: files\n  caFile: /nonexistent/ca.crt\n", nodes: nodesYAML([
                    "name: db_0\nport: 15432\nrole: primary\ntlsCert: /etc/passwd\ntlsKey: /etc/passwd",
                    "name: db_1\nport: 15433\ntlsCert: /etc/passwd\ntlsKey: /etc/passwd",
                ])),
            key: "tls.caFile", reason: "/nonexistent/ca.crt: no such file"),
        BadSpec(
            label: "tls mode files, a node without its key",
            yaml: specYAML(
                top: "tls:\n  mode: files\n  caFile: /etc/passwd\n",
                nodes: nodesYAML([
                    "name: db_0\nport: 15432\nrole: primary\ntlsCert: /etc/passwd\ntlsKey: /etc/passwd",
                    "name: db_1\nport: 15433\ntlsCert: /etc/passwd",
                ])),
            key: "nodes[1].tlsKey", reason: "required with tls.mode files"),
        BadSpec(
            label: "tlsCert with tls mode generate",
            yaml: specYAML(
                nodes: nodesYAML(["name: db_0\nport: 15432\nrole: primary", "name: db_1\nport: 15433\ntlsCert: /etc/passwd"])),
            key: "nodes[1]", reason: "apply to tls.mode files only"),
        BadSpec(label: "empty file", yaml: "", key: "", reason: "the file is empty"),
        BadSpec(label: "only comments", yaml: "# nothing here\n\n", key: "", reason: "the file is empty"),
    ]

    @Test("a bad spec is refused with its key and reason", arguments: badSpecs)
    func refused(_ bad: BadSpec) {
        let file = "/specs/\(bad.label.replacingOccurrences(of: " ", with: "-")).yaml"
        let problems = TestSupport.problems(bad.yaml, file: file)
        #expect(problems.count == 1, "expected exactly one problem, got:\n\(problems.map(\.description).joined(separator: "\n"))")
        let match = problems.first { $0.key == bad.key && $0.reason.contains(bad.reason) }
        #expect(match != nil, "no problem at key '\(bad.key)' containing '\(bad.reason)' in:\n\(problems.map(\.description).joined(separator: "\n"))")
        guard let match else { return }
        #expect(match.file == file)
        if let line = bad.line {
            #expect(match.line == line)
        }
        // What an operator reads: file, then key, then reason.
        #expect(match.description.hasPrefix(file))
        if !bad.key.isEmpty {
            #expect(match.description.contains(": \(bad.key): "))
        }
    }

    @Test("a spec with several problems reports all of them")
    func severalProblems() throws {
        let yaml = """
            name: Bad Name
            backend: kubernetes
            colour: blue
            replication:
              user: postgres
              synchronous:
                mode: any
                count: 5
            network:
              allow: [10.0.0.1/8, not-a-cidr/3]
            nodes:
              - name: db_0
                port: 15432
              - name: db_0
                port: 15432
              - name: db_2
                port: 99999

            """
        let problems = TestSupport.problems(yaml)
        let found = Set(problems.map(\.key))
        let expected: Set<String> = [
            "name", "backend", "colour", "replication.user", "replication.synchronous.count", "network.allow[0]",
            "network.allow[1]", "nodes[1].name", "nodes[1].port", "nodes[2].port", "nodes",
        ]
        #expect(expected.isSubset(of: found), "missing: \(expected.subtracting(found).sorted())")
        #expect(problems.count >= expected.count)
        // The SpecError's description lists one problem a line.
        let error = SpecError(problems)
        #expect(error.description.split(separator: "\n").count == problems.count)
    }

    @Test("a malformed spec's problem never quotes the spec (it may hold passwords)")
    func malformedHidesSecrets() {
        let secret = "Pa55-w0rd-secret"
        for yaml in [
            "name: t\nsuperuser:\n  password: \(secret)\n  password: \(secret)\n",
            "name: t\nsuperuser:\n  password: \(secret)\nnodes: [\n",
            "name: t\nsuperuser:\n  password: \(secret)\u{01}\n",
        ] {
            let problems = TestSupport.problems(yaml)
            #expect(problems.count == 1)
            #expect(!SpecError(problems).description.contains(secret), "\(problems)")
            #expect(!SpecError(problems).description.contains("\n"), "one line a problem: \(problems)")
        }
    }

    @Test("every problem of a YAML spec carries a line number")
    func linesOfProblems() throws {
        let yaml = "name: t\nnodes:\n  - name: db_0\n    port: 15432\n    role: primary\n  - name: db_1\n    port: 70000\n"
        let problems = TestSupport.problems(yaml)
        #expect(problems.map(\.key) == ["nodes[1].port"])
        #expect(problems.first?.line == 7)
        #expect(problems.first?.description == "/specs/pgcluster.yaml:7: nodes[1].port: must be from 1 to 65535")
    }

    @Test("the examples load", arguments: TestSupport.exampleNames)
    func exampleLoads(_ name: String) throws {
        let path = TestSupport.examplePath(name)
        let spec = try SpecLoader.load(path: path)
        #expect(spec.file == path)
        #expect(spec.nodes.filter { $0.role == .primary }.count == 1)
        #expect(spec.standbys.count == spec.nodes.count - 1)
    }

    @Test("the examples are the topologies the README promises")
    func exampleTopologies() throws {
        #expect(TestSupport.exampleNames.contains("local.yaml"))
        let any1 = try SpecLoader.load(path: TestSupport.examplePath("any1.yaml"))
        #expect(any1.replication.synchronous == .any(1))
        #expect(any1.nodes.map(\.name) == ["db_0", "db_1", "db_2"])
        #expect(any1.primary.name == "db_0")
        #expect(any1.postgres.parameters == [.init(name: "max_wal_size", value: "1GB")])

        let first1 = try SpecLoader.load(path: TestSupport.examplePath("first1.yaml"))
        #expect(first1.replication.synchronous == .first(1))
        #expect(first1.nodes.map(\.name) == ["master", "sync", "async"])
        #expect(first1.node(named: "sync")?.priority == 200)

        let local = try SpecLoader.load(path: TestSupport.examplePath("local.yaml"))
        #expect(local.replication.synchronous == .async)
        #expect(local.backend == .local)
        #expect(local.local.osUser == "postgres")
    }

    @Test("the watch block: seconds as numbers or with a unit, both policies")
    func watchBlock() throws {
        let yaml = "name: w\nwatch:\n  interval: 250ms\n  failoverAfter: 3s\n  durability: available\n  rejoin: manual\n  leaseTTL: 10\n"
            + "nodes:\n  - name: a\n    port: 15432\n    role: primary\n  - name: b\n    port: 15433\n"
        let spec = try SpecLoader.parse(yaml, file: "/srv/pgcluster.yaml")
        #expect(spec.watch == WatchSettings(interval: 0.25, failoverAfter: 3, durability: .available, rejoin: .manual, leaseTTL: 10))
        let conf = try Renderer(spec: spec).postgresqlConf(spec.nodes[1])
        #expect(conf.contains("wal_receiver_timeout = 1500ms") && conf.contains("wal_sender_timeout = 10s"))
    }

    @Test("watch.http and routing: node i on port + i, wildcard only with httpPublic, routing defaults")
    func httpAndRouting() throws {
        let nodes = "nodes:\n  - name: a\n    port: 15432\n    role: primary\n  - name: b\n    port: 15433\n"
        let plain = try SpecLoader.parse("name: w\nwatch:\n  http: 127.0.0.1:8008\n" + nodes, file: "/srv/pgcluster.yaml")
        #expect(plain.watch.http == HTTPAddress(host: "127.0.0.1", port: 8008))
        #expect(plain.watch.http?.port(forNode: 1) == 8009)
        #expect(plain.watch.httpPublic == false)
        #expect(plain.routing == RoutingSettings(rw: 5000, ro: 5001))

        let routed = try SpecLoader.parse(
            "name: w\nwatch:\n  http: '[::1]:9000'\nrouting:\n  rw: 6432\n  ro: 6433\n" + nodes, file: "/srv/pgcluster.yaml")
        #expect(routed.watch.http == HTTPAddress(host: "::1", port: 9000))
        #expect(routed.watch.http?.description == "[::1]:9000")
        #expect(routed.routing == RoutingSettings(rw: 6432, ro: 6433))

        let open = try SpecLoader.parse("name: w\nwatch:\n  http: 0.0.0.0:8008\n  httpPublic: true\n" + nodes, file: "/srv/pgcluster.yaml")
        #expect(open.watch.http?.isWildcard == true)
        #expect(open.watch.httpPublic)

        // The last port below 32768 is accepted: two nodes on 32766 and 32767.
        let edge = try SpecLoader.parse("name: w\nwatch:\n  http: 127.0.0.1:32766\n" + nodes, file: "/srv/pgcluster.yaml")
        #expect(edge.watch.http?.port(forNode: 1) == 32767)

        let none = try SpecLoader.parse("name: w\n" + nodes, file: "/srv/pgcluster.yaml")
        #expect(none.watch.http == nil)
    }

    @Test("defaults are filled in")
    func defaults() throws {
        let yaml = """
            name: minimal
            nodes:
              - name: a
                port: 15432
                role: primary
              - name: b
                port: 15433

            """
        let spec = try SpecLoader.parse(yaml, file: "/srv/specs/pgcluster.yaml")
        #expect(spec.version == 1)
        #expect(spec.backend == .local)
        #expect(spec.postgres.version == 15)
        #expect(spec.postgres.bindir == nil)
        #expect(spec.postgres.parameters.isEmpty)
        #expect(spec.superuser == Account(user: "postgres", password: nil))
        #expect(spec.replication.user == "replicator")
        #expect(spec.replication.password == nil)
        #expect(spec.replication.slots == true)
        #expect(spec.replication.synchronous == .async)
        #expect(spec.network.allow == [try CIDR(parsing: "127.0.0.1/32")])
        #expect(spec.local.dir == "/srv/specs/minimal-data")
        #expect(spec.local.osUser == "postgres")
        #expect(spec.watch == WatchSettings(interval: 0.5, failoverAfter: 2, durability: .strict, rejoin: .auto, leaseTTL: 5))
        #expect(spec.compose.project == "minimal")
        #expect(spec.compose.image == "postgres:15")
        #expect(spec.compose.subnet.description == "172.28.0.0/16")
        #expect(spec.tls == TLSSettings(mode: .generate, caFile: nil))
        let b = try #require(spec.node(named: "b"))
        #expect(b.host == "127.0.0.1")
        #expect(b.priority == 100)
        #expect(b.role == .standby)
        #expect(b.serviceHost == "b")
        #expect(b.servicePort == 5432)
        #expect(spec.primary.name == "a")
        #expect(spec.standbys.map(\.name) == ["b"])
    }

    @Test("tls.mode files: the CA and each node's certificate and key, resolved against the spec's folder")
    func tlsFiles() throws {
        let folder = try TestSupport.makeTempDir("tlsfiles")
        defer { TestSupport.remove(folder) }
        try FileManager.default.createDirectory(atPath: "\(folder)/certs", withIntermediateDirectories: true)
        for file in ["ca.crt", "a.crt", "a.key", "b.crt", "b.key"] { try TestSupport.write("x", to: "\(folder)/certs/\(file)") }
        let yaml = """
            name: files
            tls: {mode: files, caFile: certs/ca.crt}
            nodes:
              - {name: a, port: 15432, role: primary, tlsCert: certs/a.crt, tlsKey: ./certs/a.key}
              - {name: b, port: 15433, tlsCert: certs/b.crt, tlsKey: certs/b.key}

            """
        let spec = try SpecLoader.parse(yaml, file: "\(folder)/pgcluster.yaml")
        #expect(spec.tls == TLSSettings(mode: .files, caFile: "\(folder)/certs/ca.crt"))
        #expect(spec.nodes.map(\.tlsCert) == ["\(folder)/certs/a.crt", "\(folder)/certs/b.crt"])
        #expect(spec.nodes.map(\.tlsKey) == ["\(folder)/certs/a.key", "\(folder)/certs/b.key"])
        #expect(Credentials.rootCertificate(for: spec) == "\(folder)/certs/ca.crt")
    }

    @Test("TLS defaults to generate on every backend; off needs nothing")
    func tlsDefaults() throws {
        let compose = try SpecLoader.parse(specYAML(top: "backend: compose\n"), file: "/specs/c.yaml")
        #expect(compose.tls.mode == .generate)
        #expect(Credentials.rootCertificate(for: compose) == "/specs/t-data/ca.crt")
        let composeOff = try SpecLoader.parse(specYAML(top: "backend: compose\ntls: {mode: off}\n"), file: "/specs/c.yaml")
        #expect(composeOff.tls.mode == .off)
        #expect(Credentials.rootCertificate(for: composeOff) == nil)
        let local = try SpecLoader.parse(specYAML(), file: "/specs/l.yaml")
        #expect(Credentials.rootCertificate(for: local) == "/specs/t-data/ca.crt")
        let off = try SpecLoader.parse(specYAML(top: "tls: {mode: off}\n"), file: "/specs/o.yaml")
        #expect(off.tls.mode == .off)
    }

    @Test("the synchronous count defaults to 1")
    func syncCountDefault() throws {
        let yaml = specYAML(replication: "replication:\n  synchronous:\n    mode: first\n")
        let spec = try SpecLoader.parse(yaml, file: "/specs/pgcluster.yaml")
        #expect(spec.replication.synchronous == .first(1))
    }

    @Test(
        "local.dir is resolved against the spec's folder",
        arguments: [
            ("./data", "/srv/specs/data"),
            ("data", "/srv/specs/data"),
            ("../shared/data", "/srv/shared/data"),
            ("/var/lib/pgcluster", "/var/lib/pgcluster"),
        ])
    func localDir(_ dir: String, _ expected: String) throws {
        let yaml = specYAML(top: "local:\n  dir: \(dir)\n")
        let spec = try SpecLoader.parse(yaml, file: "/srv/specs/pgcluster.yaml")
        #expect(spec.local.dir == expected)
    }

    @Test("local.dir of a spec loaded by a relative path is absolute")
    func loadRelative() throws {
        let folder = try TestSupport.makeTempDir("relative")
        defer { TestSupport.remove(folder) }
        try TestSupport.write(specYAML(top: "local:\n  dir: ./data\n"), to: "\(folder)/pgcluster.yaml")
        let spec = try SpecLoader.load(path: "\(folder)/sub/../pgcluster.yaml")
        #expect(spec.file == "\(folder)/pgcluster.yaml")
        #expect(spec.local.dir == "\(folder)/data")
    }

    @Test("loading a missing file names the file")
    func missingFile() throws {
        let path = "/tmp/pgcluster-test-does-not-exist-\(UUID().uuidString)/pgcluster.yaml"
        let error = #expect(throws: SpecError.self) { try SpecLoader.load(path: path) }
        #expect(error?.problems.count == 1)
        #expect(error?.problems.first?.file == path)
        #expect(error?.problems.first?.reason == "no such file")
        #expect(error?.description == "\(path): no such file")
    }

    @Test("a spec that is not UTF-8 is refused")
    func notUTF8() throws {
        let folder = try TestSupport.makeTempDir("latin1")
        defer { TestSupport.remove(folder) }
        let path = "\(folder)/pgcluster.yaml"
        try Data([0x6E, 0x61, 0x6D, 0x65, 0x3A, 0x20, 0xE9, 0xFF, 0x0A]).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: SpecError.self) { try SpecLoader.load(path: path) }
        #expect(error?.problems.first?.file == path)
        #expect(error?.problems.first?.reason.contains("UTF-8") == true)
    }

    @Test("valid names", arguments: ["db_0", "db-sync", "1node", "a", String(repeating: "n", count: 53)])
    func validNames(_ name: String) throws {
        let yaml = specYAML(nodes: nodesYAML(["name: \"\(name)\"\nport: 15432\nrole: primary", "name: other\nport: 15433"]))
        let spec = try SpecLoader.parse(yaml, file: "/specs/pgcluster.yaml")
        #expect(spec.primary.name == name)
    }

    @Test("the same port on different hosts is allowed")
    func samePortOtherHost() throws {
        let yaml = specYAML(
            nodes: nodesYAML([
                "name: db_0\nhost: 10.0.0.1\nport: 5432\nrole: primary", "name: db_1\nhost: 10.0.0.2\nport: 5432",
            ]))
        let spec = try SpecLoader.parse(yaml, file: "/specs/pgcluster.yaml")
        #expect(spec.nodes.map(\.port) == [5432, 5432])
    }

    @Test("a parameter name with a newline is printed escaped, never raw")
    func newlineInParameterName() throws {
        let yaml = specYAML(postgres: "postgres:\n  parameters:\n    \"work_mem\\nfsync\": 'off'\n")
        let problems = TestSupport.problems(yaml)
        let problem = try #require(problems.first)
        #expect(problems.count == 1)
        #expect(problem.reason.contains("not a PostgreSQL parameter name"))
        #expect(!problem.description.contains("\n"), "\(problem.description)")
        #expect(problem.description.contains(#"postgres.parameters.work_mem\nfsync: "#), "\(problem.description)")
    }

    @Test("supported PostgreSQL versions load", arguments: [13, 14, 15, 16, 17])
    func supportedVersions(_ version: Int) throws {
        let spec = try SpecLoader.parse(specYAML(postgres: "postgres:\n  version: \(version)\n"), file: "/specs/pgcluster.yaml")
        #expect(spec.postgres.version == version)
    }

    @Test("maxSlotWalKeep: a default cap, sizes in PostgreSQL's units, or unlimited")
    func maxSlotWalKeep() throws {
        func keep(_ text: String?) throws -> SlotWalKeep {
            let replication = text.map { "replication:\n  maxSlotWalKeep: \($0)\n" } ?? ""
            return try SpecLoader.parse(specYAML(replication: replication), file: "/specs/pgcluster.yaml").replication.maxSlotWalKeep
        }
        #expect(try keep(nil) == .megabytes(8192))
        #expect(try keep(nil).setting == "8GB")
        #expect(try keep("512MB") == .megabytes(512))
        #expect(try keep("2GB").setting == "2GB")
        #expect(try keep("1TB") == .megabytes(1024 * 1024))
        #expect(try keep("65536kB") == .megabytes(64))
        #expect(try keep("unlimited") == .unlimited)
        #expect(try keep("unlimited").setting == "-1")
    }

    @Test("walSegmentSize: 4 MB unless given, in MB or PostgreSQL's units")
    func walSegmentSize() throws {
        func size(_ text: String?) throws -> PostgresSettings {
            let postgres = text.map { "postgres:\n  walSegmentSize: \($0)\n" } ?? ""
            return try SpecLoader.parse(specYAML(postgres: postgres), file: "/specs/pgcluster.yaml").postgres
        }
        #expect(try size(nil).walSegmentSize == nil)
        #expect(try size(nil).walSegmentMB == 4)
        #expect(try size("16MB").walSegmentMB == 16)
        #expect(try size("1").walSegmentMB == 1)
        #expect(try size("32MB").walSegmentMB == 32)
        let big = try SpecLoader.parse(
            specYAML(postgres: "postgres:\n  walSegmentSize: 1GB\n  parameters:\n    min_wal_size: 2GB\n    max_wal_size: 4096\n"),
            file: "/specs/pgcluster.yaml")
        #expect(big.postgres.walSegmentMB == 1024)
    }

    @Test("fsync and full_page_writes may be given when they stay on", arguments: ["on", "true", "yes", "1", "ON"])
    func safeBooleans(_ value: String) throws {
        let yaml = specYAML(postgres: "postgres:\n  parameters:\n    fsync: '\(value)'\n    full_page_writes: '\(value)'\n")
        let spec = try SpecLoader.parse(yaml, file: "/specs/pgcluster.yaml")
        #expect(spec.postgres.parameters.map(\.name) == ["fsync", "full_page_writes"])
    }

    @Test("parameters keep the spec's order and values")
    func parameters() throws {
        let yaml = specYAML(
            postgres: "postgres:\n  parameters:\n    work_mem: 64MB\n    shared_buffers: 256MB\n    auto_explain.log_min_duration: 250ms\n")
        let spec = try SpecLoader.parse(yaml, file: "/specs/pgcluster.yaml")
        #expect(spec.postgres.parameters.map(\.name) == ["work_mem", "shared_buffers", "auto_explain.log_min_duration"])
        #expect(spec.postgres.parameters.map(\.value) == ["64MB", "256MB", "250ms"])
    }

    @Test("CIDRs", arguments: ["127.0.0.1/32", "10.0.0.0/8", "0.0.0.0/0", "::1/128", "fd00::/8", "192.168.1.128/25"])
    func goodCIDR(_ text: String) throws {
        let cidr = try CIDR(parsing: text)
        #expect(cidr.description == text)
        #expect(cidr.isIPv6 == text.contains(":"))
    }

    @Test(
        "bad CIDRs",
        arguments: [
            ("10.0.0.1/8", CIDR.ParseError.hostBitsSet),
            ("fd00::1/8", .hostBitsSet),
            ("127.0.0.1", .missingPrefix),
            ("127.0.0.1/32/1", .missingPrefix),
            ("example.com/32", .badAddress),
            ("256.0.0.0/8", .badAddress),
            ("127.0.0.1/33", .badPrefix(32)),
            ("127.0.0.1/-1", .badPrefix(32)),
            ("127.0.0.1/+8", .badPrefix(32)),
            ("127.0.0.1/", .badPrefix(32)),
            ("::1/129", .badPrefix(128)),
        ])
    func badCIDR(_ text: String, _ expected: CIDR.ParseError) {
        #expect(throws: expected) { try CIDR(parsing: text) }
    }
}
