import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The `backup:` section of the spec (issue 24): a pgBackRest repository on this machine
/// and its retention.
@Suite("Backup spec")
struct BackupSpecTests {
    static func yaml(_ backup: String, backend: String = "") -> String {
        let host = backend.contains("ssh") ? "host: 10.0.0.11, " : ""
        return """
            name: t
            \(backend)\(backup)nodes:
              - {name: db_0, \(host)port: 15432, role: primary}
              - {name: db_1, \(host)port: 15433}

            """
    }

    /// Backend ssh, every node on one host (enough for the spec's checks).
    static let ssh = "backend: ssh\nssh: {user: postgres}\n"

    struct Bad: Sendable, CustomTestStringConvertible {
        var label: String
        var yaml: String
        var key: String
        var reason: String
        var testDescription: String { label }
    }

    static let bad: [Bad] = [
        Bad(label: "unknown key", yaml: yaml("backup:\n  repo: /r\n  repository: /r\n"), key: "backup.repository", reason: "unknown key"),
        Bad(
            label: "a superuser other than the servers' OS user", yaml: yaml("superuser: {user: admin}\nbackup:\n  repo: /r\n"), key: "backup",
            reason: "superuser.user is 'admin'; use 'postgres'"),
        Bad(
            label: "backend ssh: the login is the servers' OS user", yaml: yaml("backup:\n  repo: /r\n  repoHost: 10.0.0.20\n", backend: "backend: ssh\nssh: {user: pg}\n"),
            key: "backup", reason: "as their OS user 'pg'"),
        Bad(label: "no repo", yaml: yaml("backup:\n  retention: {full: 2}\n"), key: "backup.repo", reason: "required"),
        Bad(label: "repoHost on backend local", yaml: yaml("backup:\n  repo: /r\n  repoHost: 10.0.0.20\n"), key: "backup.repoHost", reason: "backend ssh only"),
        Bad(label: "backend ssh without repoHost", yaml: yaml("backup:\n  repo: /r\n", backend: Self.ssh), key: "backup.repoHost", reason: "required with backend ssh"),
        Bad(
            label: "backend ssh, a relative repo", yaml: yaml("backup:\n  repo: ./r\n  repoHost: 10.0.0.20\n", backend: Self.ssh), key: "backup.repo",
            reason: "absolute path on backup.repoHost"),
        Bad(
            label: "a repoHost that is an option", yaml: yaml("backup:\n  repo: /r\n  repoHost: -oProxyCommand=x\n", backend: Self.ssh),
            key: "backup.repoHost", reason: "not a host name"),
        Bad(label: "retention.full of zero", yaml: yaml("backup:\n  repo: /r\n  retention: {full: 0}\n"), key: "backup.retention.full", reason: "from 1"),
        Bad(label: "retention.diff not a number", yaml: yaml("backup:\n  repo: /r\n  retention: {diff: many}\n"), key: "backup.retention.diff", reason: "whole number"),
        Bad(label: "unknown retention key", yaml: yaml("backup:\n  repo: /r\n  retention: {incr: 3}\n"), key: "backup.retention.incr", reason: "unknown key"),
        Bad(label: "a repo path with a quote", yaml: yaml("backup:\n  repo: \"/r'x\"\n"), key: "backup.repo", reason: "not a usable folder path"),
        Bad(label: "repo /", yaml: yaml("backup:\n  repo: /\n"), key: "backup.repo", reason: "must not be /"),
        Bad(label: "not a mapping", yaml: yaml("backup: /r\n"), key: "backup", reason: "expected a mapping"),
        Bad(
            label: "standbysFrom elsewhere", yaml: yaml("backup:\n  repo: /r\n  standbysFrom: s3\n"), key: "backup.standbysFrom",
            reason: "not one of primary, repository"),
        Bad(
            label: "backend compose",
            yaml: yaml("backup:\n  repo: /r\n", backend: "backend: compose\n"), key: "backup", reason: "not supported yet with backend compose"),
    ]

    @Test("a bad backup section is refused with its key and reason", arguments: bad)
    func refused(_ bad: Bad) {
        let problems = TestSupport.problems(bad.yaml, file: "/specs/b.yaml")
        #expect(problems.count == 1, "got:\n\(problems.map(\.description).joined(separator: "\n"))")
        #expect(
            problems.contains { $0.key == bad.key && $0.reason.contains(bad.reason) },
            "no problem at '\(bad.key)' containing '\(bad.reason)' in:\n\(problems.map(\.description).joined(separator: "\n"))")
    }

    @Test("no backup section: no backup settings")
    func absent() throws {
        #expect(try SpecLoader.parse(Self.yaml(""), file: "/specs/b.yaml").backup == nil)
    }

    @Test("repo resolved against the spec's folder, retention defaults to full 2")
    func defaults() throws {
        let spec = try SpecLoader.parse(Self.yaml("backup:\n  repo: ./repo\n"), file: "/specs/b.yaml")
        #expect(spec.backup == BackupSettings(repo: "/specs/repo", retentionFull: 2, retentionDiff: nil))
    }

    @Test("retention full and diff as given")
    func retention() throws {
        let spec = try SpecLoader.parse(
            Self.yaml("backup:\n  repo: /var/lib/pgbackrest\n  retention: {full: 3, diff: 6}\n"), file: "/specs/b.yaml")
        #expect(spec.backup == BackupSettings(repo: "/var/lib/pgbackrest", retentionFull: 3, retentionDiff: 6))
    }

    @Test("backend ssh: the repository on repoHost, its path as given")
    func repoHost() throws {
        let yaml = """
            name: t
            backend: ssh
            backup: {repo: /var/lib/pgbackrest, repoHost: 10.0.0.20}
            nodes:
              - {name: db_0, host: 10.0.0.11, port: 5432, role: primary}
              - {name: db_1, host: 10.0.0.12, port: 5432}

            """
        let spec = try SpecLoader.parse(yaml, file: "/specs/b.yaml")
        #expect(spec.backup == BackupSettings(repo: "/var/lib/pgbackrest", repoHost: "10.0.0.20", retentionFull: 2))
    }

    @Test("backend ssh: the nodes' pgbackrest.conf points at the repository host; the repository host's lists every node's host")
    func sshRender() throws {
        let yaml = """
            name: t
            backend: ssh
            ssh: {user: root, port: 2222, dir: /var/lib/pgcluster}
            backup: {repo: /srv/pgbackrest, repoHost: 10.0.0.20}
            nodes:
              - {name: db_0, host: 10.0.0.11, port: 5432, role: primary}
              - {name: db_1, host: 10.0.0.12, sshHost: h2.example, port: 5432}

            """
        let renderer = Renderer(spec: try SpecLoader.parse(yaml, file: "/specs/b.yaml"))
        let node = try #require(try renderer.pgbackrestConf())
        for line in [
            "repo1-host=10.0.0.20", "repo1-host-user=postgres", "repo1-host-port=2222",
            "repo1-host-config=/var/lib/pgcluster/t/pgbackrest-repo.conf", "cmd-ssh=/var/lib/pgcluster/t/pgbackrest/ssh",
        ] {
            #expect(node.split(separator: "\n").contains(Substring(line)), "nodes' conf lacks \(line):\n\(node)")
        }
        #expect(!node.contains("repo1-path"), "the nodes' hosts hold no repository")
        let repository = try #require(try renderer.pgbackrestRepoConf())
        for line in [
            "repo1-path=/srv/pgbackrest", "pg1-host=10.0.0.11", "pg2-host=h2.example", "pg2-host-user=postgres", "pg2-host-port=2222",
            "pg2-host-config=/var/lib/pgcluster/t/pgbackrest.conf", "pg2-path=/var/lib/pgcluster/t/db_1/data",
            "cmd-ssh=/var/lib/pgcluster/t/pgbackrest/ssh",
        ] {
            #expect(repository.split(separator: "\n").contains(Substring(line)), "repository conf lacks \(line):\n\(repository)")
        }
        #expect(renderer.archiveCommand(renderer.spec.nodes[1]).contains("--config=/var/lib/pgcluster/t/pgbackrest.conf"))
        let wrapper = renderer.pgbackrestSSHWrapper()
        #expect(wrapper.contains("StrictHostKeyChecking=yes") && wrapper.contains("-i /var/lib/pgcluster/t/pgbackrest/id_ed25519"))
        #expect(Set(try renderer.nodeFiles().map(\.path)).isSuperset(of: ["pgbackrest.conf", "pgbackrest-repo.conf"]))

        // restore --into a new cluster: the repository host read from a folder on its primary's host.
        let reader = try #require(try renderer.pgbackrestReaderConf(in: "/here/pgbackrest-from-t"))
        for line in [
            "repo1-host-config=/var/lib/pgcluster/t/pgbackrest-repo.conf", "cmd-ssh=/here/pgbackrest-from-t/ssh",
            "log-path=/here/pgbackrest-from-t", "lock-path=/here/pgbackrest-from-t",
        ] {
            #expect(reader.split(separator: "\n").contains(Substring(line)), "reader conf lacks \(line):\n\(reader)")
        }
        let kept = renderer.pgbackrestSSHWrapper(in: "/here/f", keep: true)
        #expect(kept.contains("-i /here/f/id_ed25519") && kept.contains("UserKnownHostsFile=/here/f/known_hosts"), "\(kept)")
        // A socket of its own: ending it never ends a live node's connection on the same host.
        #expect(kept.contains("ControlPath='~/.ssh/pgcluster-reader-%C' -o ControlPersist=30"), "\(kept)")
        #expect(!wrapper.contains("pgcluster-reader-"))
        #expect(renderer.pgbackrestSSHWrapper(in: "/here/f", keep: false).contains("ControlPath=none -o ControlPersist=no"))
    }

    @Test("standbysFrom: primary by default, repository when asked")
    func standbysFrom() throws {
        #expect(try SpecLoader.parse(Self.yaml("backup:\n  repo: /r\n"), file: "/s/b.yaml").backup?.standbysFrom == .primary)
        let spec = try SpecLoader.parse(Self.yaml("backup:\n  repo: /r\n  standbysFrom: repository\n"), file: "/s/b.yaml")
        #expect(spec.backup?.standbysFrom == .repository)
    }
}
