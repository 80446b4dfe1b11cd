// Over 300 lines: every setting (60 flags) is declared exactly once here — its flag, environment variable, default
// and help text — and a split by topic would scatter the one list the README's table mirrors.

public import ArgumentParser
import Foundation
public import Logging
import Redis
import SessionCore
public import SessionHTTP
import SessionWebhooks

/// Every setting of the service, declared once: its flag (from the property name, `redisURL` → `--redis-url`), its
/// default, its validation and its help text. `--help` is generated from these declarations; so is the environment:
/// each flag also reads the variable of the same name in capitals with underscores (`--redis-url` ↔ `REDIS_URL`), and
/// a flag wins over the variable (`ServiceOptions.parse(environment:arguments:)`).
public struct ServiceOptions: ParsableArguments, Sendable {
    @Option(help: "Address to listen on.")
    public var host = "127.0.0.1"

    @Option(help: ArgumentHelp("Port to listen on (0: any free port).", valueName: "0-65535"))
    public var port = 8080

    @Option(help: ArgumentHelp("Closes a keep-alive connection with no request in progress for this long; 0 never.", valueName: "seconds"))
    public var httpIdleTimeout = 60

    @Option(help: ArgumentHelp("A request's head must be complete within this long of its first byte.", valueName: "seconds"))
    public var httpHeaderTimeout = 10

    @Option(help: ArgumentHelp("A request's body may not stall for longer than this.", valueName: "seconds"))
    public var httpBodyTimeout = 10

    @Option(help: ArgumentHelp("A response the client does not read for this long closes its connection.", valueName: "seconds"))
    public var httpWriteTimeout = 10

    @Option(help: "Requests in flight per connection at most; a client that pipelines more is not read until it reads its answers.")
    public var httpMaxPipelined = 16

    @Option(help: "Connections open at once; beyond it a new one gets 503 and is closed. The default is 80% of the open-file limit.")
    public var maxConnections = max(16, System.openFileLimit * 8 / 10)

    @Option(
        help: """
            redis://[user[:password]@]host[:port][/db], unix:///path/redis.sock[?db=N], \
            redis-sentinel://[[user:]password@]host1[:26379][,host2[:port]]…[/db]#master-name, \
            redis-cluster://[[user:]password@]host1[:port1][,host2[:port2]]…; rediss… for TLS
            """
    )
    public var redisURL = "redis://127.0.0.1:6379/0"

    @Option(help: "Password of the sentinels (redis-sentinel:// URLs); the URL's credentials are the data nodes'.")
    public var redisSentinelPassword: String?

    @Option(
        help: ArgumentHelp(
            "PEM file of the CAs that sign the Redis servers' certificates (rediss…:// URLs); default: the system's.", valueName: "path"))
    public var redisTlsCaFile: String?

    @Option(help: ArgumentHelp("PEM client certificate for Redis TLS (with --redis-tls-key-file).", valueName: "path"))
    public var redisTlsCertFile: String?

    @Option(help: ArgumentHelp("PEM private key of the client certificate.", valueName: "path"))
    public var redisTlsKeyFile: String?

    @Option(
        help: """
            Replicas that must confirm a revocation or registration (WAIT) before it is acknowledged; else 503. \
            Default: 1 with Sentinel or Cluster, 0 with one node.
            """
    )
    public var redisMinReplicas: Int?

    @Option(help: ArgumentHelp("How long a durable write waits for its replicas.", valueName: "milliseconds"))
    public var redisWaitTimeoutMs = 100

    @Option(help: ArgumentHelp("Seconds a session may go unused; every authenticated request renews it.", valueName: "seconds"))
    public var sessionIdleTimeout = 1800

    @Option(help: ArgumentHelp("Seconds after login a session ends, whatever its use.", valueName: "seconds"))
    public var sessionAbsoluteTimeout = 86400

    @Option(
        help: ArgumentHelp(
            "A session's idle deadline is renewed at most this often; it may outlive its idle timeout by up to this much. Default: min(60, idle/10).",
            valueName: "seconds"))
    public var sessionTouchInterval: Double?

    @Option(help: "on: answer hot sessions from memory, kept coherent by Redis' CLIENT TRACKING invalidations; off: ask Redis every time.")
    public var nearCache: Switch = .on

    @Option(help: "Sessions the near cache holds at most (CLOCK eviction).")
    public var nearCacheMaxEntries = 100_000

    @Option(help: ArgumentHelp("Longest a cached session is used without reading Redis again, whatever Redis says.", valueName: "milliseconds"))
    public var nearCacheMaxAgeMs = 10_000

    @Option(
        help: ArgumentHelp(
            "How long cached sessions stay usable without a newer answered ping of their tracking connection; must be shorter than the failure detection (Sentinel's down-after-milliseconds, cluster-node-timeout).",
            valueName: "milliseconds"))
    public var nearCacheLeaseMs = 500

    @Option(help: "Live sessions per user; a login beyond it ends the user's oldest session.")
    public var maxSessionsPerUser = 100

    @Option(help: "on: a login is acknowledged only once REDIS_MIN_REPLICAS replicas have its session (and its event).")
    public var durableLogins: Switch = .off

    @Option(help: "open, or closed (POST /v1/users answers 403).")
    public var registration: Registration = .open

    @Option(help: "Failed logins per (username, client address) within the window before 429.")
    public var loginMaxFailures = 5

    @Option(help: "Failed logins per username from any address within the window before 429 (credential stuffing).")
    public var loginMaxFailuresPerUser = 20

    @Option(help: "Failed logins per client address for any username within the window before 429 (password spraying).")
    public var loginMaxFailuresPerAddress = 100

    @Option(help: ArgumentHelp("Seconds, counted from each counter's first failure.", valueName: "seconds"))
    public var loginFailureWindow = 900

    @Option(help: "Registrations per client address within the login failure window before 429 (each costs a password hash).")
    public var registrationMaxPerAddress = 10

    @Option(help: "IPs and CIDRs, comma-separated, whose X-Forwarded-For is believed; empty trusts none.")
    public var trustedProxies = ""

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    public var logLevel: Logger.Level = .info

    @Option(help: "text (one readable line per entry) or json (one JSON object per line, for log pipelines).")
    public var logFormat: LogFormat = .text

    @Option(help: "Prefix of every Redis key (at most 64 bytes).")
    public var keyPrefix = "ss:"

    @Option(help: ArgumentHelp("Larger request bodies get 413.", valueName: "bytes"))
    public var maxBodySize = 65536

    @Option(help: "How new passwords are hashed: argon2id or bcrypt. Existing hashes of either keep working; a login rehashes them.")
    public var passwordHash: PasswordHashName = .argon2id

    @Option(help: ArgumentHelp("Argon2id memory per hash (1024-4194304); at most HASH_THREADS hashes hold it at once.", valueName: "KiB"))
    public var argon2MemoryKib = 19456

    @Option(help: "Argon2id passes over its memory, 1-64.")
    public var argon2Iterations = 2

    @Option(help: "Argon2id lanes (threads per hash), 1-16.")
    public var argon2Parallelism = 1

    @Option(help: "bcrypt cost, 4-16 (with --password-hash bcrypt).")
    public var bcryptCost = 11

    @Option(help: "New passwords have at least this many characters (Unicode scalars), 8-256.")
    public var passwordMinLength = 8

    @Option(help: ArgumentHelp("Changing the password or the second factor needs a login at most this old.", valueName: "seconds"))
    public var reauthMaxAge = 300

    @Option(help: "The issuer an authenticator app shows beside the username (otpauth:// URIs).")
    public var totpIssuer = "session-service"

    @Option(
        help: ArgumentHelp("32 bytes, base64: TOTP secrets are sealed with it (ChaChaPoly) at rest; unset: stored as they are.", valueName: "base64"))
    public var totpEncryptionKey: String?

    @Option(help: "Threads that hash passwords, never the event loops; the default is half the cores, at least 1.")
    public var hashThreads = max(1, System.coreCount / 2)

    @Option(help: "Pooled, pipelined Redis connections, spread over the event loops; the default is the cores, at least 2.")
    public var redisConnections = max(2, System.coreCount)

    @Option(help: ArgumentHelp("Redis connect and per-command timeout.", valueName: "milliseconds"))
    public var redisTimeoutMs = 1000

    @Option(help: "Name of the browser session cookie; default __Host-session, or session with --cookie-secure off.")
    public var cookieName: String?

    @Option(help: "on: the cookie is Secure (HTTPS only); off only for plain-HTTP development (logged as a warning).")
    public var cookieSecure: Switch = .on

    @Option(help: "Origins (scheme://host[:port]), comma-separated, allowed to send cookie-authenticated unsafe requests.")
    public var allowedOrigins = ""

    @Option(help: "on: serve the account page at GET /account; off: no page.")
    public var accountPage: Switch = .on

    @Option(
        help: ArgumentHelp(
            "JWK Set of private keys (chmod 600) that sign access tokens: the first signs, all verify. Unset: no JWTs.", valueName: "path"))
    public var jwtKeysFile: String?

    @Option(help: "HS256 shared secret (at least 32 bytes), used only when --jwt-keys-file is unset; never published.")
    public var jwtHs256Secret: String?

    @Option(help: "iss of the access tokens.")
    public var jwtIssuer = "session-service"

    @Option(help: "aud of the access tokens.")
    public var jwtAudience = "api"

    @Option(help: ArgumentHelp("Lifetime of an access token, never past its session's absolute expiry.", valueName: "seconds"))
    public var jwtTtl = 300

    @Option(help: "Clients of POST /v1/introspect and /v1/revoke (HTTP Basic): id:secret, comma-separated; empty: none.")
    public var introspectionClients = ""

    @Option(help: ArgumentHelp("Port of the operator API (/v1/admin/*, its own listener); unset: no operator API.", valueName: "0-65535"))
    public var adminPort: Int?

    @Option(help: "Address the operator API listens on.")
    public var adminHost = "127.0.0.1"

    @Option(help: "Clients of the operator API (HTTP Basic): name:secret, comma-separated; needed with --admin-port.")
    public var adminClients = ""

    @Option(help: "on: serve GET /v1/verify in the channel pipeline; off: through the router (same answers).")
    public var verifyFastPath: Switch = .on

    @Option(help: "on: record lifecycle events (sign-ins, sign-outs, account changes) with each change; off: none.")
    public var events: Switch = .on

    @Option(help: "The delivery stream's approximate cap (XADD MAXLEN ~), 1000-1000000000.")
    public var eventsMaxlen = 1_000_000

    @Option(help: ArgumentHelp("Where lifecycle events are POSTed as signed webhooks (http or https); unset: no delivery.", valueName: "url"))
    public var webhookURL: String?

    @Option(help: ArgumentHelp("The webhooks' signing secret, Standard Webhooks format; needed with --webhook-url.", valueName: "whsec_…"))
    public var webhookSecret: String?

    @Option(help: "Event types delivered, comma-separated (session.created,…); empty: all.")
    public var webhookEvents = ""

    @Option(help: "Attempts per event before it is dead-lettered, 1-30.")
    public var webhookMaxAttempts = 8

    @Option(help: ArgumentHelp("Another instance's unacknowledged delivery is taken over after this long, 1-3600.", valueName: "seconds"))
    public var webhookClaimAfter = 30

    @Option(help: "Webhook requests in flight per instance at most, 1-256.")
    public var webhookConcurrency = 8

    public init() {}

    /// Ranges, checked after parsing (flags and environment alike).
    public func validate() throws {
        try Self.check(port, in: 0...65535, "port")
        try Self.check(httpIdleTimeout, in: 0...86400, "http-idle-timeout")
        try Self.check(httpHeaderTimeout, in: 1...3600, "http-header-timeout")
        try Self.check(httpBodyTimeout, in: 1...3600, "http-body-timeout")
        try Self.check(httpWriteTimeout, in: 1...3600, "http-write-timeout")
        try Self.check(httpMaxPipelined, in: 1...1024, "http-max-pipelined")
        try Self.check(maxConnections, in: 1...10_000_000, "max-connections")
        try Self.check(sessionIdleTimeout, in: 1...31_536_000, "session-idle-timeout")
        try Self.check(sessionAbsoluteTimeout, in: 1...315_360_000, "session-absolute-timeout")
        try Self.check(maxSessionsPerUser, in: 1...10_000, "max-sessions-per-user")
        try Self.check(loginMaxFailures, in: 1...1_000_000, "login-max-failures")
        try Self.check(loginMaxFailuresPerUser, in: 1...1_000_000, "login-max-failures-per-user")
        try Self.check(loginMaxFailuresPerAddress, in: 1...1_000_000, "login-max-failures-per-address")
        try Self.check(loginFailureWindow, in: 1...31_536_000, "login-failure-window")
        try Self.check(registrationMaxPerAddress, in: 1...1_000_000, "registration-max-per-address")
        try Self.check(maxBodySize, in: 256...(64 << 20), "max-body-size")
        try Self.check(bcryptCost, in: 4...16, "bcrypt-cost")
        try Self.check(argon2MemoryKib, in: 1024...4_194_304, "argon2-memory-kib")
        try Self.check(argon2Iterations, in: 1...64, "argon2-iterations")
        try Self.check(argon2Parallelism, in: 1...16, "argon2-parallelism")
        try Self.check(passwordMinLength, in: 8...256, "password-min-length")
        try Self.check(reauthMaxAge, in: 1...86400, "reauth-max-age")
        try Self.check(eventsMaxlen, in: 1000...1_000_000_000, "events-maxlen")
        try Self.check(webhookMaxAttempts, in: 1...30, "webhook-max-attempts")
        try Self.check(webhookClaimAfter, in: 1...3600, "webhook-claim-after")
        try Self.check(webhookConcurrency, in: 1...256, "webhook-concurrency")
        if let webhookURL {
            guard let url = URL(string: webhookURL), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host?.isEmpty == false else {
                throw ValidationError("--webhook-url must be an http or https URL")
            }
            guard let webhookSecret, WebhookSignature(secret: webhookSecret) != nil else {
                throw ValidationError("--webhook-url needs --webhook-secret: whsec_ and base64 of at least 16 bytes")
            }
            guard events == .on else { throw ValidationError("--webhook-url needs --events on") }
        }
        let known = Set(LifecycleEventType.allCases.map(\.rawValue))
        for type in webhookEvents.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !known.contains(type) {
            throw ValidationError("--webhook-events: '\(type)' is not an event type (\(known.sorted().joined(separator: ", ")))")
        }
        guard (1...64).contains(totpIssuer.count), !totpIssuer.contains(":") else {
            throw ValidationError("--totp-issuer must be 1 to 64 characters without ':'")
        }
        if let totpEncryptionKey, Data(base64Encoded: totpEncryptionKey)?.count != 32 {
            throw ValidationError("--totp-encryption-key must be 32 bytes in base64 (openssl rand -base64 32)")
        }
        try Self.check(hashThreads, in: 1...256, "hash-threads")
        try Self.check(redisConnections, in: 1...64, "redis-connections")
        try Self.check(redisTimeoutMs, in: 10...60_000, "redis-timeout-ms")
        try Self.check(redisWaitTimeoutMs, in: 1...60_000, "redis-wait-timeout-ms")
        try Self.check(jwtTtl, in: 1...900, "jwt-ttl")
        try Self.check(nearCacheMaxEntries, in: 1...100_000_000, "near-cache-max-entries")
        try Self.check(nearCacheMaxAgeMs, in: 1...3_600_000, "near-cache-max-age-ms")
        try Self.check(nearCacheLeaseMs, in: 20...60_000, "near-cache-lease-ms")
        if let sessionTouchInterval, !(0.001...86400).contains(sessionTouchInterval) {
            throw ValidationError("--session-touch-interval must be from 0.001 to 86400 seconds")
        }
        // A renewal sets idle + interval: an interval past the idle timeout would keep an idle session alive well past it.
        if let sessionTouchInterval, sessionTouchInterval > Double(sessionIdleTimeout) {
            throw ValidationError("--session-touch-interval must not exceed --session-idle-timeout (\(sessionIdleTimeout) s)")
        }
        if jwtKeysFile == nil, let jwtHs256Secret, jwtHs256Secret.utf8.count < 32 {
            throw ValidationError("--jwt-hs256-secret must be at least 32 bytes")
        }
        if jwtKeysFile == nil, let jwtHs256Secret, jwtHs256Secret.allSatisfy(\.isWhitespace) {
            throw ValidationError("--jwt-hs256-secret must not be whitespace")
        }
        try Self.checkClients(introspectionClients, "introspection-clients")
        try Self.checkClients(adminClients, "admin-clients")
        if let adminPort {
            try Self.check(adminPort, in: 0...65535, "admin-port")
            guard !adminClients.isEmpty else { throw ValidationError("--admin-port needs --admin-clients (name:secret,…)") }
            if adminPort != 0, adminPort == port, adminHost == host { throw ValidationError("--admin-port must differ from --port") }
        }
        if let redisMinReplicas { try Self.check(redisMinReplicas, in: 0...100, "redis-min-replicas") }
        guard keyPrefix.utf8.count <= 64 else { throw ValidationError("--key-prefix must be at most 64 bytes") }
        if let cookieName {
            // RFC 6265 token characters only: no separators, spaces or controls.
            let separators = Set("()<>@,;:\\\"/[]?={} \t".utf8)
            guard !cookieName.isEmpty, cookieName.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && !separators.contains($0) }) else {
                throw ValidationError("--cookie-name must be a cookie name (letters, digits and !#$%&'*+-.^_`|~)")
            }
            if cookieName.hasPrefix("__Host-"), cookieSecure == .off {
                throw ValidationError("--cookie-name __Host-… needs --cookie-secure on: browsers refuse it without Secure")
            }
        }
        for origin in allowedOrigins.split(separator: ",")
        where SessionCookie.hostAndPort(ofOrigin: origin.trimmingCharacters(in: .whitespaces)) == nil {
            throw ValidationError("--allowed-origins: '\(origin)' is not an origin (scheme://host[:port])")
        }
        do {
            _ = try RedisConfiguration(url: redisURL)
        } catch let error as RedisError {
            throw ValidationError("--redis-url: \(error.message)")
        }
        do {
            _ = try TrustedProxies(parsing: trustedProxies)
        } catch {
            throw ValidationError("--trusted-proxies: \(error.description)")
        }
    }

    /// `id:secret` pairs, comma-separated, every secret at least `IntrospectionClients.minimumSecretLength` long.
    static func checkClients(_ text: String, _ flag: String) throws {
        for client in text.split(separator: ",") {
            let parts = client.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw ValidationError("--\(flag) must be id:secret pairs, comma-separated")
            }
        }
        if let weak = IntrospectionClients.weakClients(parsing: text).first {
            throw ValidationError("--\(flag): the secret of client '\(weak)' is shorter than \(IntrospectionClients.minimumSecretLength) characters")
        }
    }

    private static func check(_ value: Int, in range: ClosedRange<Int>, _ flag: String) throws {
        guard range.contains(value) else {
            throw ValidationError("--\(flag) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
    }

    /// `open` or `closed`.
    public enum Registration: String, ExpressibleByArgument, Sendable {
        case open, closed
    }

    /// `argon2id` or `bcrypt`.
    public enum PasswordHashName: String, ExpressibleByArgument, Sendable {
        case argon2id, bcrypt
    }

    /// `text` or `json`.
    public enum LogFormat: String, ExpressibleByArgument, Sendable {
        case text, json
    }

    /// `on` or `off` (also `true`/`false`, `1`/`0`).
    public enum Switch: String, ExpressibleByArgument, Sendable {
        case on, off

        public init?(argument: String) {
            switch argument.lowercased() {
            case "on", "true", "1": self = .on
            case "off", "false", "0": self = .off
            default: return nil
            }
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {
    public init?(argument: String) {
        self.init(rawValue: argument.lowercased())
    }
}

extension ServiceOptions {
    /// The environment variable each flag reads: the flag's name in capitals, dashes as underscores.
    package static func environmentName(ofFlag flag: String) -> String {
        String(flag.uppercased().map { $0 == "-" ? "_" : $0 })
    }

    /// The long flag of every option, as ArgumentParser derives it from the property name (`redisURL` → `redis-url`).
    package static var flags: [String] {
        Mirror(reflecting: ServiceOptions()).children.compactMap { child in
            guard let label = child.label, label.hasPrefix("_") else { return nil }
            return kebabCase(String(label.dropFirst()))
        }
    }

    /// `sessionIdleTimeout` → `session-idle-timeout`, `redisURL` → `redis-url`, `jwtHs256Secret` → `jwt-hs256-secret`:
    /// ArgumentParser's own rule (a capital starts a word unless it continues an acronym), so the two never disagree.
    static func kebabCase(_ name: String) -> String {
        var result = ""
        let characters = Array(name)
        var separateOnUppercase = true
        for (index, character) in characters.enumerated() {
            if character.isUppercase {
                if separateOnUppercase, !result.isEmpty { result.append("-") }
                separateOnUppercase = index + 2 < characters.count && characters[index + 1].isUppercase && characters[index + 2].isLowercase
            } else {
                separateOnUppercase = character != "-"
            }
            result.append(contentsOf: character.lowercased())
        }
        return result
    }

    /// The environment's settings as flags, placed before the command line's so that a flag wins (the last value of
    /// an option is the one ArgumentParser keeps).
    package static func arguments(fromEnvironment environment: [String: String]) -> [String] {
        flags.flatMap { flag -> [String] in
            guard let value = environment[environmentName(ofFlag: flag)] else { return [] }
            // One argument: a value that begins with `-` (a base64url secret, 1 time in 64) is not read as an option.
            return ["--\(flag)=\(value)"]
        }
    }

    /// Reads the environment, then the flags over it.
    /// - Throws: `ConfigurationError` naming the setting (and saying so when it came from the environment) and what
    ///   is wrong, never echoing a password.
    public static func parse(environment: [String: String], arguments: [String]) throws(ConfigurationError) -> ServiceOptions {
        let fromEnvironment = Self.arguments(fromEnvironment: environment)
        // The values that may carry a password or a secret: ArgumentParser echoes a rejected value, so they are cut out.
        let all = fromEnvironment + arguments
        let urls = Self.values(of: "--redis-url", in: all)
        let secrets = Self.secretFlags.flatMap { Self.values(of: $0, in: all) }
        do {
            _ = try Self.parse(fromEnvironment)
        } catch {
            throw ConfigurationError("in the environment: \(Self.redacted(Self.message(for: error), urls, secrets))")
        }
        do {
            return try Self.parse(fromEnvironment + arguments)
        } catch {
            throw ConfigurationError(Self.redacted(Self.message(for: error), urls, secrets))
        }
    }

    /// Flags whose values are secrets through and through.
    static let secretFlags = [
        "--jwt-hs256-secret", "--introspection-clients", "--redis-sentinel-password", "--totp-encryption-key", "--admin-clients",
        "--webhook-secret",
    ]

    /// Every value given to a flag, as `--flag value` or `--flag=value`.
    private static func values(of flag: String, in arguments: [String]) -> [String] {
        zip(arguments, arguments.dropFirst()).compactMap { name, value in name == flag ? value : nil }
            + arguments.compactMap { $0.hasPrefix(flag + "=") ? String($0.dropFirst(flag.count + 1)) : nil }
    }

    /// The message with every given Redis URL and secret cut out (a URL may carry a password); the reason stays.
    private static func redacted(_ message: String, _ urls: [String], _ secrets: [String]) -> String {
        let withoutURLs = urls.filter { !$0.isEmpty }.reduce(message) { $0.replacingOccurrences(of: $1, with: "(the Redis URL)") }
        return secrets.filter { !$0.isEmpty }.reduce(withoutURLs) { $0.replacingOccurrences(of: $1, with: "(redacted)") }
    }
}
