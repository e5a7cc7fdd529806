// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "pgcluster",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "pgcluster", targets: ["pgcluster"]),
        .library(name: "PGClusterKit", targets: ["PGClusterKit"]),
        .library(name: "PGClusterRules", targets: ["PGClusterRules"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // watch.http: the health endpoints (FlyingFox: no SwiftNIO) and /metrics.
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        // libcurl (apt libcurl4-openssl-dev): the etcd store's HTTP client, with TLS and
        // client certificates. shim.h wraps its variadic setters for Swift.
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"]), .brew(["curl"])]
        ),
        // OpenSSL's libcrypto (apt libssl-dev, which libpq-dev depends on): the cluster CA's
        // P-256 keys and certificates, SCRAM secrets. libpq and libcurl load it already;
        // swift-crypto and swift-certificates cost ~40 % of a clean build (docs/PERFORMANCE.md).
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"]), .brew(["openssl@3"])]
        ),
        // glibc's <link.h>: dl_iterate_phdr (what the loader loaded), for the compose watcher.
        .systemLibrary(name: "CLoader"),
        // The rules: spec, observations, and every decision (who is primary, who is freshest,
        // what the quorum guard needs, the watcher's next action, the apply plan). It cannot
        // import libpq, run a process or reach a store: the compiler keeps it pure.
        .target(
            name: "PGClusterRules",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        .target(
            name: "PGClusterKit",
            dependencies: [
                "PGClusterRules",
                "CLibPQ",
                "CCurl",
                "CLoader",
                "COpenSSL",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "FlyingFox", package: "FlyingFox"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "pgcluster",
            dependencies: [
                "PGClusterKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "PGClusterKitTests",
            dependencies: [
                "PGClusterKit", "PGClusterRules", "pgcluster", "COpenSSL",
                .product(name: "Yams", package: "Yams"),
            ],
            exclude: ["Golden"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["PGClusterKit", "PGClusterRules", "pgcluster"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
