// swift-tools-version:6.2
// The layout is the architecture: CHiredis (CArgon2) → Redis → SessionCore → SessionHTTP → ServiceSettings → SessionServer;
// SessionWebhooks (the events' delivery, AsyncHTTPClient) hangs off the core and is wired in by the executable only.

import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "session-service",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "session-service", targets: ["SessionServer"]),
        .executable(name: "redis-bench", targets: ["RedisBenchmark"]),
        .executable(name: "session-bench", targets: ["SessionBenchmark"]),
        .library(name: "Redis", targets: ["Redis"]),
        .library(name: "SessionCore", targets: ["SessionCore"]),
        .library(name: "SessionHTTP", targets: ["SessionHTTP"]),
        .library(name: "AccessTokens", targets: ["AccessTokens"]),
        .library(name: "SessionJWT", targets: ["SessionJWT"]),
        .executable(name: "orders-example", targets: ["OrdersExample"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // OTLP over HTTP only: the gRPC trait would bring grpc-swift and minutes of build for a transport we do not use.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // Not `pkgConfig: "hiredis"`: hiredis' .pc adds -D_FILE_OFFSET_BITS=64, which SwiftPM rejects with a
        // warning on every build; the headers are in /usr/include and the modulemap links the library.
        // scripts/lib/common.sh (ensure_base_packages) installs libhiredis-dev.
        .systemLibrary(name: "CHiredis"),
        // Argon2id from Debian's libargon2 (libargon2-dev, installed by ensure_base_packages), the reference implementation.
        .systemLibrary(name: "CArgon2"),
        .target(name: "CHiredisShims", dependencies: ["CHiredis"]),
        .target(
            name: "Redis",
            dependencies: [
                "CHiredis",
                "CHiredisShims",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SessionCore",
            dependencies: [
                "Redis",
                "CArgon2",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        // Signed access tokens (RFC 9068 JWTs) minted from live sessions: keys, claims, signing and verification.
        .target(
            name: "AccessTokens",
            dependencies: [
                "SessionCore",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // Lifecycle events delivered as signed webhooks (Standard Webhooks), from a Redis consumer group.
        .target(
            name: "SessionWebhooks",
            dependencies: [
                "SessionCore",
                "Redis",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SessionHTTP",
            dependencies: [
                "SessionCore",
                "AccessTokens",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // The account page ships inside the binary: no resource bundle to install, no build step, no CDN.
            resources: [
                .embedInCode("Browser/AccountPage/account.html"), .embedInCode("Browser/AccountPage/account.css"),
                .embedInCode("Browser/AccountPage/account.js"),
            ],
            swiftSettings: swiftSettings
        ),
        // The executable's settings: every flag and environment variable declared once (ArgumentParser), resolved into
        // the plain values SessionHTTP takes; and the JSON log handler.
        .target(
            name: "ServiceSettings",
            dependencies: [
                "SessionHTTP",
                "SessionCore",
                "SessionWebhooks",
                "AccessTokens",
                "Redis",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "SessionServer",
            dependencies: [
                "SessionWebhooks",
                "ServiceSettings",
                "SessionHTTP",
                "AccessTokens",
                "SessionCore",
                "Redis",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            swiftSettings: swiftSettings
        ),
        // For downstream services: a Hummingbird middleware that verifies the access tokens offline (JWKS fetched and
        // cached), optionally checking in Redis that the session behind one is still live. Not linked by the service.
        .target(
            name: "SessionJWT",
            dependencies: [
                "AccessTokens",
                "SessionCore",
                "Redis",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The classic "orders" API, protected by a session token, a JWT offline, or a JWT with a revocation check.
        .executableTarget(
            name: "OrdersExample",
            dependencies: [
                "SessionJWT",
                "SessionHTTP",
                "SessionCore",
                "Redis",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/Orders",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "RedisBenchmark",
            dependencies: ["Redis"],
            path: "Benchmarks/RedisBenchmark",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "SessionBenchmark",
            dependencies: ["Redis", "SessionCore"],
            path: "Benchmarks/SessionBenchmark",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "TestSupport",
            dependencies: [
                "Redis", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "HTTPTestSupport",
            dependencies: [
                "SessionHTTP", "ServiceSettings", "SessionCore", "Redis", "TestSupport", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/HTTPTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RedisTests",
            dependencies: [
                "Redis", "TestSupport", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SessionCoreTests",
            dependencies: [
                "SessionCore", "Redis", "TestSupport", .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Atomics", package: "swift-atomics"), .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AccessTokensTests",
            dependencies: [
                "AccessTokens", "SessionCore", .product(name: "JWTKit", package: "jwt-kit"), .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SessionJWTTests",
            dependencies: [
                "SessionJWT", "AccessTokens", "SessionHTTP", "ServiceSettings", "SessionCore", "Redis", "TestSupport", "HTTPTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SessionHTTPTests",
            dependencies: [
                "SessionHTTP", "ServiceSettings", "SessionCore", "Redis", "TestSupport", "HTTPTestSupport", "AccessTokens",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)

// The libFuzzer harness (scripts/fuzz) is only part of the package when asked for: it has no `main` of its own
// (libFuzzer provides it), so it cannot link in an ordinary build.
if Context.environment["SESSION_FUZZ"] != nil {
    package.targets.append(
        .executableTarget(
            name: "SessionFuzz",
            dependencies: ["Redis", "SessionCore", "SessionHTTP", .product(name: "NIOCore", package: "swift-nio")],
            path: "Fuzz/SessionFuzz",
            swiftSettings: swiftSettings + [.unsafeFlags(["-parse-as-library"])]
        )
    )
    package.products.append(.executable(name: "session-fuzz", targets: ["SessionFuzz"]))
}
