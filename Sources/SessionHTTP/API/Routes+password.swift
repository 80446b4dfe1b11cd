import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SessionCore

/// `POST /v1/password`: a signed-in user changes their password.
extension Routes {
    /// Needs a fresh login (`REAUTH_MAX_AGE`). JSON → 204; a form (the account page) → 303 to `/account?password=changed`, or `?error=<code>`. A wrong current
    /// password is 403 `invalid_credentials` (the caller is signed in: 401 would read as "your session is gone") and
    /// counts as a failed login. 1 bcrypt to check + 1 to hash, the record, 1 EVALSHA ending the other sessions.
    func changePassword(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let current = try Self.session(context)
        let isForm = CredentialsBody.isForm(request)
        do {
            // A form (the account page) gets its 303 ?error=reauthentication_required like any other refusal.
            try requireFreshLogin(context)
            let body = try await PasswordBody.decode(request, limit: maxBodySize)
            let client = trustedProxies.clientAddress(peer: context.peerAddress, forwardedFor: request.headers[values: .xForwardedFor])
            do {
                try await core(context) {
                    try await accounts.changePassword(
                        of: current.userID, keeping: current.id, currentPassword: body.currentPassword, newPassword: body.newPassword,
                        endOtherSessions: body.endOtherSessions, clientAddress: client, userAgent: request.headers[.userAgent])
                }
            } catch let error as APIError where error.code == SessionError.Code.invalidCredentials.text {
                context.logger.info("password change refused", metadata: ["user_id": "\(current.userID)", "reason": "invalid_credentials"])
                throw APIError(.forbidden, code: error.code, message: "the current password is wrong")
            }
            context.logger.info(
                "password changed", metadata: ["user_id": "\(current.userID)", "other_sessions_ended": "\(body.endOtherSessions)"])
            return isForm ? Self.redirect(to: "/account?password=changed") : Response(status: .noContent)
        } catch let error as APIError where isForm {
            return Self.redirect(to: "/account", error: error.code)
        }
    }
}

/// `{"current_password", "new_password", "end_other_sessions"}` as JSON, or the same fields as a form (where the
/// last `end_other_sessions` wins, so a page can send a hidden `false` before its checkbox's `true`).
struct PasswordBody: Decodable {
    let currentPassword: String
    let newPassword: String
    let endOtherSessions: Bool

    enum CodingKeys: String, CodingKey {
        case currentPassword = "current_password"
        case newPassword = "new_password"
        case endOtherSessions = "end_other_sessions"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        currentPassword = try container.decode(String.self, forKey: .currentPassword)
        newPassword = try container.decode(String.self, forKey: .newPassword)
        endOtherSessions = try container.decodeIfPresent(Bool.self, forKey: .endOtherSessions) ?? true
    }

    init(currentPassword: String, newPassword: String, endOtherSessions: Bool) {
        self.currentPassword = currentPassword
        self.newPassword = newPassword
        self.endOtherSessions = endOtherSessions
    }

    static func decode(_ request: Request, limit: Int) async throws -> PasswordBody {
        let buffer = try await FormBody.collect(request, limit: limit)
        let mediaType = CredentialsBody.mediaType(request)
        if mediaType == "application/x-www-form-urlencoded" {
            let fields = FormBody.fields(try FormBody.text(buffer))
            guard let current = fields["current_password"], let new = fields["new_password"] else {
                throw APIError.invalidRequest("the form needs current_password and new_password fields")
            }
            let end: Bool
            switch fields["end_other_sessions"]?.lowercased() {
            case nil, "true", "on", "1": end = true
            case "false", "off", "0": end = false
            default: throw APIError.invalidRequest("end_other_sessions must be true or false")
            }
            return PasswordBody(currentPassword: current, newPassword: new, endOtherSessions: end)
        }
        return try JSONBody.decode(PasswordBody.self, buffer, mediaType: mediaType, fields: "current_password and new_password")
    }
}
