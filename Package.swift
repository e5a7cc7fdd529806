// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "pgcluster",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "pgcluster", targets: ["pgcluster"]),
        .library(name: "PGClusterKit", targets: ["PGClusterKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        .target(
            name: "PGClusterKit",
            dependencies: [
                "CLibPQ",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Mustache", package: "swift-mustache"),
            ]
        ),
        .executableTarget(
            name: "pgcluster",
            dependencies: [
                "PGClusterKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "PGClusterKitTests",
            dependencies: ["PGClusterKit", "pgcluster"],
            exclude: ["Golden"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["PGClusterKit", "pgcluster"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
