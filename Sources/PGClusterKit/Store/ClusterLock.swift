import Foundation

/// The cluster lock: every command that changes the cluster holds it while it acts, so two
/// commands (or a command and `watch`) never act at once (docs/ARCHITECTURE.md, "The store").
///
/// With the files store it is an exclusive `flock` on `local.dir/.pgcluster.lock`. The kernel
/// drops it when its holder dies however it dies, so a lock left by a killed command is
/// taken over safely; the file names the holder (command, PID, host, since when) for the
/// message a second taker prints. The descriptor is close-on-exec: a server that pgcluster
/// starts never inherits it.
public final class ClusterLock: @unchecked Sendable {
    /// Who holds the lock, as written in the lock file.
    public struct Holder: Sendable, Codable, Equatable {
        public var command: String
        public var pid: Int32
        public var host: String
        /// ISO 8601, UTC.
        public var since: String

        public static func current(command: String) -> Holder {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return Holder(
                command: command, pid: getpid(), host: ProcessInfo.processInfo.hostName, since: formatter.string(from: Date()))
        }

        public var description: String { "`pgcluster \(command)` (PID \(pid) on \(host), since \(since))" }
    }

    public let path: String
    public let holder: Holder
    private var fd: Int32
    /// local.dir, when taking the lock created it: released with nothing else in it, it goes
    /// again, so that a command refused before it did anything leaves nothing behind.
    private let createdFolder: String?

    private init(path: String, holder: Holder, fd: Int32, createdFolder: String?) {
        self.path = path
        self.holder = holder
        self.fd = fd
        self.createdFolder = createdFolder
    }

    deinit { releaseNow() }

    /// How long a second taker waits by default before it gives up.
    public static let defaultWait: Double = 5

    /// The lock file of a cluster whose state lives in `local.dir`.
    public static func path(for spec: ClusterSpec) -> String { LocalLayout(spec: spec).lockFile }

    public static let fileName = ".pgcluster.lock"

    /// Takes the lock for `command`, waiting up to `wait` seconds for another holder to finish.
    /// Fails (exit 1) naming the holder when it does not.
    public static func acquire(spec: ClusterSpec, command: String, wait: Double = defaultWait) async throws(ClusterError)
        -> ClusterLock
    {
        let folder = spec.local.dir
        let created = FileManager.default.fileExists(atPath: folder) ? nil : folder
        try FolderCreation.make(folder, what: "local.dir")
        let path = path(for: spec)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ClusterError("cannot open the cluster lock \(path): \(String(cString: strerror(errno)))")
        }
        let deadline = ContinuousClock.now + .seconds(wait)
        var announced = false
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw ClusterError("cannot take the cluster lock \(path): \(reason)")
            }
            let other = readHolder(fd)
            if ContinuousClock.now >= deadline {
                close(fd)
                throw ClusterError(
                    "the cluster is busy: \(other?.description ?? "another pgcluster command") holds its lock; waited \(formatSeconds(wait))",
                    details: ["try again once it is done; the lock is \(path), and a holder that dies releases it"])
            }
            if !announced {
                Console.progress("waiting for the cluster lock, held by \(other?.description ?? "another command")")
                announced = true
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        // A holder that released the lock emptied the file; one that died left its name.
        if let previous = readHolder(fd), previous.pid != getpid() {
            Console.warn("took over the cluster lock left by \(previous.description), which ended without releasing it")
        }
        let holder = Holder.current(command: command)
        writeHolder(fd, holder)
        return ClusterLock(path: path, holder: holder, fd: fd, createdFolder: created)
    }

    /// Who holds the lock now, or nil when nobody does.
    public static func currentHolder(spec: ClusterSpec) -> Holder? {
        let fd = open(path(for: spec), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return readHolder(fd)
    }

    /// Empties the file (nobody holds it) and drops the lock. Safe to call twice.
    public func releaseNow() {
        guard fd >= 0 else { return }
        _ = ftruncate(fd, 0)
        if let createdFolder, (try? FileManager.default.contentsOfDirectory(atPath: createdFolder)) == [Self.fileName] {
            unlink(path)
            rmdir(createdFolder)
        }
        close(fd)
        fd = -1
    }

    static func readHolder(_ fd: Int32) -> Holder? {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 1024)
        var offset: off_t = 0
        while true {
            let n = pread(fd, &buffer, buffer.count, offset)
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
            offset += off_t(n)
        }
        return data.isEmpty ? nil : try? JSONDecoder().decode(Holder.self, from: data)
    }

    static func writeHolder(_ fd: Int32, _ holder: Holder) {
        guard let data = try? JSONEncoder().encode(holder) else { return }
        _ = ftruncate(fd, 0)
        data.withUnsafeBytes { bytes in _ = pwrite(fd, bytes.baseAddress, bytes.count, 0) }
    }

    static func formatSeconds(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? "\(Int(seconds)) s" : String(format: "%.1f s", seconds)
    }
}
