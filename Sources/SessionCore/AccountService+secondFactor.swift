import Crypto
public import Foundation

// The second factor and re-authentication: enrolling a TOTP factor, the login's second step, turning the factor off,
// and proving the credentials again for a new, fresh session.

extension AccountService {
    /// A factor enrolled and waiting for its first code: the secret (base32) and the URI an authenticator scans.
    public struct Enrollment: Sendable {
        public let secret: String
        public let uri: String
    }

    /// Enrols a new TOTP secret, pending until `confirmTOTP` (a new enrolment replaces a pending one; an enabled factor
    /// stays on until the new one is confirmed).
    public func beginTOTP(for user: UserID, issuer: String) async throws(SessionError) -> Enrollment {
        let store = try secondFactorStore()
        guard let username = try await users.username(for: user) else { throw .userNotFound }
        let secret = TOTP.newSecret()
        try await store.setPending(secret, of: user)
        return Enrollment(secret: Base32.encode(secret), uri: TOTP.uri(secret: secret, issuer: issuer, account: username))
    }

    /// Turns the pending factor on with a code from it; returns ten recovery codes (shown once; stored as hashes).
    /// - Throws: `invalidCode` for a wrong code or when nothing is pending.
    public func confirmTOTP(for user: UserID, code: String, origin: EventOrigin = .none, now: Date = Date()) async throws(SessionError) -> [String] {
        let store = try secondFactorStore()
        guard let (sealed, secret) = try await store.pendingSecret(of: user),
            let step = TOTP.matchingStep(secret: secret, code: code, around: TOTP.step(at: Int64(now.timeIntervalSince1970)))
        else { throw .invalidCode }
        let codes = (0..<10).map { _ in Self.newRecoveryCode() }
        guard try await store.confirm(user, sealed: sealed, step: step, recoveryHashes: codes.map(Self.recoveryHash), origin: origin) else {
            throw .invalidCode
        }
        return codes
    }

    /// Turns the factor off with a current code or an unused recovery code.
    /// - Throws: `invalidCode`.
    public func disableTOTP(for user: UserID, code: String?, recoveryCode: String?, origin: EventOrigin = .none, now: Date = Date())
        async throws(SessionError)
    {
        let store = try secondFactorStore()
        guard let secret = try await store.enabledSecret(of: user),
            try await store.use(Self.proof(secret, code: code, recoveryCode: recoveryCode, now: now), of: user, challenge: nil) == .accepted
        else { throw .invalidCode }
        try await store.remove(user, origin: origin)
    }

    /// Whether the user's factor is on.
    public func hasSecondFactor(_ user: UserID) async throws(SessionError) -> Bool {
        guard let secondFactors else { return false }
        return try await secondFactors.enabledSecret(of: user) != nil
    }

    /// The login's second step: a challenge from `login` and a code (or a recovery code) → the session. A wrong code
    /// counts as a failed login for the user and address; the challenge's fifth voids it.
    /// - Throws: `invalidChallenge`, `invalidCode`, `invalidRequest` (neither code given), `tooManyAttempts`,
    ///   `accountDisabled`, `invalidCredentials` (credentials changed since the password step), `storeUnavailable`.
    public func completeLogin(challenge text: String, code: String?, recoveryCode: String?, clientAddress: String, now: Date = Date())
        async throws(SessionError) -> (token: SessionToken, session: Session, user: User)
    {
        let store = try secondFactorStore()
        guard let handle = SessionToken(text), let (challenge, key) = try await store.challenge(handle),
            let record = try await users.record(challenge.user)
        else { throw .invalidChallenge }
        try await throttle.check(username: record.user.username, clientAddress: clientAddress)
        guard let secret = try await store.enabledSecret(of: challenge.user) else { throw .invalidChallenge }
        switch try await store.use(Self.proof(secret, code: code, recoveryCode: recoveryCode, now: now), of: challenge.user, challenge: key) {
        case .accepted: break
        case .refused:
            try await throttle.recordFailure(username: record.user.username, clientAddress: clientAddress)
            await sessions.events.recordLoginFailure(
                user: challenge.user, reason: .invalidCode, origin: EventOrigin(ip: clientAddress, userAgent: challenge.metadata?.userAgent))
            throw .invalidCode
        case .noChallenge: throw .invalidChallenge
        }
        try await throttle.reset(username: record.user.username, clientAddress: clientAddress)
        guard !challenge.stamp.refusesSessions else { throw .accountDisabled }
        let (token, session) = try await startSession(record, stamp: challenge.stamp, metadata: challenge.metadata, level: .secondFactor)
        return (token, session, record.user)
    }

    /// Proves the credentials again from a live session: the password, and a code when the factor is on. Starts a new
    /// session (new token, authenticated now) and ends `current` — on every instance, as a logout does.
    /// - Throws: `invalidCredentials` (wrong password), `invalidCode`, `tooManyAttempts`, `accountDisabled`,
    ///   `storeUnavailable`, `overloaded`.
    public func reauthenticate(
        _ current: Session, password: String, code: String?, recoveryCode: String?, clientAddress: String, userAgent: String?,
        now: Date = Date()
    ) async throws(SessionError) -> (token: SessionToken, session: Session, user: User) {
        guard let record = try await users.record(current.userID) else { throw .invalidCredentials }
        let username = record.user.username
        try await throttle.check(username: username, clientAddress: clientAddress)
        let stamp = try await sessions.accountStamp(of: current.userID)
        let origin = EventOrigin(ip: clientAddress, userAgent: userAgent)
        guard Credentials.isPlausiblePassword(password), try await hasher.verify(password, against: record.passwordHash, for: clientAddress) else {
            try await throttle.recordFailure(username: username, clientAddress: clientAddress)
            await sessions.events.recordLoginFailure(user: current.userID, reason: .invalidCredentials, origin: origin)
            throw .invalidCredentials
        }
        var level = AuthenticationLevel.password
        if let store = secondFactors, let secret = try await store.enabledSecret(of: current.userID) {
            let proof = try Self.proof(secret, code: code, recoveryCode: recoveryCode, now: now)
            guard try await store.use(proof, of: current.userID, challenge: nil) == .accepted else {
                try await throttle.recordFailure(username: username, clientAddress: clientAddress)
                await sessions.events.recordLoginFailure(user: current.userID, reason: .invalidCode, origin: origin)
                throw .invalidCode
            }
            level = .secondFactor
        }
        try await throttle.reset(username: username, clientAddress: clientAddress)
        guard !stamp.refusesSessions else { throw .accountDisabled }
        let metadata = SessionMetadata(ip: clientAddress, userAgent: userAgent)
        let (token, session) = try await startSession(record, stamp: stamp, metadata: metadata, level: level)
        _ = try await sessions.revoke(current.id, of: current.userID, ending: SessionEnd(.reauthenticated, origin: EventOrigin(metadata)))
        return (token, session, record.user)
    }

    /// What a code (the step it matches under the factor's secret, if any) or a recovery code proves, for
    /// `SecondFactorStore.use`. Neither given: `invalidCode`.
    private static func proof(_ secret: [UInt8], code: String?, recoveryCode: String?, now: Date) throws(SessionError)
        -> SecondFactorStore.Proof
    {
        if let recoveryCode { return .recovery(hash: recoveryHash(recoveryCode)) }
        guard let code else { throw .invalidCode }
        return .code(step: TOTP.matchingStep(secret: secret, code: code, around: TOTP.step(at: Int64(now.timeIntervalSince1970))))
    }

    private func secondFactorStore() throws(SessionError) -> SecondFactorStore {
        guard let secondFactors else { throw .invalidRequest("this service has no second factor") }
        return secondFactors
    }

    /// `xxxx-xxxx-xxxx-xxxx` of base32 (80 random bits): beyond brute force even from a dump of their hashes.
    static func newRecoveryCode() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<10).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let text = Base32.encode(bytes).lowercased()
        return stride(from: 0, to: 16, by: 4).map { start in
            String(text.dropFirst(start).prefix(4))
        }.joined(separator: "-")
    }

    /// SHA-256 (hex) of a recovery code as typed, less case, dashes and spaces.
    static func recoveryHash(_ code: String) -> String {
        let normalized = code.lowercased().filter { $0 != "-" && $0 != " " }
        return SHA256.hash(data: Array(normalized.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

extension Session {
    /// Whether the login behind the session is at most `maxAge` old: what sensitive operations ask (`REAUTH_MAX_AGE`).
    public func isFresh(maxAge: Duration, now: Date = Date()) -> Bool {
        let (seconds, attoseconds) = maxAge.components
        return now.timeIntervalSince(authenticatedAt) <= Double(seconds) + Double(attoseconds) / 1e18
    }
}
