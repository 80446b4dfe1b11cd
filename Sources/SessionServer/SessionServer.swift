import AccessTokens
import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import ServiceSettings
import SessionCore
import SessionHTTP
import SessionWebhooks

/// `session-service`: reads its configuration (environment, then flags), sets up logging and metrics,
/// and serves until SIGTERM or SIGINT, which drain in-flight requests before Redis closes; exits 0.
@main
struct SessionServer {
    static func main() async {
        // Every connection is a descriptor: take what the hard limit allows before MAX_CONNECTIONS' default is read.
        System.raiseOpenFileLimit()
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "jwt-keygen" {
            KeyGenerator.main(Array(arguments.dropFirst()))
            return
        }
        if arguments.contains("--help") || arguments.contains("-h") {
            print(
                """
                session-service: Redis-backed token sessions over HTTP

                Each flag also reads the environment variable of the same name in capitals with underscores
                (--redis-url reads REDIS_URL); a flag wins over the variable.

                """ + HelpCommand.helpMessage(columns: 120)
            )
            return
        }
        let options: ServiceOptions
        var configuration: ServiceConfiguration
        do {
            options = try ServiceOptions.parse(environment: ProcessInfo.processInfo.environment, arguments: arguments)
            configuration = try ServiceConfiguration(options)
        } catch {
            FileHandle.standardError.write(Data("session-service: \(error.description)\n".utf8))
            exit(2)
        }

        let level = options.logLevel
        switch options.logFormat {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardOutput(label: label)
                handler.logLevel = level
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
        let registry = PrometheusCollectorRegistry()
        var metrics = PrometheusMetricsFactory(registry: registry)
        // Sub-millisecond buckets: a verification takes a fraction of a millisecond, a Redis command less.
        metrics.defaultDurationHistogramBuckets = Telemetry.durationBuckets
        MetricsSystem.bootstrap(metrics)
        let logger = Logger(label: "session-service")
        for warning in configuration.warnings { logger.warning("configuration adjusted", metadata: ["reason": "\(warning)"]) }
        let tracing: (any Service)?
        do {
            let bootstrapped = try Telemetry.bootstrapTracing(environment: ProcessInfo.processInfo.environment, logger: logger)
            tracing = bootstrapped?.service
            if let sampling = bootstrapped?.sampling { configuration.traceSampling = sampling }
        } catch {
            FileHandle.standardError.write(Data("session-service: OTEL_*: \(error)\n".utf8))
            exit(2)
        }

        let app = SessionService.makeApplication(
            configuration: configuration, logger: logger, metricsText: { registry.emitToString() }, services: tracing.map { [$0] } ?? [],
            eventServices: { redis, events in
                if let webhook = options.webhookSettings {
                    return [WebhookDispatcher(events: events, redis: redis, settings: webhook, logger: logger)]
                }
                // No delivery, but a Cluster's outboxes still feed the stream for whoever reads it.
                return events.usesOutboxes ? [OutboxSweeper(events: events)] : []
            }
        )
        logger.info(
            "starting",
            metadata: [
                "http.address": "\(configuration.host):\(configuration.port)", "redis.endpoint": "\(configuration.redis)",
                "session.idle_timeout_s": "\(configuration.sessions.idleTimeout.components.seconds)",
                "session.absolute_timeout_s": "\(configuration.sessions.absoluteTimeout.components.seconds)",
            ]
        )
        do {
            try await app.runService()
            logger.info("stopped")
        } catch {
            logger.critical("service failed", metadata: ["error": "\(error)"])
            exit(1)
        }
    }
}

/// Only for `--help`: names the command in the usage line.
struct HelpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "session-service")
    @OptionGroup var options: ServiceOptions
}

/// `session-service jwt-keygen [--alg EdDSA|ES256] > keys.json`: a JWK Set with one new private key for
/// `JWT_KEYS_FILE` (its `kid` is the key's RFC 7638 thumbprint). Merge sets by hand to rotate.
struct KeyGenerator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session-service jwt-keygen", abstract: "Writes a JWK Set with one new private signing key to standard output."
    )

    @Option(help: "EdDSA (Ed25519, the default) or ES256 (P-256).")
    var alg: Algorithm = .eddsa

    enum Algorithm: String, ExpressibleByArgument {
        case eddsa = "EdDSA", es256 = "ES256"

        init?(argument: String) {
            switch argument.lowercased() {
            case "eddsa", "ed25519": self = .eddsa
            case "es256": self = .es256
            default: return nil
            }
        }
    }

    func run() {
        print(AccessTokenKeySet.generate(alg == .eddsa ? .eddsa : .es256))
    }
}
