import Foundation

/// What the lifecycle events say happened (README, "Lifecycle events"). Each is recorded by the same Redis script as
/// the change it reports — the script adds the event's `id`, its `time` (Redis' clock), `session_id` where the script
/// picks the session, and `new_device` on `session.created`.
public enum LifecycleEventType: String, Sendable, CaseIterable {
    case sessionCreated = "session.created"
    case sessionEnded = "session.ended"
    case loginFailed = "login.failed"
    case passwordChanged = "password.changed"
    case accountDisabled = "account.disabled"
    case accountEnabled = "account.enabled"
    case accountDeleted = "account.deleted"
    case totpEnabled = "totp.enabled"
    case totpDisabled = "totp.disabled"
}

/// Why a session ended (`session.ended`'s `reason`). Idle and absolute expiry are not here: Redis expires keys
/// silently.
public enum SessionEndReason: String, Sendable {
    case logout
    /// One session ended by its user (from the session list).
    case revoked
    case revokedAll = "revoked_all"
    /// The per-user cap ended the oldest session.
    case evicted
    case passwordChanged = "password_changed"
    case accountDisabled = "account_disabled"
    /// An operator ended it (the admin API), or deleted the account.
    case admin
    /// Re-authentication replaced it with a new session.
    case reauthenticated
    case introspectionRevoke = "introspection_revoke"
}

/// Why a login failed (`login.failed`'s `reason`).
public enum LoginFailureReason: String, Sendable {
    case invalidCredentials = "invalid_credentials"
    case throttled
    case accountDisabled = "account_disabled"
    case invalidCode = "invalid_code"
}

/// The request's side of an event: where it came from, and which operator acted. Never a token, a password, a hash, a
/// secret or a code.
public struct EventOrigin: Sendable, Equatable {
    /// The client address (`TRUSTED_PROXIES`-aware).
    public var ip: String?
    /// The device label of the request's `User-Agent` (`Firefox on Linux`).
    public var device: String?
    /// The admin client's name, for an operator's action.
    public var adminClient: String?

    public init(ip: String? = nil, userAgent: String? = nil, adminClient: String? = nil) {
        self.ip = ip.flatMap { $0.isEmpty ? nil : $0 }
        self.device = userAgent.map { DeviceLabel.of(SessionMetadata.clean($0)) }
        self.adminClient = adminClient
    }

    /// A request with no known origin (the library used without HTTP).
    public static let none = EventOrigin()

    /// The origin of a session's start, as its metadata keeps it.
    init(_ metadata: SessionMetadata?) {
        self.init(ip: metadata?.ip, userAgent: metadata?.userAgent)
    }
}

/// One event before its script completes it: the fields known before Redis runs the change.
public struct LifecycleEvent: Sendable {
    public var type: LifecycleEventType
    public var userID: UserID?
    public var sessionID: SessionID?
    public var reason: String?
    public var origin: EventOrigin

    public init(_ type: LifecycleEventType, user: UserID?, session: SessionID? = nil, reason: String? = nil, origin: EventOrigin = .none) {
        self.type = type
        self.userID = user
        self.sessionID = session
        self.reason = reason
        self.origin = origin
    }

    /// The JSON object the script decodes (with `cjson`), completes and stores.
    var template: String {
        var fields: [String: String] = ["type": type.rawValue]
        fields["user_id"] = userID?.text
        fields["session_id"] = sessionID?.hex
        fields["reason"] = reason
        fields["ip"] = origin.ip
        fields["device"] = origin.device
        fields["admin_client"] = origin.adminClient
        // Strings only: serialization cannot fail.
        let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
