public import Foundation
import JWTKit

/// Checks an access token completely: its header, its signature with the one key and algorithm its `kid` names, and
/// every claim jwt-kit leaves alone (`typ`, `iss`, `aud`, `exp`, `nbf`, `iat`).
///
/// Order matters: the header is judged before any key is used (`alg: none`, a `kid` the set lacks, an `alg` that is
/// not its key's — so an HS256 token "signed" with a public key never reaches a verifier), then the signature, then
/// the claims, so only a genuine token can learn which claim failed.
public struct AccessTokenVerifier: Sendable {
    /// The keys tokens may be signed with.
    public var keys: AccessTokenKeySet
    /// The `iss` a token must carry.
    public var issuer: String
    /// A value `aud` must contain.
    public var audience: String
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    public var leeway: Int64

    /// Tokens longer than this are refused unread (a signed session token is about 450 bytes).
    public static let maxLength = 8192

    public init(keys: AccessTokenKeySet, issuer: String, audience: String, leeway: Int64 = 10) {
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
    }

    /// The claims of a valid token.
    /// - Parameters:
    ///   - token: the compact JWS.
    ///   - now: the time to judge `exp`, `nbf` and `iat` against.
    ///   - allowExpired: accept a token past `exp` (revocation: ending the session behind an expired token is fine).
    /// - Throws: `AccessTokenError` saying which check failed (`unknownKey` lets a caller refresh its keys and retry).
    public func verify(_ token: String, now: Date = Date(), allowExpired: Bool = false) async throws(AccessTokenError) -> AccessTokenClaims {
        let jws = try CompactJWS(token)
        let header = try jws.decodedHeader()
        guard let alg = header.alg, alg.lowercased() != "none" else { throw AccessTokenError(.unsupportedAlgorithm, "alg is none or missing") }
        guard let type = header.typ, Self.isAccessTokenType(type) else { throw AccessTokenError(.wrongType, "typ is not at+jwt") }
        guard header.crit == nil else { throw AccessTokenError(.malformed, "crit names extensions this verifier does not understand") }
        // A shared secret is one key: a token without `kid` (the classic PyJWT example) can only mean it.
        let named = header.kid ?? (keys.keyIDs == [AccessTokenKeySet.sharedSecretKeyID] ? AccessTokenKeySet.sharedSecretKeyID : nil)
        guard let kid = named, let algorithm = keys.algorithm(ofKey: kid) else {
            throw AccessTokenError(.unknownKey, "kid \(header.kid.map { "'\($0.prefix(64))'" } ?? "missing") is not in the key set")
        }
        guard alg == algorithm.rawValue else {
            throw AccessTokenError(.unsupportedAlgorithm, "key \(kid) verifies \(algorithm.rawValue) only, not \(alg.prefix(16))")
        }
        guard let signer = await keys.storage.algorithm(kid) else {
            throw AccessTokenError(.unknownKey, "kid \(kid) has no usable key")
        }
        guard let signature = Base64URL.decode(jws.signature), let payload = Base64URL.decode(jws.payload) else {
            throw AccessTokenError(.malformed, "not a compact JWS (three base64url parts)")
        }
        guard (try? signer.verify(signature, signs: Array(jws.signingInput.utf8))) == true else {
            throw AccessTokenError(.badSignature, "the signature does not match")
        }
        let claims: AccessTokenClaims
        do {
            claims = try JSONDecoder().decode(AccessTokenClaims.self, from: Data(payload))
        } catch {
            throw AccessTokenError(.malformed, "the claims are missing or of the wrong type")
        }
        let seconds = Int64(now.timeIntervalSince1970.rounded(.down))
        guard claims.issuer == issuer else { throw AccessTokenError(.wrongIssuer, "iss is not this issuer") }
        guard claims.audience.contains(audience) else { throw AccessTokenError(.wrongAudience, "aud does not name this audience") }
        guard allowExpired || seconds < claims.expiresAt + leeway else { throw AccessTokenError(.expired, "exp has passed") }
        guard (claims.notBefore ?? claims.issuedAt) <= seconds + leeway, claims.issuedAt <= seconds + leeway else {
            throw AccessTokenError(.notYetValid, "nbf or iat is in the future")
        }
        return claims
    }

    /// RFC 9068 §2.1: `at+jwt`, or its full media type `application/at+jwt`, case-insensitively.
    static func isAccessTokenType(_ type: String) -> Bool {
        let lowered = type.lowercased()
        return lowered == "at+jwt" || lowered == "application/at+jwt"
    }

    /// The members of a JOSE header the verifier reads.
    public struct Header: Decodable, Sendable {
        public let alg: String?
        public let typ: String?
        public let kid: String?
        public let crit: [String]?
    }

    /// The JOSE header, read before anything else (and without verifying anything): three base64url parts, the first
    /// a JSON object.
    public static func header(of token: String) throws(AccessTokenError) -> Header {
        try CompactJWS(token).decodedHeader()
    }
}

/// A compact JWS cut into its parts once: the header, the payload and the signature, and the signing input.
struct CompactJWS {
    let header: Substring
    let payload: Substring
    let signature: Substring
    /// `header.payload`: what the signature signs.
    let signingInput: Substring

    init(_ token: String) throws(AccessTokenError) {
        guard token.utf8.count <= AccessTokenVerifier.maxLength else {
            throw AccessTokenError(.malformed, "longer than \(AccessTokenVerifier.maxLength) bytes")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw AccessTokenError(.malformed, "not a compact JWS (three base64url parts)")
        }
        (header, payload, signature) = (parts[0], parts[1], parts[2])
        signingInput = token[parts[0].startIndex..<parts[1].endIndex]
    }

    /// The header's members; the header must be base64url of a JSON object of strings.
    func decodedHeader() throws(AccessTokenError) -> AccessTokenVerifier.Header {
        guard let bytes = Base64URL.decode(header) else { throw AccessTokenError(.malformed, "not a compact JWS (three base64url parts)") }
        do {
            return try JSONDecoder().decode(AccessTokenVerifier.Header.self, from: Data(bytes))
        } catch {
            throw AccessTokenError(.malformed, "the header is not a JSON object of strings")
        }
    }
}
