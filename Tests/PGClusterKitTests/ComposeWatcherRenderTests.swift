import Foundation
import Testing
import Yams

@testable import PGClusterKit
@testable import PGClusterRules

/// `compose.watcher: true`: the `pgcluster-watch` service of the `watch` profile, and the
/// bundle of what it runs (``WatcherBundle``). The service running for real, failing over a
/// killed primary, is in the integration suite's ComposeTests.
@Suite("Compose watcher render")
struct ComposeWatcherRenderTests {
    static func spec(root: String, watcher: Bool = true, nodes: String? = nil) throws -> ClusterSpec {
        try SpecLoader.parse(
            ComposeTestSupport.spec(
                extra: "local: {dir: \(root)/state}\ncompose: {watcher: \(watcher)}\nwatch: {http: 127.0.0.1:8008}\n", nodes: nodes),
            file: "\(root)/pgcluster.yaml")
    }

    /// The parsed docker-compose.yml of `spec`, rendered for the project folder `out`.
    static func services(_ spec: ClusterSpec, out: String) throws -> [String: Any] {
        let plan = try RenderCommand.plan(Renderer(spec: spec), outputDirectory: out)
        let text = try ComposeRenderTests.file(plan.files, ComposeRenderer.FileName.compose).contents
        let document = try #require(try Yams.load(yaml: text) as? [String: Any])
        return try #require(document["services"] as? [String: Any])
    }

    @Test("the watch profile's service runs this pgcluster's watch in the nodes' image, with the host's network, the engine and the spec's folders")
    func service() throws {
        let services = try Self.services(try Self.spec(root: "/srv/shop"), out: "/srv/shop/project")
        let watch = try #require(services["pgcluster-watch"] as? [String: Any])
        #expect(watch["profiles"] as? [String] == ["watch"])
        #expect(watch["image"] as? String == "postgres:15")
        #expect(watch["network_mode"] as? String == "host")
        #expect(watch["entrypoint"] as? [String] == ["/opt/pgcluster/bin/pgcluster", "watch", "-f", "/srv/shop/pgcluster.yaml"])
        let environment = try #require(watch["environment"] as? [String: String])
        #expect(environment["LD_LIBRARY_PATH"] == "/opt/pgcluster/lib")
        #expect(environment["DOCKER_CONFIG"] == "/opt/pgcluster/docker")
        #expect(environment["DOCKER_HOST"] == "unix:///run/pgcluster/engine.sock")
        #expect(environment["PATH"]?.hasPrefix("/opt/pgcluster/bin:") == true)
        let volumes = try #require(watch["volumes"] as? [String])
        #expect(volumes.contains("./watcher.d:/opt/pgcluster:ro"))
        #expect(volumes.contains { $0.hasSuffix(":/run/pgcluster/engine.sock") })
        // The spec's folder holds local.dir and the project: one mount, at its own path.
        #expect(volumes.contains("/srv/shop:/srv/shop"))
        #expect(volumes.count == 3, "\(volumes)")
        // Every node service is still there, and none is in a profile.
        for node in ["db_0", "db_1"] {
            let service = try #require(services[node] as? [String: Any])
            #expect(service["profiles"] == nil)
        }
    }

    @Test("without compose.watcher (the default) there is no watcher service")
    func absent() throws {
        let services = try Self.services(try Self.spec(root: "/srv/shop", watcher: false), out: "/srv/shop/project")
        #expect(services["pgcluster-watch"] == nil)
        #expect(Set(services.keys) == ["db_0", "db_1"])
    }

    @Test("compose.watcher is refused on another backend, and a node may not take the watcher's service name")
    func refusals() throws {
        #expect(throws: SpecError.self) {
            try SpecLoader.parse("name: t\ncompose: {watcher: true}\nnodes:\n  - {name: a, port: 1, role: primary}\n", file: "/s/p.yaml")
        }
        let spec = try Self.spec(
            root: "/srv/shop", nodes: "  - {name: a, port: 1, role: primary, serviceHost: pgcluster-watch}\n  - {name: b, port: 2}\n")
        do throws(ClusterError) {
            _ = try ComposeRenderer(renderer: Renderer(spec: spec), superuserPassword: "x", replicationPassword: "y").projectFiles()
            Issue.record("a node named like the watcher's service was accepted")
        } catch {
            #expect(error.exitCode == .badSpec)
            #expect(error.message.contains("the watcher's service"))
        }
    }

    @Test("folders shared with the watcher: each once, none inside another")
    func sharedFolders() {
        #expect(ComposeRenderer.sharedFolders(["/a/b", "/a", "/a/b/c", "/ab"]) == ["/a", "/ab"])
        #expect(ComposeRenderer.sharedFolders(["/srv/x/", "/srv/x/./state", "/var/lib/y"]) == ["/srv/x", "/var/lib/y"])
    }

    @Test("the engine's socket comes from DOCKER_HOST when that names one")
    func engineSocket() {
        #expect(ComposeRenderer.engineSocket(environment: ["DOCKER_HOST": "unix:///run/podman/podman.sock"]) == "/run/podman/podman.sock")
        #expect(ComposeRenderer.engineSocket(environment: ["DOCKER_HOST": "tcp://10.0.0.1:2375"]) == "/var/run/docker.sock")
        #expect(ComposeRenderer.engineSocket(environment: [:]) == "/var/run/docker.sock")
    }

    @Test("the bundle carries the loaded libraries by the names the loader looks for, and none of the C library's")
    func libraries() {
        let loaded = [
            "", "linux-vdso.so.1", "/lib/x86_64-linux-gnu/libpq.so.5", "/opt/swift/usr/lib/swift/linux/libswiftCore.so",
            "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libm.so.6",
            "/lib/x86_64-linux-gnu/libnss_files.so.2", "/lib/x86_64-linux-gnu/libcurl.so.4", "/usr/lib/other/libpq.so.5",
            "/lib/x86_64-linux-gnu/libcrypt.so.1", "/lib/x86_64-linux-gnu/libmd.so.0",
        ]
        #expect(
            WatcherBundle.carried(loaded) == [
                "/lib/x86_64-linux-gnu/libpq.so.5", "/opt/swift/usr/lib/swift/linux/libswiftCore.so",
                "/lib/x86_64-linux-gnu/libcurl.so.4", "/lib/x86_64-linux-gnu/libcrypt.so.1", "/lib/x86_64-linux-gnu/libmd.so.0",
            ])
        // This process's own: libpq is among them (the package links it), libc is not.
        let own = WatcherBundle.carried(WatcherBundle.loadedLibraries()).map { ($0 as NSString).lastPathComponent }
        #expect(own.contains("libpq.so.5"), "\(own)")
        #expect(!own.contains("libc.so.6"))
    }

    @Test("placing the bundle links each file, leaves an unchanged one alone and replaces a changed one")
    func place() throws {
        let root = try ComposeTestSupport.makeTempDir("watcher-bundle")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = "\(root)/source"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try Data("v1".utf8).write(to: URL(fileURLWithPath: "\(source)/tool"))
        try Data("lib".utf8).write(to: URL(fileURLWithPath: "\(source)/libx.so.1.2"))
        symlink("libx.so.1.2", "\(source)/libx.so.1")
        let bundle = WatcherBundle(items: [
            .init(source: "\(source)/tool", path: WatcherBundle.Path.executable),
            .init(source: URL(fileURLWithPath: "\(source)/libx.so.1").resolvingSymlinksInPath().path, path: "lib/libx.so.1"),
        ])
        let out = "\(root)/project"
        #expect(try bundle.write(under: out).map(\.change) == [.created, .created])
        #expect(try String(contentsOfFile: "\(out)/watcher.d/lib/libx.so.1", encoding: .utf8) == "lib")
        #expect(try bundle.write(under: out, dryRun: true).map(\.change) == [.unchanged, .unchanged])
        #expect(try bundle.write(under: out).map(\.change) == [.unchanged, .unchanged])

        // A new build of the program (a new file, as a linker writes it) replaces the old.
        unlink("\(source)/tool")
        try Data("v2".utf8).write(to: URL(fileURLWithPath: "\(source)/tool"))
        #expect(try bundle.write(under: out, dryRun: true).map(\.change) == [.updated, .unchanged])
        #expect(try String(contentsOfFile: "\(out)/watcher.d/bin/pgcluster", encoding: .utf8) == "v1")
        #expect(try bundle.write(under: out).map(\.change) == [.updated, .unchanged])
        #expect(try String(contentsOfFile: "\(out)/watcher.d/bin/pgcluster", encoding: .utf8) == "v2")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "\(out)/watcher.d/bin").filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty)
    }
}
