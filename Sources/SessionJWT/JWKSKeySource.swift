public import AccessTokens
public import AsyncHTTPClient
import Foundation
public import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Where a downstream service gets the keys that verify access tokens: the session service's JWKS document
/// (`GET /.well-known/jwks.json`), fetched and cached, or a fixed key set (an HS256 shared secret, keys from a file).
///
/// Caching: a fetched set is used for its `Cache-Control: max-age` (kept between one minute and one hour). A token
/// naming a `kid` the set lacks triggers a refetch — at most once per `minimumRefreshInterval` (one minute), so a flood
/// of forged `kid`s cannot turn into a flood of fetches. When a refetch fails, the last good set stays in use (logged);
/// only a verifier that never had keys refuses every token (503 from the middleware), retrying at most once a second.
public actor JWKSKeySource {
    private enum Origin {
        case url(String, HTTPClient)
        case fixed
    }

    private let origin: Origin
    private let minimumRefreshInterval: Duration
    private let logger: Logger
    /// The last keys and until when they are fresh: the one copy, readable without entering the actor — every request
    /// needs the keys, and an actor would take requests one at a time just to hand them out. Written only by the actor.
    private nonisolated let cached = Mutex<(keys: AccessTokenKeySet, freshUntil: ContinuousClock.Instant)?>(nil)
    private var keys: AccessTokenKeySet? { cached.withLock { $0?.keys } }
    private var lastFetch: ContinuousClock.Instant?
    private var inFlight: Task<(AccessTokenKeySet, Duration), any Error>?
    /// The clock freshness and the refresh interval are read on (tests move it instead of sleeping).
    private nonisolated let now: @Sendable () -> ContinuousClock.Instant

    /// Keys from a JWKS URL.
    /// - Parameters:
    ///   - url: the session service's `/.well-known/jwks.json` (any JWKS with Ed25519 or P-256 keys).
    ///   - httpClient: defaults to AsyncHTTPClient's shared client.
    ///   - minimumRefreshInterval: the least time between two fetches caused by unknown `kid`s.
    public init(url: String, httpClient: HTTPClient = .shared, minimumRefreshInterval: Duration = .seconds(60), logger: Logger? = nil) {
        self.init(url: url, httpClient: httpClient, minimumRefreshInterval: minimumRefreshInterval, logger: logger, now: { .now })
    }

    /// The same, on a clock of the caller's (tests).
    package init(
        url: String, httpClient: HTTPClient = .shared, minimumRefreshInterval: Duration = .seconds(60), logger: Logger? = nil,
        now: @escaping @Sendable () -> ContinuousClock.Instant
    ) {
        self.now = now
        self.origin = .url(url, httpClient)
        self.minimumRefreshInterval = minimumRefreshInterval
        self.logger = logger ?? Logger(label: "session-jwt")
    }

    /// A fixed key set: `AccessTokenKeySet.sharedSecret(_:)` for HS256, or `publicKeys(jwks:)` from a file.
    public init(keys: AccessTokenKeySet) {
        self.now = { .now }
        self.origin = .fixed
        self.minimumRefreshInterval = .seconds(60)
        self.logger = Logger(label: "session-jwt")
        cached.withLock { $0 = (keys, .now + .seconds(86400 * 365 * 100)) }
    }

    /// The keys while they are fresh, without entering the actor; nil when `current()` must fetch.
    public nonisolated var freshKeys: AccessTokenKeySet? {
        cached.withLock { snapshot in snapshot.flatMap { now() < $0.freshUntil ? $0.keys : nil } }
    }

    /// The current keys: cached while fresh, else fetched (the stale set if the fetch fails).
    /// - Throws: when there never were keys and the fetch failed.
    public func current() async throws -> AccessTokenKeySet {
        if let fresh = freshKeys { return fresh }
        if let keys, let lastFetch, now() - lastFetch < minimumRefreshInterval { return keys }
        // Never had keys and the last try failed: refuse at once for a second rather than queue every request on a fetch.
        if keys == nil, inFlight == nil, let lastFetch, now() - lastFetch < .seconds(1) {
            throw JWKSFetchError("the JWKS could not be fetched")
        }
        do {
            return try await fetch()
        } catch {
            guard let keys else { throw error }
            logger.warning("cannot refresh the JWKS; keeping the last keys", metadata: ["error": "\(error)"])
            return keys
        }
    }

    /// A newer set after a token named a `kid` the current one lacks; nil when a fetch happened less than
    /// `minimumRefreshInterval` ago, or the keys are fixed, or the fetch failed.
    public func refresh(afterUnknownKey kid: String) async -> AccessTokenKeySet? {
        guard case .url = origin else { return nil }
        if let lastFetch, now() - lastFetch < minimumRefreshInterval { return nil }
        logger.debug("unknown kid; refetching the JWKS", metadata: ["jwt.kid": "\(kid.prefix(64))"])
        return try? await fetch()
    }

    /// One fetch at a time: concurrent callers share it.
    private func fetch() async throws -> AccessTokenKeySet {
        let task: Task<(AccessTokenKeySet, Duration), any Error>
        if let inFlight {
            task = inFlight
        } else {
            guard case .url(let url, let client) = origin else { throw JWKSFetchError("fixed keys are not fetched") }
            lastFetch = now()
            task = Task { try await Self.download(url, client) }
            inFlight = task
        }
        // Only the fetch this caller waited on is cleared: a waiter resuming late must not clear a newer one.
        defer { if inFlight == task { inFlight = nil } }
        let (set, maxAge) = try await task.value
        let fetchedAt = now()
        cached.withLock { $0 = (set, fetchedAt + min(max(maxAge, .seconds(60)), .seconds(3600))) }
        return set
    }

    private static func download(_ url: String, _ client: HTTPClient) async throws -> (AccessTokenKeySet, Duration) {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/json")
        let response = try await client.execute(request, timeout: .seconds(3))
        guard response.status == .ok else { throw JWKSFetchError("the JWKS answered \(response.status.code)") }
        let body = try await response.body.collect(upTo: 1 << 20)
        let set = try AccessTokenKeySet.publicKeys(jwks: Array(body.readableBytesView))
        return (set, maxAge(response.headers["Cache-Control"].joined(separator: ",")))
    }

    /// `max-age` of a `Cache-Control` value; 5 minutes when absent.
    static func maxAge(_ cacheControl: String) -> Duration {
        for directive in cacheControl.split(separator: ",") {
            let parts = directive.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2, parts[0].lowercased() == "max-age", let seconds = Int(parts[1]), seconds >= 0 { return .seconds(seconds) }
        }
        return .seconds(300)
    }
}

/// The JWKS could not be fetched or read.
public struct JWKSFetchError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
