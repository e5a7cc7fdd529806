import Synchronization
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The exact `docker compose` command lines of each server-side step, pinned here; the
/// container tests (Tests/IntegrationTests/ComposeTests.swift) run them on a real engine.
@Suite("docker compose command lines")
struct ComposeCommandsTests {
    let commands = ComposeCommands(tool: ["docker", "compose"], projectDirectory: "/srv/pg/compose", project: "demo")
    let base = ["docker", "compose", "--project-directory", "/srv/pg/compose", "-f", "/srv/pg/compose/docker-compose.yml", "-p", "demo"]

    @Test("start, stop and fence one service")
    func lifecycle() {
        #expect(commands.up() == base + ["up", "-d"])
        #expect(commands.start("db_1") == base + ["up", "-d", "--no-deps", "db_1"])
        #expect(commands.stop("db_0", mode: .fast) == base + ["stop", "-t", "120", "db_0"])
        #expect(commands.stop("db_0", mode: .immediate) == base + ["kill", "-s", "SIGQUIT", "db_0"])
        #expect(commands.kill("db_0") == base + ["kill", "-s", "SIGKILL", "db_0"])
        #expect(commands.running("db_2") == base + ["ps", "--services", "--filter", "status=running", "db_2"])
        #expect(commands.logs("db_2", lines: 15) == base + ["logs", "--no-color", "--tail", "15", "db_2"])
        #expect(commands.down() == base + ["--profile", "watch", "down", "-v", "--remove-orphans"])
        #expect(commands.stopWatcher() == base + ["--profile", "watch", "stop", "-t", "30", "pgcluster-watch"])
    }

    /// db_0 as a throwaway container sees it.
    let node = ComposeCommands.Node(
        folder: "db_0", volume: "db_0-data", image: "postgres:15", environment: ["PGDATA=/var/lib/postgresql/data", "NODE_NAME=db_0"])
    /// `docker run` of such a container, up to its user.
    let offline = [
        "docker", "run", "--rm", "--network", "none", "--name", "demo-db_0-step", "-v", "demo_db_0-data:/var/lib/postgresql/data",
        "-v", "/srv/pg/compose/db_0:/etc/pgcluster:ro",
        "-v", "/srv/pg/compose/pgcluster-entrypoint.sh:/usr/local/bin/pgcluster-entrypoint.sh:ro",
        "-e", "PGDATA=/var/lib/postgresql/data", "-e", "NODE_NAME=db_0",
    ]

    @Test("steps on a stopped server's data run in a container without network, as postgres; pg_rewind on the project's network, its password in the environment")
    func serverSteps() {
        #expect(
            commands.controlData(node)
                == offline + ["-u", "postgres", "--entrypoint", "pg_controldata", "postgres:15", "-D", "/var/lib/postgresql/data"])
        #expect(
            commands.singleUserRecovery(node)
                == offline + [
                    "-u", "postgres", "--entrypoint", "postgres", "postgres:15",
                    "--single", "-F", "-D", "/var/lib/postgresql/data", "-c", "config_file=/etc/pgcluster/postgresql.conf",
                    "-c", "hba_file=/etc/pgcluster/pg_hba.conf", "-c", "archive_mode=off", "template1",
                ])
        let rewind = commands.rewind("db_0", sourceConninfo: "host=db_1 port=5432 user=postgres dbname=postgres")
        #expect(
            rewind
                == base + [
                    "run", "--rm", "--no-deps", "-T", "--name", "demo-db_0-step", "-u", "postgres", "-e", "PGPASSWORD", "--entrypoint", "pg_rewind", "db_0",
                    "--target-pgdata=/var/lib/postgresql/data", "--source-server=host=db_1 port=5432 user=postgres dbname=postgres",
                ])
        #expect(!rewind.contains { $0.hasPrefix("PGPASSWORD=") })
        // A node's step containers share one name, its service's, whatever the kind of one-off.
        var renamed = node
        renamed.service = "pg-a"
        #expect(commands.controlData(renamed).contains("demo-pg-a-step"))
        #expect(commands.rewind("pg-a", sourceConninfo: "").contains("demo-pg-a-step"))
        #expect(
            commands.hasData("db_0")
                == base + ["run", "--rm", "--no-deps", "-T", "--name", "demo-db_0-step", "-u", "postgres", "--entrypoint", "test", "db_0", "-s", "/var/lib/postgresql/data/PG_VERSION"])
    }

    @Test("follow and clone run the node's own entrypoint in a mode; follow needs no network nor password")
    func entrypointModes() {
        let follow = commands.follow(node, upstreamHost: "db_1", upstreamPort: 5432, slot: "pgcluster_db_0")
        #expect(
            follow
                == offline + [
                    "-e", "PGCLUSTER_ENTRYPOINT_MODE=follow", "-e", "PRIMARY_HOST=db_1", "-e", "PRIMARY_PORT=5432",
                    "-e", "SLOT_NAME=pgcluster_db_0", "--entrypoint", "bash", "postgres:15", "/usr/local/bin/pgcluster-entrypoint.sh",
                ])
        #expect(!follow.contains("--env-file") && !follow.contains { $0.contains("PASSWORD") })
        #expect(
            commands.clone("db_0", upstreamHost: "db_1", upstreamPort: 5432, slot: "pgcluster_db_0")
                == base + [
                    "run", "--rm", "--no-deps", "-T", "--name", "demo-db_0-step", "-e", "PGCLUSTER_ENTRYPOINT_MODE=clone", "-e", "PRIMARY_HOST=db_1",
                    "-e", "PRIMARY_PORT=5432", "-e", "SLOT_NAME=pgcluster_db_0", "db_0",
                ])
        #expect(commands.remove("db_2") == base + ["rm", "-s", "-f", "db_2"])
        #expect(commands.removeVolume("db_2-data") == ["docker", "volume", "rm", "-f", "demo_db_2-data"])
    }

    @Test("a switchover holds the old primary's container: stop, control data, follow and start run inside it")
    func heldSteps() {
        let entrypoint = ["bash", "/usr/local/bin/pgcluster-entrypoint.sh"]
        #expect(commands.hold("db_0") == base + ["exec", "-T", "-u", "root", "-e", "PGCLUSTER_ENTRYPOINT_MODE=hold", "db_0"] + entrypoint)
        #expect(
            commands.heldControlData("db_0")
                == base + ["exec", "-T", "-u", "postgres", "db_0", "pg_controldata", "-D", "/var/lib/postgresql/data"])
        #expect(
            commands.heldFollow("db_0", upstreamHost: "db_1", upstreamPort: 5432, slot: nil)
                == base + [
                    "exec", "-T", "-u", "root", "-e", "PGCLUSTER_ENTRYPOINT_MODE=follow", "-e", "PRIMARY_HOST=db_1",
                    "-e", "PRIMARY_PORT=5432", "-e", "SLOT_NAME=", "db_0",
                ] + entrypoint)
        #expect(commands.release("db_0") == base + ["exec", "-T", "-u", "root", "db_0", "rm", "-f", "/run/pgcluster/hold"])
        #expect(commands.installTLS("db_0") == base + ["exec", "-T", "-u", "root", "-e", "PGCLUSTER_ENTRYPOINT_MODE=tls", "db_0"] + entrypoint)
    }

    /// What `ps --services --filter status=running db_0` printed, read as "db_0 runs" or not.
    /// v1 (1.29) ignores the service argument and lists every running service; its
    /// `ps -q --status running` (the old line) printed this usage text and exited 0.
    static let version1Usage = """
        List containers.

        Usage: ps [options] [--] [SERVICE...]

        Options:
            -q, --quiet          Only display IDs
            --services           Display services
            --filter KEY=VAL     Filter services by a property
            -a, --all            Show all stopped containers (including those created by the run command)
        """

    @Test(
        "running: only a line that is the service's own name counts",
        arguments: [
            ("db_0\n", true),  // v2, and v1 with only db_0 running
            ("db_0\ndb_1\n", true),  // v1 lists every running service
            ("db_1\ndb_2\n", false),  // v1: others run, db_0 does not
            ("", false),  // v2: not running
            (version1Usage, false),  // v1 without --services support: usage, exit 0
            ("db_0-old\nxdb_0\n", false),
            ("  db_0  \r\n", true),
        ])
    func runningIsRead(output: String, running: Bool) {
        #expect(ComposeCommands.lists("db_0", in: output) == running)
    }

    @Test(
        "the compose program is the one that works: the v2 plugin, else docker-compose v1",
        arguments: [
            (true, "/usr/bin/docker-compose", ["docker", "compose"]),
            (true, nil, ["docker", "compose"]),
            (false, "/usr/bin/docker-compose", ["docker-compose"]),  // Debian 12's stock state
            (false, nil, ["docker", "compose"]),  // neither: the first command says what is missing
        ] as [(Bool, String?, [String])])
    func toolChoice(pluginWorks: Bool, version1: String?, tool: [String]) {
        #expect(ComposeCommands.chooseTool(pluginWorks: pluginWorks, version1: version1) == tool)
    }

    @Test("docker-compose v1 gets the same arguments")
    func version1() {
        let v1 = ComposeCommands(tool: ["docker-compose"], projectDirectory: "/p", project: "x")
        #expect(v1.up() == ["docker-compose", "--project-directory", "/p", "-f", "/p/docker-compose.yml", "-p", "x", "up", "-d"])
    }

    /// A runner that records what it is asked to run and answers from a script.
    @Test("under the cluster lock, a step container whose name an earlier, stopped step left is removed (docker rm -f) and the step run again, once; without the lock it is left alone")
    func leftoverStepContainer() async throws {
        let recorder = Recorder { command in
            let isStep = command.arguments.contains("--name")
            let first = isStep && !ComposeCommandsTests.seenStep.withLock { seen in defer { seen = true }; return seen }
            if first {
                return CommandResult(status: 125, output: "Error response from daemon: Conflict. The container name \"/demo-db_0-step\" is already in use")
            }
            return CommandResult(status: 0, output: "")
        }
        let cluster = ComposeCluster(spec: try spec(), runner: recorder, tool: ["docker", "compose"])
        let step = cluster.command(await cluster.commands().hasData("db_0"))
        // Without the cluster lock the container may be another command's running step: left alone.
        let unlocked = try await cluster.runner.run(step)
        #expect(unlocked.status == 125 && recorder.commands.count == 1)
        ComposeCommandsTests.seenStep.withLock { $0 = false }
        recorder.commands = []
        // Under the lock (as every step of a node runs), it is a stopped command's.
        _ = try await ComposeCluster.StepContainers(base: recorder, mayRemove: { true }).run(step)
        let lines = recorder.commands.map { [($0.executable as NSString).lastPathComponent] + $0.arguments }
        #expect(lines.count == 3)
        #expect(lines[1] == ["docker", "rm", "-f", "demo-db_0-step"])
        #expect(lines[0] == lines[2])
        // Any other failure is the step's own: nothing removed, not run again.
        let failing = Recorder { _ in CommandResult(status: 1, output: "pg_rewind: fatal: could not connect") }
        let result = try await ComposeCluster.StepContainers(base: failing, mayRemove: { true }).run(step)
        #expect(result.status == 1 && failing.commands.count == 1)
    }

    static let seenStep = Mutex(false)

    final class Recorder: CommandRunning, @unchecked Sendable {
        var commands: [Command] = []
        let answer: (Command) -> CommandResult
        init(answer: @escaping (Command) -> CommandResult) { self.answer = answer }
        func run(_ command: Command) async throws(ClusterError) -> CommandResult {
            commands.append(command)
            return answer(command)
        }
    }

    func spec() throws -> ClusterSpec {
        try SpecLoader.parse(
            """
            name: demo
            backend: compose
            local: {dir: /srv/pg}
            nodes:
              - {name: db_0, port: 25432, role: primary}
              - {name: db_1, port: 25433}
            """, file: "/srv/pg.yaml")
    }

    @Test("switchover's and rejoin's steps on compose go through these lines, the password only in the environment")
    func clusterUsesTheLines() async throws {
        let recorder = Recorder { _ in CommandResult(status: 0, output: "") }
        let cluster = ComposeCluster(spec: try spec(), runner: recorder, tool: ["docker", "compose"])
        let spec = try spec()
        let credentials = Credentials(
            superuser: .init(user: "postgres", password: "s3cret"), replication: .init(user: "replicator", password: "r3pl"))
        _ = try await cluster.rewind(spec.node(named: "db_0")!, from: spec.node(named: "db_1")!, credentials: credentials)
        let lines = recorder.commands.map { [($0.executable as NSString).lastPathComponent] + $0.arguments }
        let prefix = ["docker", "compose", "--project-directory", "/srv/pg/compose", "-f", "/srv/pg/compose/docker-compose.yml", "-p", "demo"]
        #expect(lines.count == 2)
        #expect(lines.first == prefix + [
            "run", "--rm", "--no-deps", "-T", "--name", "demo-db_0-step", "-u", "postgres", "-e", "PGPASSWORD", "--entrypoint", "pg_rewind", "db_0",
            "--target-pgdata=/var/lib/postgresql/data", // TLS is on by default: pg_rewind checks the source against the CA in the config mount.
            "--source-server=host=db_1 port=5432 user=postgres dbname=postgres connect_timeout=5"
                + " sslmode=verify-full sslrootcert=/etc/pgcluster/tls/ca.crt",
        ])
        #expect(recorder.commands.first?.environment["PGPASSWORD"] == "s3cret")
        #expect(lines.last?.contains("PGCLUSTER_ENTRYPOINT_MODE=follow") == true)
        #expect(!lines.joined().joined().contains("s3cret"))
    }

    @Test("no Docker engine: one clear line")
    func noEngine() async throws {
        let recorder = Recorder { _ in CommandResult(status: 1, output: "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n") }
        let cluster = ComposeCluster(spec: try spec(), runner: recorder, tool: ["docker", "compose"])
        await #expect(throws: ClusterError.self) { try await cluster.checkEngine() }
        do {
            try await cluster.checkEngine()
        } catch {
            #expect(error.message.hasPrefix("no Docker engine answers") || error.message.hasPrefix("Docker is not installed"))
            #expect(!error.message.contains("\n"))
        }
    }
}

import Foundation
