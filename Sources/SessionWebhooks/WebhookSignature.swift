public import Crypto
import Foundation

/// Standard Webhooks signing (standardwebhooks.com): `webhook-signature: v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`,
/// the key being the bytes of a `whsec_<base64>` secret. What PyPI's `standardwebhooks` verifies as is.
public struct WebhookSignature: Sendable {
    let key: SymmetricKey

    /// A `whsec_<base64>` secret (the prefix may be left out); nil when the rest is not base64 of at least 16 bytes.
    public init?(secret: String) {
        let encoded = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
        guard let bytes = Data(base64Encoded: encoded), bytes.count >= 16 else { return nil }
        key = SymmetricKey(data: bytes)
    }

    /// The header value for one delivery attempt.
    public func sign(id: String, timestamp: Int64, body: [UInt8]) -> String {
        var message = Array("\(id).\(timestamp).".utf8)
        message.append(contentsOf: body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: key)
        return "v1," + Data(mac).base64EncodedString()
    }
}
