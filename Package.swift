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
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
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
                .product(name: "Yams", package: "Yams"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
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
                "PGClusterKit", "PGClusterRules", "pgcluster",
                .product(name: "Yams", package: "Yams"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            exclude: ["Golden"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["PGClusterKit", "PGClusterRules", "pgcluster", .product(name: "X509", package: "swift-certificates")]
        ),
    ],
    swiftLanguageModes: [.v5]
)
