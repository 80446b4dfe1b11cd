import Crypto
import Foundation
import JWTKit
import Synchronization

/// A signature algorithm access tokens may use.
public enum AccessTokenAlgorithm: String, Sendable, CaseIterable {
    /// Ed25519 (RFC 8037): the default; small, fast, deterministic signatures.
    case eddsa = "EdDSA"
    /// ECDSA over P-256 with SHA-256, for verifiers without Ed25519.
    case es256 = "ES256"
    /// HMAC-SHA-256 with a shared secret: both sides can sign; never published.
    case hs256 = "HS256"
}

/// The keys access tokens are signed and verified with, each bound to the one algorithm it may verify.
///
/// - From `JWT_KEYS_FILE` (`privateKeys(jwks:)`): a JWK Set of Ed25519 (`OKP`) or P-256 (`EC`) private keys; the first
///   signs, all verify. Rotation with overlap: add the new key second, deploy; move it first, deploy; remove the old
///   one once the longest token lifetime has passed.
/// - From a JWKS document (`publicKeys(jwks:)`): what a downstream verifier fetched; private parts are ignored, keys of
///   other types are skipped.
/// - From a shared secret (`sharedSecret(_:)`): HS256, for people who share a secret; never published.
///
/// Each key verifies only with its own algorithm: a token whose `alg` differs from its key's (HS256 "signed" with a
/// public key, an ES256 key named in an EdDSA token, `none`) is refused before any signature is checked, so there is
/// no algorithm confusion. Private key material never appears in a message or a description.
public struct AccessTokenKeySet: Sendable, CustomStringConvertible {
    let storage: Storage
    /// Key ID → the one algorithm that key verifies.
    let algorithms: [String: AccessTokenAlgorithm]
    /// The key that signs; nil for a verification-only set.
    public let signingKeyID: String?
    /// `{"keys":[…]}`: the public keys, for `/.well-known/jwks.json` (empty for a shared secret).
    public let publicJWKS: String

    /// The key IDs, in the file's order.
    public let keyIDs: [String]

    /// The algorithm a key ID verifies; nil for an unknown key.
    public func algorithm(ofKey kid: String) -> AccessTokenAlgorithm? { algorithms[kid] }

    /// The algorithm the signing key uses.
    public var signingAlgorithm: AccessTokenAlgorithm? { signingKeyID.flatMap { algorithms[$0] } }

    public var description: String { "AccessTokenKeySet(\(keyIDs.count) keys, redacted)" }

    private init(keys: [(kid: String, algorithm: AccessTokenAlgorithm, key: Key)], signing: Bool) {
        self.storage = Storage(keys: keys.map { ($0.kid, $0.key) })
        self.algorithms = Dictionary(keys.map { ($0.kid, $0.algorithm) }, uniquingKeysWith: { first, _ in first })
        self.keyIDs = keys.map(\.kid)
        self.signingKeyID = signing ? keys.first?.kid : nil
        let publicKeys = keys.compactMap { $0.key.publicJWK(kid: $0.kid) }
        let data = try! JSONSerialization.data(withJSONObject: ["keys": publicKeys], options: [.sortedKeys, .withoutEscapingSlashes])
        self.publicJWKS = String(decoding: data, as: UTF8.self)
    }

    /// jwt-kit's signing algorithms, one per key, made on first use. jwt-kit hands them out through its key collection,
    /// an actor; verifying through the actor would run every verification of the process one at a time, so the
    /// algorithms are taken out once (`getKey(for:)`) and used directly — `verify(_:signs:)` and `sign(_:)` are
    /// synchronous and thread-safe.
    final class Storage: Sendable {
        private let keys: [(kid: String, key: Key)]
        private let made = Mutex<[String: any JWTAlgorithm]?>(nil)

        init(keys: [(kid: String, key: Key)]) { self.keys = keys }

        /// The algorithms by key ID, when already made: the path every token after the first takes.
        var algorithmsIfMade: [String: any JWTAlgorithm]? { made.withLock { $0 } }

        /// The algorithm of a key ID, made now if it was not yet.
        func algorithm(_ kid: String) async -> (any JWTAlgorithm)? {
            if let made = algorithmsIfMade { return made[kid] }
            return await algorithms()[kid]
        }

        /// The algorithms by key ID. Two first callers may both make them: the same keys make the same algorithms.
        func algorithms() async -> [String: any JWTAlgorithm] {
            if let made = algorithmsIfMade { return made }
            let collection = JWTKeyCollection()
            var result: [String: any JWTAlgorithm] = [:]
            for (kid, key) in keys {
                let identifier = JWKIdentifier(string: kid)
                switch key {
                case .ed25519Private(let key): await collection.add(eddsa: EdDSA.PrivateKey(backing: key), kid: identifier)
                case .ed25519Public(let key): await collection.add(eddsa: EdDSA.PublicKey(backing: key), kid: identifier)
                // Both initialisers only wrap a valid CryptoKit key: they cannot fail for P-256.
                case .p256Private(let key): await collection.add(ecdsa: try! ES256PrivateKey(backing: key), kid: identifier)
                case .p256Public(let key): await collection.add(ecdsa: try! ES256PublicKey(backing: key), kid: identifier)
                case .secret(let secret): await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: identifier)
                }
                result[kid] = try? await collection.getKey(for: identifier)
            }
            made.withLock { $0 = result }
            return result
        }
    }

    /// The private keys of a JWK Set (`JWT_KEYS_FILE`'s content): the first signs, all verify.
    /// - Throws: `invalidKeys` when the set is empty, badly formed, repeats a `kid`, or holds a key that is not an
    ///   Ed25519 or P-256 private key with a `kid`.
    public static func privateKeys(jwks: some Collection<UInt8>) throws(AccessTokenError) -> Self {
        let entries = try JWKEntry.decodeSet(jwks)
        var keys: [(kid: String, algorithm: AccessTokenAlgorithm, key: Key)] = []
        for (index, entry) in entries.enumerated() {
            guard let kid = entry.kid, !kid.isEmpty else { throw .invalidKeys("key \(index + 1) has no kid") }
            guard !keys.contains(where: { $0.kid == kid }) else { throw .invalidKeys("kid \(kid) appears twice") }
            guard entry.d != nil else { throw .invalidKeys("key \(kid) is not a private key (no d)") }
            let (algorithm, key) = try entry.key()
            keys.append((kid, algorithm, key))
        }
        guard !keys.isEmpty else { throw .invalidKeys("the key set holds no key") }
        return Self(keys: keys, signing: true)
    }

    /// The public keys of a JWKS document, for verification only. Keys this service would not issue (RSA, other
    /// curves, no `kid`) are skipped; private parts are ignored.
    public static func publicKeys(jwks: some Collection<UInt8>) throws(AccessTokenError) -> Self {
        var keys: [(kid: String, algorithm: AccessTokenAlgorithm, key: Key)] = []
        for entry in try JWKEntry.decodeSet(jwks) {
            guard let kid = entry.kid, !kid.isEmpty, !keys.contains(where: { $0.kid == kid }) else { continue }
            var publicEntry = entry
            publicEntry.d = nil
            guard let (algorithm, key) = try? publicEntry.key() else { continue }
            keys.append((kid, algorithm, key))
        }
        return Self(keys: keys, signing: false)
    }

    /// The key ID a shared secret signs under.
    public static let sharedSecretKeyID = "hs256"

    /// An HS256 shared secret (`JWT_HS256_SECRET`): signs and verifies; never published.
    /// - Throws: `invalidKeys` when shorter than 32 bytes (RFC 7518 §3.2: at least the hash's size).
    public static func sharedSecret(_ secret: some Collection<UInt8>) throws(AccessTokenError) -> Self {
        guard secret.count >= 32 else { throw .invalidKeys("the HS256 secret must be at least 32 bytes") }
        return Self(keys: [(sharedSecretKeyID, .hs256, .secret(Array(secret)))], signing: true)
    }

    /// Reads `JWT_KEYS_FILE`: refused when the group or others may read or write it (`chmod 600`), or when
    /// `privateKeys(jwks:)` refuses its content. Start-up only: this reads the file synchronously.
    public static func load(file path: String) throws(AccessTokenError) -> Self {
        let attributes: [FileAttributeKey: Any]
        let content: Data
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
            content = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .invalidKeys("cannot read \(path)")
        }
        if let permissions = attributes[.posixPermissions] as? Int, permissions & 0o077 != 0 {
            throw .invalidKeys(
                "\(path) is accessible to its group or others (mode \(String(permissions & 0o777, radix: 8))); chmod 600 it")
        }
        return try privateKeys(jwks: Array(content))
    }

    /// A new JWK Set with one private key, for `session-service jwt-keygen`: its `kid` is the key's RFC 7638 thumbprint.
    public static func generate(_ algorithm: AccessTokenAlgorithm) -> String {
        let key: Key =
            switch algorithm {
            case .eddsa: .ed25519Private(Curve25519.Signing.PrivateKey())
            case .es256: .p256Private(P256.Signing.PrivateKey())
            case .hs256: preconditionFailure("HS256 uses JWT_HS256_SECRET, not a key file")
            }
        var jwk = key.publicJWK(kid: "")!
        jwk["kid"] = key.thumbprint
        jwk["d"] = key.privateScalar
        let data = try! JSONSerialization.data(withJSONObject: ["keys": [jwk]], options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}

/// One key, as CryptoKit holds it.
enum Key: Sendable {
    case ed25519Private(Curve25519.Signing.PrivateKey)
    case ed25519Public(Curve25519.Signing.PublicKey)
    case p256Private(P256.Signing.PrivateKey)
    case p256Public(P256.Signing.PublicKey)
    case secret([UInt8])

    /// The public members of the key's JWK (RFC 7517/8037), with `kid`, `alg` and `use`; nil for a secret.
    func publicJWK(kid: String) -> [String: String]? {
        var jwk: [String: String]
        switch self {
        case .ed25519Private(let key): jwk = Self.okp(key.publicKey)
        case .ed25519Public(let key): jwk = Self.okp(key)
        case .p256Private(let key): jwk = Self.ec(key.publicKey)
        case .p256Public(let key): jwk = Self.ec(key)
        case .secret: return nil
        }
        jwk["kid"] = kid
        jwk["use"] = "sig"
        return jwk
    }

    private static func okp(_ key: Curve25519.Signing.PublicKey) -> [String: String] {
        ["kty": "OKP", "crv": "Ed25519", "x": Base64URL.encode(key.rawRepresentation), "alg": "EdDSA"]
    }

    private static func ec(_ key: P256.Signing.PublicKey) -> [String: String] {
        let raw = Array(key.rawRepresentation)  // x ‖ y, 32 bytes each
        return ["kty": "EC", "crv": "P-256", "x": Base64URL.encode(raw[0..<32]), "y": Base64URL.encode(raw[32..<64]), "alg": "ES256"]
    }

    /// RFC 7638: SHA-256 of the required public members in lexicographic order, base64url.
    var thumbprint: String {
        guard let jwk = publicJWK(kid: "") else { return "" }
        let members = jwk["kty"] == "OKP" ? ["crv", "kty", "x"] : ["crv", "kty", "x", "y"]
        let canonical = "{" + members.map { "\"\($0)\":\"\(jwk[$0]!)\"" }.joined(separator: ",") + "}"
        return Base64URL.encode(SHA256.hash(data: Array(canonical.utf8)))
    }

    /// The private scalar `d`, base64url; nil for a public key or a secret.
    var privateScalar: String? {
        switch self {
        case .ed25519Private(let key): Base64URL.encode(key.rawRepresentation)
        case .p256Private(let key): Base64URL.encode(key.rawRepresentation)
        default: nil
        }
    }
}

/// A JWK as JSON carries it; only the members this service reads.
struct JWKEntry: Decodable {
    var kty: String?
    var crv: String?
    var x: String?
    var y: String?
    var d: String?
    var kid: String?
    var alg: String?

    static func decodeSet(_ bytes: some Collection<UInt8>) throws(AccessTokenError) -> [JWKEntry] {
        do {
            return try JSONDecoder().decode(JWKSetDocument.self, from: Data(bytes)).keys
        } catch {
            throw .invalidKeys("not a JWK Set ({\"keys\":[…]})")
        }
    }

    /// The key, and the one algorithm it may verify: its `alg`, which must fit its type, or the type's only one.
    func key() throws(AccessTokenError) -> (AccessTokenAlgorithm, Key) {
        let name = kid ?? "?"
        switch (kty, crv) {
        case ("OKP", "Ed25519"):
            guard alg == nil || alg == AccessTokenAlgorithm.eddsa.rawValue else { throw .invalidKeys("key \(name): an Ed25519 key is for EdDSA") }
            if let d {
                guard let raw = Base64URL.decode(d), let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
                    throw .invalidKeys("key \(name): d is not an Ed25519 private key")
                }
                guard x == nil || x == Base64URL.encode(key.publicKey.rawRepresentation) else {
                    throw .invalidKeys("key \(name): x is not the public key of d")
                }
                return (.eddsa, .ed25519Private(key))
            }
            guard let x, let raw = Base64URL.decode(x), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
                throw .invalidKeys("key \(name): x is not an Ed25519 public key")
            }
            return (.eddsa, .ed25519Public(key))
        case ("EC", "P-256"):
            guard alg == nil || alg == AccessTokenAlgorithm.es256.rawValue else { throw .invalidKeys("key \(name): a P-256 key is for ES256") }
            if let d {
                guard let raw = Base64URL.decode(d), let key = try? P256.Signing.PrivateKey(rawRepresentation: raw) else {
                    throw .invalidKeys("key \(name): d is not a P-256 private key")
                }
                let publicRaw = Array(key.publicKey.rawRepresentation)
                guard x == nil || (x == Base64URL.encode(publicRaw[0..<32]) && y == Base64URL.encode(publicRaw[32..<64])) else {
                    throw .invalidKeys("key \(name): x and y are not the public key of d")
                }
                return (.es256, .p256Private(key))
            }
            guard let x, let y, let rawX = Base64URL.decode(x), let rawY = Base64URL.decode(y),
                let key = try? P256.Signing.PublicKey(rawRepresentation: rawX + rawY)
            else { throw .invalidKeys("key \(name): x and y are not a P-256 public key") }
            return (.es256, .p256Public(key))
        default:
            throw .invalidKeys("key \(name): only Ed25519 (OKP) and P-256 (EC) keys are supported")
        }
    }
}

/// `{"keys": […]}`.
struct JWKSetDocument: Decodable {
    let keys: [JWKEntry]
}
