import Foundation
import Testing

@testable import PGClusterKit

/// The .deb that `make dist` built, installed into a fresh Debian root (debootstrap, cached by
/// scripts/deb-rootfs.sh) and run there by chroot: the binary needs nothing of the Swift
/// toolchain, only what its package depends on. Root only; the .deb is not built here (a
/// release build takes minutes): run `make dist` first.
@Suite("the .deb in a debootstrap root", .serialized)
struct PackageTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The newest dist/pgcluster_*.deb, or nil.
    static let deb: String? = {
        let dist = "\(repository)/dist"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dist)) ?? []
        return names.filter { $0.hasPrefix("pgcluster_") && $0.hasSuffix(".deb") }
            .map { "\(dist)/\($0)" }
            .max { modified($0) < modified($1) }
    }()

    static func modified(_ path: String) -> Date {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date) ?? .distantPast
    }

    static func run(_ argv: [String], timeout: Double = 120) -> RunResult {
        TestCluster.spawnWithFiles(argv, timeout: timeout)
    }

    @Test(
        "dpkg -i installs it; pgcluster --version and validate run by chroot; unit, completions and man page in place",
        .enabled(if: getuid() == 0, "needs root (debootstrap, chroot)"),
        .enabled(if: deb != nil, "no dist/pgcluster_*.deb: run make dist first"))
    func installsAndRuns() throws {
        let deb = try #require(Self.deb)
        let root = "/var/tmp/pgcluster-debtest-\(UUID().uuidString.prefix(8).lowercased())"
        defer {
            // Never remove a tree with /proc still mounted in it.
            _ = Self.run(["/usr/bin/umount", "\(root)/proc"])
            if Self.run(["/usr/bin/mountpoint", "-q", "\(root)/proc"]).status != 0 {
                try? FileManager.default.removeItem(atPath: root)
            }
        }
        let made = Self.run(["\(Self.repository)/scripts/deb-rootfs.sh", root], timeout: 900)
        try #require(made.status == 0, "deb-rootfs: \(made.stderr)")
        // As on any server: the Swift runtime reads a program's arguments from /proc/self/cmdline.
        try #require(Self.run(["/usr/bin/mount", "--bind", "/proc", "\(root)/proc"]).status == 0)
        // Nothing of this machine's toolchain is in there.
        #expect(!FileManager.default.fileExists(atPath: "\(root)/opt/swift"))

        try FileManager.default.copyItem(atPath: deb, toPath: "\(root)/tmp/pgcluster.deb")
        let install = Self.run(["/usr/sbin/chroot", root, "dpkg", "-i", "/tmp/pgcluster.deb"])
        #expect(install.status == 0, "dpkg -i: \(install.stdout)\(install.stderr)")

        let version = Self.run(["/usr/sbin/chroot", root, "/usr/bin/pgcluster", "--version"])
        #expect(version.status == 0, "\(version.stderr)")
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == PGClusterKit.version)

        let libraries = Self.run(["/usr/sbin/chroot", root, "ldd", "/usr/bin/pgcluster"])
        #expect(libraries.status == 0)
        #expect(libraries.stdout.contains("libpq.so.5"), "\(libraries.stdout)")
        #expect(!libraries.stdout.contains("not found"), "\(libraries.stdout)")
        #expect(!libraries.stdout.contains("libswift"), "\(libraries.stdout)")

        for example in ["local.yaml", "any1.yaml", "etcd.yaml"] {
            let validate = Self.run(
                ["/usr/sbin/chroot", root, "/usr/bin/pgcluster", "validate", "-f", "/usr/share/doc/pgcluster/examples/\(example)"])
            #expect(validate.status == 0, "validate \(example): \(validate.stdout)\(validate.stderr)")
        }
        // A bad spec is still refused with 65 there.
        try "name: x\nnodes: []\n".write(toFile: "\(root)/tmp/bad.yaml", atomically: true, encoding: .utf8)
        #expect(Self.run(["/usr/sbin/chroot", root, "/usr/bin/pgcluster", "validate", "-f", "/tmp/bad.yaml"]).status == 65)

        let unit = try String(contentsOfFile: "\(root)/lib/systemd/system/pgcluster-watch@.service", encoding: .utf8)
        for line in ["Type=notify", "User=postgres", "NoNewPrivileges=yes", "ProtectSystem=strict", "WatchdogSec=10"] {
            #expect(unit.contains("\n\(line)\n"), "unit: \(line)")
        }
        let bash = try String(contentsOfFile: "\(root)/usr/share/bash-completion/completions/pgcluster", encoding: .utf8)
        #expect(bash.contains("restart") && bash.contains("complete"))
        #expect(FileManager.default.fileExists(atPath: "\(root)/usr/share/zsh/vendor-completions/_pgcluster"))
        let man = Self.run(["/bin/sh", "-c", "gzip -dc '\(root)/usr/share/man/man1/pgcluster.1.gz'"])
        #expect(man.stdout.hasPrefix(".TH PGCLUSTER 1"))
        #expect(man.stdout.contains("pgcluster restart"))
        // postinst: the unit's user and its state folder.
        #expect(Self.run(["/usr/sbin/chroot", root, "getent", "passwd", "postgres"]).status == 0)
        #expect(FileManager.default.fileExists(atPath: "\(root)/var/lib/pgcluster"))
    }
}
