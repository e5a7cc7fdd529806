import ArgumentParser
import Foundation
import PGClusterKit

@main
struct PGCluster: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pgcluster",
        abstract: "Build and operate a PostgreSQL streaming-replication cluster from one YAML spec.",
        discussion: """
            Exit codes: 0 done; 1 failed; 2 refused as unsafe (the flag that accepts the risk is named);
            64 bad command line; 65 bad spec.
            """,
        version: PGClusterKit.version,
        subcommands: [
            Validate.self, Render.self, Init.self, Status.self, Start.self, Stop.self, Destroy.self,
            Quorum.self, Failover.self, Switchover.self, Rejoin.self, Apply.self, Restart.self, Drill.self, DSN.self, History.self, Psql.self,
            Watch.self, Pause.self, Resume.self, TLS.self, Backup.self, Backups.self, Restore.self,
        ]
    )

    /// ArgumentParser's own `main`, but leaving through `_exit` (``leave(_:)``) instead of
    /// `exit`: `exit` runs the atexit handlers, OpenSSL's cleanup among them (libpq
    /// registers it), while a thread may still be inside libpq: a probe or a statement
    /// whose deadline passed runs on until libpq gives up, by design. OpenSSL's state freed
    /// under it crashes the process (a drill exited with SIGSEGV in a CI run; a C program
    /// that exits while four threads connect over TLS crashes in about one exit of four
    /// here, and never with `_exit`).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            leave(0)
        } catch {
            // What ArgumentParser's `exit(withError:)` prints, and where: help and the
            // version to stdout (exit 0), everything else to stderr.
            let code = exitCode(for: error)
            let text = fullMessage(for: error)
            if !text.isEmpty {
                if code == .success { Console.out(text) } else { FileHandle.standardError.write(Data((text + "\n").utf8)) }
            }
            leave(code.rawValue)
        }
    }

    /// Ends the process with `code` once what it printed is out, without the atexit handlers.
    static func leave(_ code: Int32) -> Never {
        fflush(nil)
        _exit(code)
    }
}

/// Flags every command that reads a spec takes.
struct SpecOptions: ParsableArguments {
    @Option(name: [.customShort("f"), .long], help: "The cluster spec.")
    var spec: String = "pgcluster.yaml"

    @Option(help: ArgumentHelp("Use the templates in this folder instead of the embedded ones.", valueName: "dir"))
    var templates: String?

    func load() throws(ClusterError) -> ClusterSpec {
        do {
            return try SpecLoader.load(path: spec)
        } catch {
            throw ClusterError(error.description, exitCode: .badSpec)
        }
    }

    func templateSet() throws(ClusterError) -> TemplateSet {
        guard let templates else { return .embedded }
        return try TemplateSet(directory: templates)
    }
}

/// Runs a command body, turning our errors into a message on stderr and the contract's exit code.
/// - Parameter passesOnInterrupts: SIGINT, SIGTERM and SIGHUP end the programs the command
///   runs too (``Interrupts``); `watch` says false: it stops between steps instead.
func execute(passesOnInterrupts: Bool = true, _ body: () async throws -> Void) async throws {
    if passesOnInterrupts { Interrupts.install() }
    do {
        try await body()
        // Its last program ended by the signal passed on, the command may finish: it is
        // the interrupt that ends it, with 128 + the signal.
        Interrupts.holdIfEnding()
    } catch let error as ClusterError {
        Interrupts.holdIfEnding()
        Console.error(error)
        throw ExitCode(error.exitCode.rawValue)
    } catch let error as SpecError {
        Console.error(ClusterError(error.description, exitCode: .badSpec))
        throw ExitCode(ExitKind.badSpec.rawValue)
    }
}

/// Runs the body of a command that changes the cluster: loads the spec, then holds the
/// cluster lock (in the cluster's store: local.dir or etcd) while the body runs, so that no
/// other command, and no watcher, acts at the same time.
func executeLocked(_ options: SpecOptions, _ command: String, _ body: (ClusterSpec) async throws -> Void) async throws {
    try await execute {
        let spec = try options.load()
        try await Stores.of(spec).holdingLock(command: command) { try await body(spec) }
    }
}
