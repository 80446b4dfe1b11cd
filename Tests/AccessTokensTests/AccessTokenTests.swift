import Crypto
import Foundation
import SessionCore
import Testing

@testable import AccessTokens

/// Keys, signing and every refusal of the verifier, without I/O: a forged token is built byte by byte here, so each
/// check is shown to refuse exactly what it must.
@Suite struct AccessTokenTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let seconds: Int64 = 1_800_000_000

    /// A session that ends (absolutely) in a day.
    static func session(absoluteIn: TimeInterval = 86400) -> Session {
        Session(
            id: SessionToken.random().sessionID, userID: .random(), createdAt: now, expiresAt: now + 1800,
            absoluteExpiresAt: now + absoluteIn, lastSeenAt: now
        )
    }

    static func issuer(_ keys: AccessTokenKeySet, lifetime: Int64 = 300) -> AccessTokenIssuer {
        AccessTokenIssuer(keys: keys, issuer: "session-service", audience: "api", lifetime: lifetime)
    }

    static func privateSet(_ algorithm: AccessTokenAlgorithm) throws -> (AccessTokenKeySet, [String: String]) {
        let text = AccessTokenKeySet.generate(algorithm)
        let jwk = try #require(
            ((try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["keys"] as? [[String: String]])?.first)
        return (try AccessTokenKeySet.privateKeys(jwks: Array(text.utf8)), jwk)
    }

    /// Standard claims, as a forger would write them.
    static func claims(_ session: Session, _ tweak: (inout [String: Any]) -> Void = { _ in }) -> [String: Any] {
        var claims: [String: Any] = [
            "iss": "session-service", "sub": session.userID.text, "aud": "api", "iat": seconds, "nbf": seconds, "exp": seconds + 300,
            "jti": "j", "sid": session.id.hex, "name": "alice",
        ]
        tweak(&claims)
        return claims
    }

    static func segment(_ object: [String: Any]) -> String {
        Base64URL.encode(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    /// A compact JWS signed by `sign` over exactly the header and claims given.
    static func forge(header: [String: Any], claims: [String: Any], sign: (Data) throws -> [UInt8]) rethrows -> String {
        let input = segment(header) + "." + segment(claims)
        return input + "." + Base64URL.encode(try sign(Data(input.utf8)))
    }

    static func ed25519(_ jwk: [String: String]) throws -> Curve25519.Signing.PrivateKey {
        try Curve25519.Signing.PrivateKey(rawRepresentation: try #require(Base64URL.decode(jwk["d"]!)))
    }

    static func verifier(_ keys: AccessTokenKeySet) -> AccessTokenVerifier {
        AccessTokenVerifier(keys: keys, issuer: "session-service", audience: "api", leeway: 10)
    }

    static func refusal(_ verifier: AccessTokenVerifier, _ token: String, at time: Date = now) async -> AccessTokenError.Code? {
        do {
            _ = try await verifier.verify(token, now: time)
            return nil
        } catch {
            return error.code
        }
    }

    @Test(arguments: [AccessTokenAlgorithm.eddsa, .es256])
    func aSignedTokenVerifiesThroughThePublishedKeys(algorithm: AccessTokenAlgorithm) async throws {
        let (keys, jwk) = try Self.privateSet(algorithm)
        let session = Self.session()
        let (token, claims) = try await Self.issuer(keys).issue(for: session, username: "alice", now: Self.now)
        let header = try AccessTokenVerifier.header(of: token)
        #expect(header.alg == algorithm.rawValue && header.typ == "at+jwt" && header.kid == jwk["kid"])
        // A verifier that has only what /.well-known/jwks.json publishes: no private part.
        #expect(!keys.publicJWKS.contains("\"d\""))
        let published = try AccessTokenKeySet.publicKeys(jwks: Array(keys.publicJWKS.utf8))
        #expect(published.signingKeyID == nil)
        let verified = try await Self.verifier(published).verify(token, now: Self.now)
        #expect(verified == claims)
        #expect(verified.subject == session.userID && verified.sessionID == session.id && verified.username == "alice")
        #expect(verified.issuer == "session-service" && verified.audience == ["api"])
        #expect(verified.expiresAt == Self.seconds + 300 && verified.issuedAt == Self.seconds && verified.notBefore == Self.seconds)
    }

    @Test func aTokenNeverOutlivesItsSessionsAbsoluteExpiry() async throws {
        let (keys, _) = try Self.privateSet(.eddsa)
        let (_, claims) = try await Self.issuer(keys, lifetime: 900).issue(for: Self.session(absoluteIn: 42.9), username: nil, now: Self.now)
        #expect(claims.expiresAt == Self.seconds + 42)
        let (_, ended) = try await Self.issuer(keys).issue(for: Self.session(absoluteIn: -5), username: nil, now: Self.now)
        #expect(ended.expiresAt == ended.issuedAt)
    }

    @Test func everyClaimViolationIsRefused() async throws {
        let (keys, jwk) = try Self.privateSet(.eddsa)
        let key = try Self.ed25519(jwk)
        let verifier = Self.verifier(keys)
        let session = Self.session()
        let header: [String: Any] = ["alg": "EdDSA", "typ": "at+jwt", "kid": jwk["kid"]!]
        func forged(header: [String: Any] = header, _ tweak: (inout [String: Any]) -> Void = { _ in }) throws -> String {
            try Self.forge(header: header, claims: Self.claims(session, tweak)) { Array(try key.signature(for: $0)) }
        }
        // The forger's token is right as it stands: each case below changes one thing.
        #expect(await Self.refusal(verifier, try forged()) == nil)
        #expect(await Self.refusal(verifier, try forged(), at: Self.now + 309) == nil, "within the leeway")
        #expect(await Self.refusal(verifier, try forged(), at: Self.now + 310) == .expired)
        #expect(await Self.refusal(verifier, try forged { $0["nbf"] = Self.seconds + 60 }) == .notYetValid)
        #expect(await Self.refusal(verifier, try forged { $0["iat"] = Self.seconds + 60 }) == .notYetValid)
        #expect(await Self.refusal(verifier, try forged { $0["iss"] = "someone-else" }) == .wrongIssuer)
        #expect(await Self.refusal(verifier, try forged { $0["aud"] = "other-api" }) == .wrongAudience)
        #expect(await Self.refusal(verifier, try forged { $0["aud"] = ["other-api", "api"] }) == nil, "aud may be an array")
        #expect(await Self.refusal(verifier, try forged { $0["sub"] = "root" }) == .malformed)
        #expect(await Self.refusal(verifier, try forged { $0["exp"] = nil }) == .malformed)
        #expect(await Self.refusal(verifier, try forged(header: header.merging(["typ": "JWT"]) { $1 })) == .wrongType)
        #expect(await Self.refusal(verifier, try forged(header: header.merging(["typ": "application/at+jwt"]) { $1 })) == nil)
        #expect(await Self.refusal(verifier, try forged(header: header.merging(["kid": "nope"]) { $1 })) == .unknownKey)
        #expect(await Self.refusal(verifier, try forged(header: header.filter { $0.key != "kid" })) == .unknownKey)
        #expect(await Self.refusal(verifier, try forged(header: header.merging(["crit": ["exp"]]) { $1 })) == .malformed)

        // Tampering: a payload changed after signing, a flipped signature bit.
        let good = try forged()
        let parts = good.split(separator: ".").map(String.init)
        let otherUser = Self.segment(Self.claims(session) { $0["sub"] = UserID.random().text })
        #expect(await Self.refusal(verifier, [parts[0], otherUser, parts[2]].joined(separator: ".")) == .badSignature)
        var signature = Base64URL.decode(parts[2])!
        signature[7] ^= 0x01
        #expect(await Self.refusal(verifier, [parts[0], parts[1], Base64URL.encode(signature)].joined(separator: ".")) == .badSignature)
        for malformed in ["", "a.b", "a.b.c.d", "!!.e30.x", parts[0] + "..", String(repeating: "a", count: 9000)] {
            #expect(await Self.refusal(verifier, malformed) == .malformed, "\(malformed.prefix(20))")
        }
    }

    @Test func noAlgorithmConfusion() async throws {
        let (edKeys, edJWK) = try Self.privateSet(.eddsa)
        let (esKeys, esJWK) = try Self.privateSet(.es256)
        let session = Self.session()
        let claims = Self.claims(session)
        // alg none, unsigned, with a known kid.
        let none = Self.segment(["alg": "none", "typ": "at+jwt", "kid": edJWK["kid"]!]) + "." + Self.segment(claims) + "."
        #expect(await Self.refusal(Self.verifier(edKeys), none) == .unsupportedAlgorithm)
        let noneUpper = Self.segment(["alg": "NONE", "typ": "at+jwt", "kid": edJWK["kid"]!]) + "." + Self.segment(claims) + ".e30"
        #expect(await Self.refusal(Self.verifier(edKeys), noneUpper) == .unsupportedAlgorithm)
        // HS256 "signed" with the public key (the raw x, and the JWKS text): the classic confusion.
        for secret in [Base64URL.decode(edJWK["x"]!)!, Array(edKeys.publicJWKS.utf8)] {
            let forged = Self.forge(header: ["alg": "HS256", "typ": "at+jwt", "kid": edJWK["kid"]!], claims: claims) {
                Array(HMAC<SHA256>.authenticationCode(for: $0, using: SymmetricKey(data: secret)))
            }
            #expect(await Self.refusal(Self.verifier(edKeys), forged) == .unsupportedAlgorithm)
        }
        // An ES256 key named in an EdDSA token, and an Ed25519 key in an ES256 one.
        let both = try AccessTokenKeySet.privateKeys(
            jwks: Array(#"{"keys":[\#(Self.json(edJWK)),\#(Self.json(esJWK))]}"#.utf8))
        let edSigned = Self.forge(header: ["alg": "EdDSA", "typ": "at+jwt", "kid": esJWK["kid"]!], claims: claims) {
            Array(try! Self.ed25519(edJWK).signature(for: $0))
        }
        #expect(await Self.refusal(Self.verifier(both), edSigned) == .unsupportedAlgorithm)
        let (esToken, _) = try await Self.issuer(esKeys).issue(for: session, username: nil, now: Self.now)
        let relabelled =
            Self.segment(["alg": "ES256", "typ": "at+jwt", "kid": edJWK["kid"]!]) + "." + esToken.split(separator: ".")[1] + "."
            + esToken.split(separator: ".")[2]
        #expect(await Self.refusal(Self.verifier(both), relabelled) == .unsupportedAlgorithm)
        // A shared-secret verifier accepts HS256 only, and an asymmetric one never HS256.
        let secret = try AccessTokenKeySet.sharedSecret(Array(repeating: UInt8(ascii: "k"), count: 32))
        let (hsToken, _) = try await Self.issuer(secret).issue(for: session, username: nil, now: Self.now)
        #expect(try AccessTokenVerifier.header(of: hsToken).alg == "HS256")
        #expect(await Self.refusal(Self.verifier(secret), hsToken) == nil)
        #expect(await Self.refusal(Self.verifier(edKeys), hsToken) == .unknownKey)
        let (edToken, _) = try await Self.issuer(edKeys).issue(for: session, username: nil, now: Self.now)
        #expect(await Self.refusal(Self.verifier(secret), edToken) == .unknownKey)
        #expect(secret.publicJWKS == #"{"keys":[]}"#, "a shared secret is never published")
        // The classic shared-secret token has no kid: it can only mean the one secret. An asymmetric set needs the kid.
        let secretBytes = Array(repeating: UInt8(ascii: "k"), count: 32)
        let classic = Self.forge(header: ["alg": "HS256", "typ": "at+jwt"], claims: claims) {
            Array(HMAC<SHA256>.authenticationCode(for: $0, using: SymmetricKey(data: secretBytes)))
        }
        #expect(await Self.refusal(Self.verifier(secret), classic) == nil)
        let kidless = Self.forge(header: ["alg": "EdDSA", "typ": "at+jwt"], claims: claims) { Array(try! Self.ed25519(edJWK).signature(for: $0)) }
        #expect(await Self.refusal(Self.verifier(edKeys), kidless) == .unknownKey)
    }

    static func json(_ jwk: [String: String]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: jwk, options: [.sortedKeys]), as: UTF8.self)
    }

    @Test func rotationWithOverlap() async throws {
        let (_, old) = try Self.privateSet(.eddsa)
        let (_, new) = try Self.privateSet(.es256)
        let session = Self.session()
        let before = try AccessTokenKeySet.privateKeys(jwks: Array(#"{"keys":[\#(Self.json(old))]}"#.utf8))
        let added = try AccessTokenKeySet.privateKeys(jwks: Array(#"{"keys":[\#(Self.json(old)),\#(Self.json(new))]}"#.utf8))
        let promoted = try AccessTokenKeySet.privateKeys(jwks: Array(#"{"keys":[\#(Self.json(new)),\#(Self.json(old))]}"#.utf8))
        let after = try AccessTokenKeySet.privateKeys(jwks: Array(#"{"keys":[\#(Self.json(new))]}"#.utf8))
        #expect(added.signingKeyID == old["kid"] && promoted.signingKeyID == new["kid"])
        let (oldToken, _) = try await Self.issuer(before).issue(for: session, username: nil, now: Self.now)
        let (newToken, _) = try await Self.issuer(promoted).issue(for: session, username: nil, now: Self.now)
        for set in [added, promoted] {
            let published = try AccessTokenKeySet.publicKeys(jwks: Array(set.publicJWKS.utf8))
            #expect(await Self.refusal(Self.verifier(published), oldToken) == nil)
            #expect(await Self.refusal(Self.verifier(published), newToken) == nil)
        }
        #expect(await Self.refusal(Self.verifier(before), newToken) == .unknownKey)
        #expect(await Self.refusal(Self.verifier(after), oldToken) == .unknownKey)
    }

    @Test func unusableKeySetsAreRefusedWithoutShowingKeyMaterial() throws {
        let (_, jwk) = try Self.privateSet(.eddsa)
        var publicOnly = jwk
        publicOnly["d"] = nil
        var mismatched = jwk
        mismatched["x"] = try Self.privateSet(.eddsa).1["x"]
        var wrongAlg = jwk
        wrongAlg["alg"] = "HS256"
        var noKid = jwk
        noKid["kid"] = nil
        let cases = [
            "", "{}", #"{"keys":[]}"#, #"{"keys":[\#(Self.json(publicOnly))]}"#, #"{"keys":[\#(Self.json(mismatched))]}"#,
            #"{"keys":[\#(Self.json(wrongAlg))]}"#, #"{"keys":[\#(Self.json(noKid))]}"#, #"{"keys":[\#(Self.json(jwk)),\#(Self.json(jwk))]}"#,
            #"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB","d":"AQAB"}]}"#,
        ]
        for text in cases {
            #expect(throws: AccessTokenError.invalidKeys("")) { try AccessTokenKeySet.privateKeys(jwks: Array(text.utf8)) }
            do {
                _ = try AccessTokenKeySet.privateKeys(jwks: Array(text.utf8))
            } catch {
                #expect(!error.message.contains(jwk["d"]!), "\(error.message)")
            }
        }
        #expect(throws: AccessTokenError.invalidKeys("")) { try AccessTokenKeySet.sharedSecret(Array("short".utf8)) }
        #expect(!"\(try AccessTokenKeySet.privateKeys(jwks: Array(#"{"keys":[\#(Self.json(jwk))]}"#.utf8)))".contains(jwk["d"]!))
    }

    @Test func aKeyFileOthersCanReadIsRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("keys.json").path
        try Data(AccessTokenKeySet.generate(.eddsa).utf8).write(to: URL(fileURLWithPath: path))
        for mode in [0o644, 0o640, 0o604, 0o660] {
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
            #expect(throws: AccessTokenError.invalidKeys("")) { try AccessTokenKeySet.load(file: path) }
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        #expect(try AccessTokenKeySet.load(file: path).keyIDs.count == 1)
        try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: path)
        #expect(try AccessTokenKeySet.load(file: path).keyIDs.count == 1)
        #expect(throws: AccessTokenError.invalidKeys("")) { try AccessTokenKeySet.load(file: path + ".missing") }
    }

    @Test func base64urlRoundTripsAndHasOneSpellingPerValue() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            let text = Base64URL.encode(bytes)
            let foundation = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            #expect(text == foundation && Base64URL.decode(text) == bytes, "\(length)")
        }
        // Padding, the standard alphabet, an impossible length and non-zero unused bits are refused.
        for bad in ["AQ==", "A+/B", "AQIDB", "AR", "AQJ", "a b"] { #expect(Base64URL.decode(bad) == nil, "\(bad)") }
        #expect(Base64URL.decode("AQ") == [1] && Base64URL.decode("AQI") == [1, 2])
    }

    @Test func theGeneratedKeyIDIsTheRFC7638Thumbprint() throws {
        // RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
        let key = try Curve25519.Signing.PublicKey(rawRepresentation: Base64URL.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")!)
        #expect(Key.ed25519Public(key).thumbprint == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
    }
}
