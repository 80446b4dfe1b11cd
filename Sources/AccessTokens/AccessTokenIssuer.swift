public import Foundation
import JWTKit
public import SessionCore

/// Mints access tokens from live sessions: the signing half of `JWT_KEYS_FILE` (or `JWT_HS256_SECRET`).
///
/// A token lives `lifetime` seconds, but never past its session's absolute expiry: a JWT cannot outlive the session
/// it came from even when nobody checks for revocation.
public struct AccessTokenIssuer: Sendable {
    /// The signing key is the set's first.
    public let keys: AccessTokenKeySet
    /// `iss` (`JWT_ISSUER`).
    public let issuer: String
    /// `aud` (`JWT_AUDIENCE`).
    public let audience: String
    /// Seconds a token lives at most (`JWT_TTL`).
    public let lifetime: Int64

    /// The verifier of what this issuer mints (the same keys, issuer and audience): introspection and revocation.
    public var verifier: AccessTokenVerifier { AccessTokenVerifier(keys: keys, issuer: issuer, audience: audience) }

    /// - Precondition: `keys` can sign (`privateKeys(jwks:)` or `sharedSecret(_:)`).
    public init(keys: AccessTokenKeySet, issuer: String, audience: String, lifetime: Int64) {
        precondition(keys.signingKeyID != nil, "an issuer needs a key set that can sign")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
    }

    /// The JOSE header of every token.
    private struct Header: Encodable {
        let alg: String
        let kid: String
        let typ: String
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// A signed token for a live session, and its claims.
    /// - Throws: `AccessTokenError` only if signing fails (it does not with keys the set accepted).
    public func issue(for session: Session, username: String?, now: Date = Date()) async throws(AccessTokenError) -> (
        token: String, claims: AccessTokenClaims
    ) {
        let issuedAt = Int64(now.timeIntervalSince1970.rounded(.down))
        let absolute = Int64(session.absoluteExpiresAt.timeIntervalSince1970.rounded(.down))
        var generator = SystemRandomNumberGenerator()
        let claims = AccessTokenClaims(
            issuer: issuer, subject: session.userID, audience: [audience], issuedAt: issuedAt, notBefore: issuedAt,
            expiresAt: max(issuedAt, min(issuedAt + lifetime, absolute)),
            tokenID: Base64URL.encode((0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }),
            sessionID: session.id, username: username, authTime: Int64(session.authenticatedAt.timeIntervalSince1970.rounded(.down)),
            amr: session.level.amr, acr: session.level.acr
        )
        // The compact JWS, made here with jwt-kit's algorithm (see `AccessTokenKeySet.Storage` for why not its actor).
        guard let kid = keys.signingKeyID, let algorithm = keys.algorithm(ofKey: kid), let signer = await keys.storage.algorithm(kid) else {
            throw AccessTokenError(.invalidKeys, "no signing key")
        }
        do {
            let header = try Self.encoder.encode(Header(alg: algorithm.rawValue, kid: kid, typ: "at+jwt"))
            let input = Base64URL.encode(header) + "." + Base64URL.encode(try Self.encoder.encode(claims))
            return (input + "." + Base64URL.encode(try signer.sign(Array(input.utf8))), claims)
        } catch {
            throw AccessTokenError(.invalidKeys, "signing failed")
        }
    }
}
