import CArgon2

/// Argon2id (RFC 9106) through Debian's libargon2, the reference implementation, with hashes in the PHC string format
/// every other implementation reads: `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` (base64 without padding).
/// Synchronous and CPU- and memory-bound: call it on the hashing pool only (`PasswordHasher`).
public enum Argon2id {
    /// The cost of one hash. The defaults are OWASP's baseline (19 MiB, 2 passes, 1 lane).
    public struct Parameters: Sendable, Hashable {
        /// Memory per hash, KiB (`m`).
        public var memoryKiB: UInt32
        /// Passes over that memory (`t`).
        public var iterations: UInt32
        /// Lanes, each hashed by its own thread of libargon2's (`p`).
        public var parallelism: UInt32

        public init(memoryKiB: UInt32 = 19456, iterations: UInt32 = 2, parallelism: UInt32 = 1) {
            self.memoryKiB = memoryKiB
            self.iterations = iterations
            self.parallelism = parallelism
        }
    }

    static let saltLength = 16
    static let hashLength = 32
    static let prefix = "$argon2id$"

    /// A new PHC string for `password` under a random 16-byte salt; nil only if libargon2 refuses the parameters
    /// (which `ServiceOptions` keeps in range) or cannot allocate the memory.
    public static func hash(_ password: [UInt8], parameters: Parameters) -> String? {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<saltLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let length = argon2_encodedlen(
            parameters.iterations, parameters.memoryKiB, parameters.parallelism, UInt32(saltLength), UInt32(hashLength), Argon2_id)
        var encoded = [CChar](repeating: 0, count: length + 1)
        let status = password.withUnsafeBytes { pwd in
            salt.withUnsafeBytes { salt in
                argon2id_hash_encoded(
                    parameters.iterations, parameters.memoryKiB, parameters.parallelism, pwd.baseAddress, pwd.count, salt.baseAddress,
                    salt.count, hashLength, &encoded, encoded.count)
            }
        }
        guard status == ARGON2_OK.rawValue else { return nil }
        return String(decoding: encoded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether `password` is the one `encoded` (a PHC string of any Argon2id parameters) was made from; false for
    /// anything malformed.
    public static func verify(_ password: [UInt8], against encoded: String) -> Bool {
        guard encoded.hasPrefix(prefix) else { return false }
        return password.withUnsafeBytes { pwd in argon2id_verify(encoded, pwd.baseAddress, pwd.count) } == ARGON2_OK.rawValue
    }

    /// The parameters a PHC string was made with; nil when it is not an Argon2id v19 string.
    public static func parameters(of encoded: String) -> Parameters? {
        let fields = encoded.split(separator: "$", omittingEmptySubsequences: false)
        guard fields.count == 6, fields[1] == "argon2id", fields[2] == "v=19" else { return nil }
        var values: [Substring: UInt32] = [:]
        for pair in fields[3].split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let value = UInt32(parts[1]) else { return nil }
            values[parts[0]] = value
        }
        guard let m = values["m"], let t = values["t"], let p = values["p"] else { return nil }
        return Parameters(memoryKiB: m, iterations: t, parallelism: p)
    }
}
