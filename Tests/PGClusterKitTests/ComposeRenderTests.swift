import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The compose backend's render: `docker-compose.yml`, `.env` and the node scripts.
@Suite("Compose render")
struct ComposeRenderTests {
    static let superuserPassword = "su-Secret-4711-Compose"
    static let replicationPassword = "repl-Secret-0815-Compose"

    /// examples/compose.yaml with the given passwords.
    static func exampleRenderer(
        superuserPassword: String? = Self.superuserPassword, replicationPassword: String? = Self.replicationPassword
    ) throws -> ComposeRenderer {
        let spec = try SpecLoader.load(path: ComposeTestSupport.repoRoot + "/examples/compose.yaml")
        return ComposeRenderer(
            renderer: Renderer(spec: spec), superuserPassword: superuserPassword,
            replicationPassword: replicationPassword)
    }

    static func file(_ files: [RenderedFile], _ path: String) throws -> RenderedFile {
        try #require(files.first { $0.path == path }, "no \(path) among \(files.map(\.path))")
    }

    @Test("docker-compose accepts the rendered project of examples/compose.yaml")
    func dockerComposeAcceptsProject() async throws {
        guard let dockerCompose = ComposeTestSupport.executable(named: "docker-compose") else {
            Issue.record("docker-compose is not installed: run scripts/ensure-deps.sh (it installs Debian's docker-compose)")
            return
        }
        let spec = try SpecLoader.load(path: ComposeTestSupport.repoRoot + "/examples/compose.yaml")
        #expect(spec.backend == .compose)
        let dir = try ComposeTestSupport.makeTempDir("compose-config")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Exactly what `pgcluster render --out DIR` writes.
        try FileWriter().write(try RenderCommand.files(Renderer(spec: spec)), under: dir)

        let result = try await ComposeTestSupport.run(
            dockerCompose, ["-f", dir + "/docker-compose.yml", "config", "-q"], timeout: 60)
        #expect(result.status == 0, "docker-compose config -q refused the rendered file:\n\(result.output)")
    }

    @Test("render --out DIR stores the .env's passwords and DIR as init does, so every command drives a project started by hand")
    func renderRemembersTheProject() throws {
        let root = try ComposeTestSupport.makeTempDir("compose-remember")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let spec = try SpecLoader.parse(
            ComposeTestSupport.spec(extra: "local: {dir: \(root)/state}\n"), file: "\(root)/pgcluster.yaml")
        let out = "\(root)/project"
        #expect(try Credentials.load(LocalLayout(spec: spec).credentialsFile) == nil)

        let plan = try RenderCommand.plan(Renderer(spec: spec), outputDirectory: out)
        try FileWriter().write(plan.files, under: out)
        try RenderCommand.remember(plan, spec: spec, outputDirectory: out)

        // What status, failover and the rest read: the passwords the containers were given.
        let env = try #require(EnvFile.read("\(out)/.env"))
        let stored = try Credentials.stored(spec: spec)
        #expect(stored.superuser.password == env["POSTGRES_PASSWORD"])
        #expect(stored.replication.password == env["REPLICATION_PASSWORD"])
        #expect(stored.superuser.user == spec.superuser.user)
        let attributes = try FileManager.default.attributesOfItem(atPath: LocalLayout(spec: spec).credentialsFile)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        // Server-side steps run in that folder, not in local.dir/compose.
        #expect(ComposeCluster.projectDirectory(spec) == out)

        // Rendering again changes no secret.
        let again = try RenderCommand.plan(Renderer(spec: spec), outputDirectory: out)
        #expect(again.credentials == stored)
        // A second folder gets the stored passwords, not new ones.
        #expect(try RenderCommand.plan(Renderer(spec: spec), outputDirectory: "\(root)/other").credentials == stored)

        // A folder whose .env holds other passwords would be a second cluster under this name.
        let stranger = "\(root)/stranger"
        try FileManager.default.createDirectory(atPath: stranger, withIntermediateDirectories: true)
        try "POSTGRES_PASSWORD=other\nREPLICATION_PASSWORD=other\n".write(
            toFile: "\(stranger)/.env", atomically: true, encoding: .utf8)
        do {
            _ = try RenderCommand.plan(Renderer(spec: spec), outputDirectory: stranger)
            Issue.record("a .env with other passwords was accepted")
        } catch {
            #expect(error.exitCode == .refused)
            #expect(!error.description.contains(stored.superuser.password))
        }
    }

    @Test("the compose project has one service per node, wired as the issue asks")
    func composeFileShape() throws {
        let compose = try Self.exampleRenderer()
        let yaml = try compose.composeFile()
        for node in ["db_0", "db_1", "db_2"] {
            #expect(yaml.contains("  \"\(node)\":\n    image: \"postgres:15\""))
            #expect(yaml.contains("- \"\(node)-data:/var/lib/postgresql/data\""))
            #expect(yaml.contains("- \"./\(node):/etc/pgcluster:ro\""))
        }
        #expect(yaml.contains("- \"127.0.0.1:25432:5432\""))
        #expect(yaml.contains("- \"127.0.0.1:25434:5432\""))
        #expect(yaml.contains("- subnet: \"172.28.0.0/16\""))
        #expect(yaml.contains("\"pg_isready\""))
        // Standbys wait for a healthy primary; the primary waits for nobody.
        #expect(yaml.components(separatedBy: "condition: service_healthy").count - 1 == 2)
        // Only the primary runs the replication setup.
        #expect(yaml.components(separatedBy: "/docker-entrypoint-initdb.d/").count - 1 == 1)
        #expect(yaml.contains("env_file: [.env]"))

        let standby = try #require(compose.renderer.spec.node(named: "db_1"))
        let environment = Dictionary(uniqueKeysWithValues: compose.environment(standby).map { ($0.key, $0.value) })
        #expect(environment["PRIMARY_HOST"] == "db_0")
        #expect(environment["PRIMARY_PORT"] == "5432")
        #expect(environment["SLOT_NAME"] == "pgcluster_db_1")
        #expect(environment["NODE_ROLE"] == "standby")
    }

    @Test("passwords are in .env (mode 0600 once written) and in no other file")
    func passwordsOnlyInDotEnv() throws {
        let compose = try Self.exampleRenderer()
        let files = try compose.renderer.nodeFiles() + compose.projectFiles()
        let env = try Self.file(files, ".env")
        #expect(env.mode == 0o600)
        #expect(env.contents.contains("POSTGRES_PASSWORD=\(Self.superuserPassword)\n"))
        #expect(env.contents.contains("REPLICATION_PASSWORD=\(Self.replicationPassword)\n"))
        #expect(env.contents.contains("COMPOSE_PROJECT_NAME=pgcluster-compose\n"))
        for file in files where file.path != ".env" {
            #expect(!file.contents.contains(Self.superuserPassword), "\(file.path) holds the superuser password")
            #expect(!file.contents.contains(Self.replicationPassword), "\(file.path) holds the replication password")
        }

        let dir = try ComposeTestSupport.makeTempDir("compose-env")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileWriter().write(files, under: dir)
        var info = stat()
        #expect(stat(dir + "/.env", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(stat(dir + "/pgcluster-entrypoint.sh", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o755)
        let yaml = try String(contentsOfFile: dir + "/docker-compose.yml", encoding: .utf8)
        #expect(!yaml.contains(Self.superuserPassword) && !yaml.contains(Self.replicationPassword))
    }

    @Test("everything but .env depends on the spec alone")
    func deterministicButForDotEnv() throws {
        let first = try Self.exampleRenderer().projectFiles()
        let second = try Self.exampleRenderer(superuserPassword: "other-one", replicationPassword: "other-two")
            .projectFiles()
        #expect(first.map(\.path) == second.map(\.path))
        for (a, b) in zip(first, second) where a.path != ".env" {
            #expect(a == b, "\(a.path) changed with the passwords")
        }
    }

    @Test("passwords: given ones win over the spec's, missing ones are generated")
    func passwordSources() throws {
        let generated = try Self.exampleRenderer(superuserPassword: nil, replicationPassword: nil)
        #expect(generated.superuserPassword.count == 32)
        #expect(generated.replicationPassword.count == 32)
        #expect(generated.superuserPassword != generated.replicationPassword)

        let yaml = ComposeTestSupport.spec(extra: """
            superuser:
              password: from-spec-1
            replication:
              password: from-spec-2

            """)
        let spec = try SpecLoader.parse(yaml, file: "/specs/compose.yaml")
        let fromSpec = ComposeRenderer(renderer: Renderer(spec: spec))
        #expect(fromSpec.superuserPassword == "from-spec-1")
        #expect(fromSpec.replicationPassword == "from-spec-2")
        let given = ComposeRenderer(renderer: Renderer(spec: spec), replicationPassword: "given")
        #expect(given.superuserPassword == "from-spec-1")
        #expect(given.replicationPassword == "given")
    }

    @Test(
        ".env quotes what a dotenv parser would change, and refuses what it cannot hold",
        arguments: [
            ("plain-Password_1.2", "plain-Password_1.2"),
            ("with space", "'with space'"),
            ("dollar$HOME#hash", "'dollar$HOME#hash'"),
            ("back\\slash\"quote", "'back\\slash\"quote'"),
        ])
    func dotenvQuoting(password: String, written: String) throws {
        #expect(try ComposeRenderer.dotenvValue(password, what: "replication.password") == written)
    }

    @Test("a password with a single quote or a line break is refused, without printing it")
    func dotenvRefuses() throws {
        for password in ["it's", "two\nlines"] {
            let compose = try Self.exampleRenderer(replicationPassword: password)
            do throws(ClusterError) {
                _ = try compose.projectFiles()
                Issue.record("\(password.debugDescription) was accepted")
            } catch {
                #expect(error.exitCode == .badSpec)
                #expect(error.message.contains("replication.password"))
                #expect(!error.description.contains(password))
            }
        }
    }

    @Test("the passfile that every entrypoint writes is the one primary_conninfo names")
    func passfileAgreesWithConninfo() throws {
        let compose = try Self.exampleRenderer()
        let standby = try #require(compose.renderer.spec.node(named: "db_2"))
        let conf = try compose.renderer.standbyConf(standby, upstream: compose.renderer.spec.primary)
        #expect(conf.contains("passfile=\(ComposeRenderer.ContainerPath.passfile)"))
        #expect(conf.contains("host=db_0 port=5432"))
        let script = try compose.entrypointScript()
        #expect(script.contains("PASSFILE=\"${PASSFILE:-\(ComposeRenderer.ContainerPath.passfile)}\""))
        // postgresql.conf includes standby.conf from its own folder, which is mounted whole.
        let postgresqlConf = try compose.renderer.postgresqlConf(standby)
        #expect(postgresqlConf.contains("include_if_exists = 'standby.conf'"))
    }

    @Test("a serviceHost that cannot be a compose service, or is used twice, is refused")
    func badServiceHosts() throws {
        for (nodes, reason) in [
            ("  - {name: a, port: 1, role: primary, serviceHost: 'bad name'}\n  - {name: b, port: 2}\n", "not a compose service name"),
            ("  - {name: a, port: 1, role: primary, serviceHost: same}\n  - {name: b, port: 2, serviceHost: same}\n", "same serviceHost"),
        ] {
            let spec = try SpecLoader.parse(ComposeTestSupport.spec(nodes: nodes), file: "/specs/compose.yaml")
            do throws(ClusterError) {
                _ = try ComposeRenderer(renderer: Renderer(spec: spec), superuserPassword: "x", replicationPassword: "y")
                    .projectFiles()
                Issue.record("accepted: \(nodes)")
            } catch {
                #expect(error.exitCode == .badSpec)
                #expect(error.message.contains(reason))
            }
        }
    }

    @Test("slots: false gives a setup script without slots, and standbys clone without one")
    func withoutSlots() throws {
        let spec = try SpecLoader.parse(
            ComposeTestSupport.spec(extra: "replication:\n  slots: false\n"), file: "/specs/compose.yaml")
        let compose = ComposeRenderer(renderer: Renderer(spec: spec), superuserPassword: "x", replicationPassword: "y")
        let script = try compose.primaryInitScript()
        #expect(!script.contains("pg_create_physical_replication_slot"))
        #expect(script.contains("SET synchronous_commit = local;"))
        let standby = try #require(spec.node(named: "db_1"))
        #expect(compose.environment(standby).first { $0.key == "SLOT_NAME" }?.value == "")
    }
}

/// Helpers of the compose tests: temporary folders, the package root, subprocesses.
enum ComposeTestSupport {
    /// The package root, from this file's path (Tests/PGClusterKitTests/ComposeRenderTests.swift).
    static let repoRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// A small compose spec; `extra` adds top-level sections, `nodes` replaces the node list.
    static func spec(extra: String = "", nodes: String? = nil) -> String {
        let defaultNodes = """
              - name: db_0
                port: 25432
                role: primary
              - name: db_1
                port: 25433

            """
        return "name: t\nbackend: compose\n" + extra + "nodes:\n" + (nodes ?? defaultNodes)
    }

    /// A new folder under /tmp, readable by everyone (servers run as another user); the
    /// caller removes it.
    static func makeTempDir(_ label: String) throws -> String {
        let path = "/tmp/pgcluster-\(label)-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        return path
    }

    /// The first executable called `name` on PATH.
    static func executable(named name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs a program (an argument array, no shell) through the project's own runner, with
    /// extra environment variables, as `user` when given and we are root, killed by
    /// coreutils' `timeout` after `timeout` seconds (exit status 124 then).
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], as user: OSUser? = nil,
        timeout: Int
    ) async throws -> CommandResult {
        try await LocalRunner().run(
            Command(
                "/usr/bin/timeout", ["--kill-after=5", String(timeout), executable] + arguments,
                environment: environment, user: user))
    }
}
