import Crypto
import Foundation
import HTTPTypes

/// The clients that may introspect and revoke tokens (RFC 7662/7009), from `INTROSPECTION_CLIENTS` (`id:secret,…`,
/// each split at its first `:`), authenticated with HTTP Basic (RFC 7617).
///
/// Secrets are kept as SHA-256 digests and compared in constant time, so neither a timing difference nor a memory dump
/// of this value gives one away. Never printed: `description` is redacted.
public struct IntrospectionClients: Sendable, CustomStringConvertible {
    private let digests: [String: SHA256.Digest]

    /// Parses `id:secret,…`; pairs without a `:` are skipped (`ServiceOptions` refuses them first).
    public init(parsing text: String) {
        var digests: [String: SHA256.Digest] = [:]
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { continue }
            digests[String(parts[0]).trimmingCharacters(in: .whitespaces)] = SHA256.hash(data: Array(parts[1].utf8))
        }
        self.digests = digests
    }

    /// The client ID an `Authorization: Basic …` header authenticates; nil for a missing, malformed or wrong one.
    public func client(authorization: String?) -> String? {
        guard let parts = Self.credentials(authorization) else { return nil }
        // RFC 6749 §2.3.1: a client's id and secret are form-encoded before they are joined; most clients send them
        // plain. Both spellings are tried.
        let id = String(parts[0])
        let secret = String(parts[1])
        for (id, secret) in [(id, secret), (Self.formDecoded(id), Self.formDecoded(secret))] {
            guard let expected = digests[id] else { continue }
            // `==` on digests compares every byte, whatever the first difference.
            if SHA256.hash(data: Array(secret.utf8)) == expected { return id }
        }
        return nil
    }

    /// The client ID a Basic header offers, right or wrong (what failed attempts are counted under); nil without one.
    public static func offeredID(authorization: String?) -> String? {
        credentials(authorization).map { String($0[0]) }
    }

    /// The shortest secret accepted at start-up: a guessable secret defeats every throttle.
    public static let minimumSecretLength = 16

    /// The clients whose secret is shorter than `minimumSecretLength` (by ID; the secrets are never named).
    public static func weakClients(parsing text: String) -> [String] {
        text.split(separator: ",").compactMap { pair in
            let parts = pair.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[1].count < minimumSecretLength else { return nil }
            return String(parts[0]).trimmingCharacters(in: .whitespaces)
        }
    }

    /// The `id` and `secret` of `Basic base64(id:secret)`.
    private static func credentials(_ authorization: String?) -> [Substring]? {
        guard let authorization, authorization.count > 6, authorization.prefix(6).lowercased() == "basic ",
            let decoded = Data(base64Encoded: String(authorization.dropFirst(6)).trimmingCharacters(in: .whitespaces)),
            let text = String(data: decoded, encoding: .utf8)
        else { return nil }
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.count == 2 ? parts : nil
    }

    private static func formDecoded(_ text: String) -> String {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? text
    }

    public var description: String { "IntrospectionClients(\(digests.count), redacted)" }
}
