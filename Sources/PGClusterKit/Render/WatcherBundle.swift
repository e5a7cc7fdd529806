import CLoader
import Foundation

/// What the compose project's `pgcluster-watch` service runs (`compose.watcher: true`):
/// this pgcluster, the docker CLI with its compose plugin, and every shared library
/// pgcluster has loaded that the C library does not provide (the Swift runtime when it is
/// not linked in, libpq, libcurl and what they need). `render` and `init` link them (or copy
/// them, across file systems) into ``folder`` of the project, which the service mounts
/// read-only at ``mountPoint`` in a container of the nodes' image: nothing is built, and
/// only that image's C library is used, so it must be at least as new as this machine's.
public struct WatcherBundle: Sendable, Equatable {
    /// The project's folder for it. Node names cannot hold a `.`, so it never clashes with
    /// a node's folder.
    public static let folder = "watcher.d"
    /// Where the service mounts ``folder``.
    public static let mountPoint = "/opt/pgcluster"

    /// One file to carry: `source` on this machine, `path` relative to ``folder``.
    public struct Item: Sendable, Equatable {
        public var source: String
        public var path: String
    }

    public var items: [Item]

    /// Paths inside ``folder`` (and so below ``mountPoint``).
    public enum Path {
        public static let executable = "bin/pgcluster"
        public static let docker = "bin/docker"
        /// `DOCKER_CONFIG` points at `docker/`, where the CLI looks for `cli-plugins/`.
        public static let dockerConfig = "docker"
        public static let composePlugin = "docker/cli-plugins/docker-compose"
        public static let libraries = "lib"
    }

    /// Finds the parts on this machine: the running executable, `docker` on PATH, the
    /// compose plugin where the docker CLI looks for it, the loaded libraries.
    public static func gather(environment: [String: String] = ProcessInfo.processInfo.environment) throws(ClusterError) -> WatcherBundle {
        var missing: [String] = []
        guard let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
            throw ClusterError("cannot find this pgcluster's executable (/proc/self/exe) for the compose watcher")
        }
        let docker = ComposeCluster.onPath("docker")
        if docker == nil { missing.append("the docker CLI (`docker` on PATH)") }
        let plugins = pluginFolders(environment: environment)
        let plugin = plugins.map { "\($0)/docker-compose" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        if plugin == nil { missing.append("the docker compose v2 plugin (looked in \(plugins.joined(separator: ", ")))") }
        guard let docker, let plugin, missing.isEmpty else {
            throw ClusterError(
                "compose.watcher needs \(missing.joined(separator: " and ")) on this machine, to carry into the project",
                exitCode: .badSpec,
                details: ["install them, or set compose.watcher: false and run `pgcluster watch` on this machine"])
        }
        var items = [
            Item(source: executable, path: Path.executable),
            Item(source: resolved(docker), path: Path.docker),
            Item(source: resolved(plugin), path: Path.composePlugin),
        ]
        // Named as the loader looks for it (the soname), carried from the file it names.
        for library in carried(loadedLibraries()) {
            items.append(Item(source: resolved(library), path: "\(Path.libraries)/\((library as NSString).lastPathComponent)"))
        }
        return WatcherBundle(items: items)
    }

    /// The file a path names, through its symbolic links: a hard link to a link would carry
    /// the link, whose relative target is not in the bundle.
    private static func resolved(_ path: String) -> String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }

    /// Where the docker CLI looks for its plugins, in its order.
    static func pluginFolders(environment: [String: String]) -> [String] {
        var folders: [String] = []
        if let config = environment["DOCKER_CONFIG"] { folders.append("\(config)/cli-plugins") }
        if let home = environment["HOME"] { folders.append("\(home)/.docker/cli-plugins") }
        return folders + [
            "/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
            "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins",
        ]
    }

    /// The libraries to carry, of those the dynamic loader loaded (as it named them: the
    /// soname's path, which is what it looks for again). Pure. Left out: the program itself
    /// (an empty name), the kernel's vDSO, and the C library's own parts, which must match
    /// the image's loader and come from the image.
    public static func carried(_ loaded: [String]) -> [String] {
        var seen = Set<String>()
        return loaded.filter { path in
            let name = (path as NSString).lastPathComponent
            guard path.hasPrefix("/"), !name.isEmpty, !isCLibrary(name), !name.hasPrefix("linux-vdso") else { return false }
            return seen.insert(name).inserted
        }
    }

    /// True for the files of glibc (the loader, libc, libm, libpthread, libdl, librt,
    /// libresolv, libutil, libanl, libmvec, the NSS modules).
    static func isCLibrary(_ name: String) -> Bool {
        if name.hasPrefix("ld-linux") || name.hasPrefix("libnss_") { return true }
        let stem = name.split(separator: ".").first.map(String.init) ?? name
        return ["libc", "libm", "libpthread", "libdl", "librt", "libresolv", "libutil", "libanl", "libmvec"].contains(stem)
    }

    /// The path of every object the dynamic loader has loaded into this process.
    static func loadedLibraries() -> [String] {
        final class Collected { var paths: [String] = [] }
        let collected = Collected()
        withExtendedLifetime(collected) {
            pgc_loaded_objects({ name, context in
                guard let name, let context else { return }
                Unmanaged<Collected>.fromOpaque(context).takeUnretainedValue().paths.append(String(cString: name))
            }, Unmanaged.passUnretained(collected).toOpaque())
        }
        return collected.paths
    }

    /// Links each item into `root/`(``folder``), or copies it where a link cannot be made
    /// (another file system), each through a temporary name and a rename. An item that is
    /// already there (the same file, or the same contents) is left alone.
    @discardableResult
    public func write(under root: String, dryRun: Bool = false) throws(ClusterError) -> [FileWriter.Outcome] {
        var outcomes: [FileWriter.Outcome] = []
        let base = "\(root)/\(Self.folder)"
        for item in items {
            let destination = "\(base)/\(item.path)"
            let change: FileWriter.Change
            if !FileManager.default.fileExists(atPath: destination) {
                change = .created
            } else if Self.sameFile(item.source, destination) || FileManager.default.contentsEqual(atPath: item.source, andPath: destination) {
                change = .unchanged
            } else {
                change = .updated
            }
            outcomes.append(.init(path: destination, change: change))
            if dryRun || change == .unchanged { continue }
            try Self.place(item.source, at: destination)
        }
        return outcomes
    }

    private static func sameFile(_ a: String, _ b: String) -> Bool {
        var first = stat()
        var second = stat()
        guard stat(a, &first) == 0, stat(b, &second) == 0 else { return false }
        return first.st_dev == second.st_dev && first.st_ino == second.st_ino
    }

    private static func place(_ source: String, at destination: String) throws(ClusterError) {
        let folder = (destination as NSString).deletingLastPathComponent
        let temp = "\(folder)/.\((destination as NSString).lastPathComponent).tmp-\(getpid())"
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            unlink(temp)
            if link(source, temp) != 0 {
                try FileManager.default.copyItem(atPath: source, toPath: temp)
                _ = chmod(temp, 0o755)
            }
            try FileWriter.moveIntoPlace(temp, destination)
        } catch {
            throw ClusterError("cannot place \(source) at \(destination): \(error.localizedDescription)")
        }
    }
}
