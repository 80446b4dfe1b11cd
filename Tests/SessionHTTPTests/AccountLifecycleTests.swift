import Foundation
import HTTPTestSupport
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Redis
import ServiceSettings
import SessionCore
import SessionHTTP
import TestSupport
import Testing

// Over 300 lines: one lifecycle's suites share their instance and operator helpers — the password change, the operator
// API, disabled and deleted accounts, hostile bodies and the login/disable race read as one story.

/// The account around a session (issue 24): a password change that ends the other sessions, the operator API on its own
/// listener, disabled and deleted accounts — on real instances sharing real Redis, two where "every instance" is
/// promised.
@Suite struct AccountLifecycleTests {
    static let admin = "ops:ops-secret-0123456789"

    static func adminHeaders(_ credentials: String = admin) -> HTTPFields {
        [.authorization: "Basic " + Data(credentials.utf8).base64EncodedString(), .contentType: "application/json"]
    }

    /// A configuration with the operator API on a free port.
    static func configuration(redis: RedisConfiguration? = nil, environment: [String: String] = [:]) async throws -> (ServiceConfiguration, Int) {
        let port = try RedisServerProcess.freePort()
        let configuration = try await Instances.configuration(
            environment: ["ADMIN_PORT": "\(port)", "ADMIN_CLIENTS": admin].merging(environment) { $1 }
        ) { configuration in
            if var redis {
                redis.connectionCount = 2
                configuration.redis = redis
            }
        }
        return (configuration, port)
    }

    /// Two instances of one store; the first serves the operator API (a port is one listener's).
    static func two(_ configuration: ServiceConfiguration) -> [ServiceConfiguration] {
        var second = configuration
        second.admin = nil
        return [configuration, second]
    }

    /// One call to the operator API.
    static func adminCall(
        _ port: Int, _ method: HTTPRequest.Method, _ uri: String, json: [String: Any]? = nil, credentials: String = admin
    ) async throws -> (status: HTTPResponse.Status, json: [String: Any], headers: HTTPFields) {
        let body = try json.map { ByteBuffer(bytes: Array(try JSONSerialization.data(withJSONObject: $0))) } ?? ByteBuffer()
        return try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
            let response = try await client.execute(
                .init(uri, method: method, authority: "127.0.0.1", headers: adminHeaders(credentials), body: body))
            let object = (try? JSONSerialization.jsonObject(with: Data((response.body ?? ByteBuffer()).readableBytesView))) as? [String: Any] ?? [:]
            return (response.status, object, response.headers)
        }
    }

    @Test func aPasswordChangeEndsTheOtherSessionsOnEveryInstanceAndKeepsTheCallers() async throws {
        let (configuration, _) = try await Self.configuration(environment: ["LOGIN_MAX_FAILURES": "3"])
        try await Instances.with(Self.two(configuration)) { clients in
            let (a, b) = (clients[0], clients[1])
            let name = uniqueName()
            try await a.register(name)
            let caller = try await a.login(name)
            let others = [try await b.login(name), try await a.login(name)]
            for token in others + [caller] {
                for client in clients { #expect(try await client.call(.get, "/v1/verify", token: token).status == .ok) }  // cached
            }
            // The rules of registration; a missing field; a wrong current password (403, counted).
            let short = try await a.call(.post, "/v1/password", token: caller, json: ["current_password": "correct horse", "new_password": "short"])
            #expect(short.status == .badRequest && short.errorCode == "invalid_request")
            #expect((short.json["message"] as? String) == "password must be at least 8 characters")
            #expect(try await a.call(.post, "/v1/password", token: caller, json: ["new_password": "another horse"]).status == .badRequest)
            let wrong = try await a.call(
                .post, "/v1/password", token: caller, json: ["current_password": "wrong horse", "new_password": "another horse"])
            #expect(wrong.status == .forbidden && wrong.errorCode == "invalid_credentials")

            let changed = try await a.call(
                .post, "/v1/password", token: caller, json: ["current_password": "correct horse", "new_password": "another horse"])
            #expect(changed.status == .noContent)
            for token in others {
                #expect(try await a.call(.get, "/v1/verify", token: token).status == .unauthorized)
                #expect(try await b.verifyAfterRevocation(token: token).status == .unauthorized)
            }
            for client in clients { #expect(try await client.call(.get, "/v1/verify", token: caller).status == .ok) }
            for client in clients {
                #expect(try await client.call(.post, "/v1/login", json: ["username": name, "password": "correct horse"]).status == .unauthorized)
            }
            let fresh = try await b.login(name, "another horse")

            // end_other_sessions: false keeps them; as a form (the account page's: a hidden false before the checkbox).
            var headers: HTTPFields = [.authorization: "Bearer \(caller)", .contentType: "application/x-www-form-urlencoded"]
            let form = "current_password=another+horse&new_password=third+horse+here&end_other_sessions=false"
            let kept = try await a.executeRequest(uri: "/v1/password", method: .post, headers: headers, body: ByteBuffer(string: form))
            #expect(kept.status == .seeOther && kept.headers[.location] == "/account?password=changed")
            #expect(try await b.call(.get, "/v1/verify", token: fresh).status == .ok)
            #expect(try await a.call(.post, "/v1/login", json: ["username": name, "password": "third horse here"]).status == .ok)

            // Wrong current passwords count as failed logins: 429 + Retry-After past the limit (3 per user and address),
            // and a login from the same address is throttled too.
            headers[.contentType] = "application/json"
            var last: TestResponse?
            for _ in 0..<4 {
                last = try await a.call(
                    .post, "/v1/password", token: caller, json: ["current_password": "nope nope", "new_password": "fourth horse"])
            }
            #expect(last?.status == .tooManyRequests && last?.headers[.retryAfter] != nil)
            #expect(try await b.call(.post, "/v1/login", json: ["username": name, "password": "third horse here"]).status == .tooManyRequests)
        }
    }

    @Test func theOperatorAPIIsOnlyOnItsOwnPortAndNeedsItsClients() async throws {
        let (configuration, port) = try await Self.configuration()
        try await Instances.with(1, configuration) { clients in
            #expect(try await clients[0].call(.get, "/v1/admin/users?username=x").status == .notFound)
            let none = try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
                try await client.execute(.init("/v1/admin/users?username=x", method: .get, authority: "127.0.0.1", headers: [:], body: ByteBuffer()))
            }
            #expect(none.status == .unauthorized)
            #expect(none.headers[.wwwAuthenticate] == "Basic realm=\"session-service-admin\", charset=\"UTF-8\"")
            let wrong = try await Self.adminCall(port, .get, "/v1/admin/users?username=x", credentials: "ops:wrong-secret-0123456789")
            #expect(wrong.status == .unauthorized && wrong.json["error"] as? String == "invalid_client")
            #expect(try await Self.adminCall(port, .get, "/v1/admin/users?username=nobody-here").status == .notFound)
            #expect(try await Self.adminCall(port, .get, "/v1/admin/users/not-a-uuid").status == .notFound)
            #expect(try await Self.adminCall(port, .get, "/v1/admin/users/\(UUID().uuidString.lowercased())").status == .notFound)
            #expect(try await Self.adminCall(port, .get, "/v1/verify").status == .notFound)
            #expect(try await Self.adminCall(port, .post, "/v1/admin/users").status == .methodNotAllowed)
        }
        #expect(throws: ConfigurationError.self) { try ServiceConfiguration(environment: ["ADMIN_PORT": "9999"], arguments: []) }
        #expect(throws: ConfigurationError.self) {
            try ServiceConfiguration(environment: ["ADMIN_PORT": "9999", "ADMIN_CLIENTS": "ops:short"], arguments: [])
        }
    }

    @Test func anOperatorEndsDisablesResetsAndDeletesAcrossInstances() async throws {
        let (configuration, port) = try await Self.configuration()
        try await Instances.with(Self.two(configuration)) { clients in
            let (a, b) = (clients[0], clients[1])
            let name = uniqueName("Op")
            let user = try await a.register(name)
            let tokens = [try await a.login(name), try await b.login(name)]
            for token in tokens { for client in clients { #expect(try await client.call(.get, "/v1/verify", token: token).status == .ok) } }

            let found = try await Self.adminCall(port, .get, "/v1/admin/users?username=\(name.uppercased())")
            #expect(found.status == .ok && found.json["user_id"] as? String == user && found.json["username"] as? String == name)
            #expect(found.json["disabled"] as? Bool == false && found.json["sessions"] as? Int == 2 && found.json["created_at"] is String)
            let listed = try await Self.adminCall(port, .get, "/v1/admin/users/\(user)/sessions?limit=1")
            #expect((listed.json["sessions"] as? [[String: Any]])?.count == 1 && listed.json["next_cursor"] is String)
            #expect((listed.json["sessions"] as? [[String: Any]])?.first?["current"] == nil)

            // One session, then all of them.
            let sessionID = try await a.call(.get, "/v1/session", token: tokens[0]).json["session_id"] as? String ?? ""
            #expect(try await Self.adminCall(port, .delete, "/v1/admin/users/\(user)/sessions/\(sessionID)").status == .noContent)
            #expect(try await Self.adminCall(port, .delete, "/v1/admin/users/\(user)/sessions/\(sessionID)").status == .notFound)
            #expect(try await b.verifyAfterRevocation(token: tokens[0]).status == .unauthorized)
            #expect(try await Self.adminCall(port, .delete, "/v1/admin/users/\(user)/sessions").status == .noContent)
            #expect(try await a.verifyAfterRevocation(token: tokens[1]).status == .unauthorized)

            // Disable: every session ends; the right password gets 403 account_disabled, a wrong one still 401.
            let live = try await b.login(name)
            #expect(try await a.call(.get, "/v1/verify", token: live).status == .ok)
            #expect(try await Self.adminCall(port, .post, "/v1/admin/users/\(user)/disable").status == .noContent)
            #expect(try await Self.adminCall(port, .post, "/v1/admin/users/\(user)/disable").status == .noContent)
            #expect(try await a.verifyAfterRevocation(token: live).status == .unauthorized)
            #expect(try await b.call(.get, "/v1/verify", token: live).status == .unauthorized)
            let refused = try await a.call(.post, "/v1/login", json: ["username": name, "password": "correct horse"])
            #expect(refused.status == .forbidden && refused.errorCode == "account_disabled")
            #expect(try await b.call(.post, "/v1/login", json: ["username": name, "password": "wrong horse"]).status == .unauthorized)
            let browser = try await b.call(.post, "/v1/browser/login", json: ["username": name, "password": "correct horse"])
            #expect(browser.status == .forbidden && browser.headers[.setCookie] == nil)
            #expect(try await Self.adminCall(port, .get, "/v1/admin/users/\(user)").json["disabled"] as? Bool == true)
            #expect(try await Self.adminCall(port, .post, "/v1/admin/users/\(user)/enable").status == .noContent)
            #expect(try await Self.adminCall(port, .post, "/v1/admin/users/\(user)/enable").status == .noContent)
            let again = try await a.login(name)

            // Reset: rules apply; every session ends; the new password works.
            let weak = try await Self.adminCall(port, .put, "/v1/admin/users/\(user)/password", json: ["new_password": "short"])
            #expect(weak.status == .badRequest && weak.json["error"] as? String == "invalid_request")
            #expect(
                try await Self.adminCall(port, .put, "/v1/admin/users/\(user)/password", json: ["new_password": "reset horse 1"]).status == .noContent
            )
            #expect(try await b.verifyAfterRevocation(token: again).status == .unauthorized)
            let last = try await b.login(name, "reset horse 1")

            // Delete: nothing of the user is left, and the name is free again.
            #expect(try await Self.adminCall(port, .delete, "/v1/admin/users/\(user)").status == .noContent)
            #expect(try await a.verifyAfterRevocation(token: last).status == .unauthorized)
            #expect(try await Self.adminCall(port, .get, "/v1/admin/users/\(user)").status == .notFound)
            #expect(try await Self.adminCall(port, .delete, "/v1/admin/users/\(user)").status == .notFound)
            let prefix = configuration.sessions.keyPrefix
            let left = try await TestRedis.withClient(try await TestRedis.configuration()) { redis in
                try await redis.send(RedisCommand("KEYS", ["\(prefix)*\(user)*"])).array?.count ?? -1
            }
            #expect(left == 0)
            let tagged = try await TestRedis.withClient(try await TestRedis.configuration()) { redis in
                try await redis.send(RedisCommand("KEYS", ["\(prefix){*}s*"])).array?.count ?? -1
            }
            #expect(tagged == 0, "no session key of the user is left")
            #expect(try await a.call(.post, "/v1/users", json: ["username": name, "password": "correct horse"]).status == .created)
        }
    }

    @Test func hostileBodiesOnTheNewRoutesGet4xxJSONAndChangeNothing() async throws {
        let (configuration, port) = try await Self.configuration(environment: ["LOGIN_MAX_FAILURES_PER_USER": "3"])
        try await Instances.with(1, configuration) { clients in
            let api = clients[0]
            let name = uniqueName()
            let user = try await api.register(name)
            let token = try await api.login(name)
            let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
            let bodies: [(String, String, [UInt8])] = [
                ("malformed JSON", "application/json", Array("{\"current_password\": \"a".utf8)),
                ("not an object", "application/json", Array("[1, 2]".utf8)),
                ("wrong types", "application/json", Array("{\"current_password\": 1, \"new_password\": true}".utf8)),
                (
                    "end_other_sessions not a boolean", "application/json",
                    Array("{\"current_password\": \"correct horse\", \"new_password\": \"another horse\", \"end_other_sessions\": \"yes\"}".utf8)
                ),
                (
                    "a field twice", "application/json",
                    Array("{\"current_password\": \"correct horse\", \"new_password\": \"a\", \"new_password\": \"another horse\"}".utf8)
                ),
                ("nested 10,000 deep", "application/json", Array("{\"current_password\": \(deep)}".utf8)),
                ("invalid UTF-8", "application/json", Array("{\"current_password\": \"".utf8) + [0xFF, 0xFE] + Array("\"}".utf8)),
                (
                    "NUL in the new password", "application/json",
                    Array("{\"current_password\": \"correct horse\", \"new_password\": \"another\\u0000horse\"}".utf8)
                ),
                ("over the body limit", "application/json", Array(repeating: UInt8(ascii: "a"), count: 70_000)),
                ("unsupported media type", "text/xml", Array("<a/>".utf8)),
                ("form with junk", "application/x-www-form-urlencoded", Array("current_password=%ZZ&&=&new_password".utf8)),
            ]
            for (label, type, body) in bodies {
                let response = try await api.executeRequest(
                    uri: "/v1/password", method: .post, headers: [.authorization: "Bearer \(token)", .contentType: type],
                    body: ByteBuffer(bytes: body))
                if type == "application/x-www-form-urlencoded" {
                    // A form (the account page's) lands back on the page with the error.
                    #expect(response.status == .seeOther && response.headers[.location]?.contains("error=") == true, "/v1/password, \(label)")
                } else {
                    #expect((400..<500).contains(response.status.code), "/v1/password, \(label): \(response.status)")
                    #expect(response.errorCode != nil, "/v1/password, \(label): no JSON error")
                }
                // The operator's reset reads only new_password: this body is a valid one there.
                if label == "end_other_sessions not a boolean" { continue }
                let admin = try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
                    var headers = Self.adminHeaders()
                    headers[.contentType] = type
                    return try await client.execute(
                        .init(
                            "/v1/admin/users/\(user)/password", method: .put, authority: "127.0.0.1", headers: headers, body: ByteBuffer(bytes: body))
                    )
                }
                #expect((400..<500).contains(admin.status.code), "admin password, \(label): \(admin.status)")
            }
            // Nothing changed: the password, the session.
            #expect(try await api.call(.get, "/v1/verify", token: token).status == .ok)
            _ = try await api.login(name)

            // Failed operator authentications are throttled per client name: past 3, 429 + Retry-After, right secret or not.
            for _ in 0..<3 {
                #expect(
                    try await Self.adminCall(port, .get, "/v1/admin/users/\(user)", credentials: "ops:wrong-secret-0123456789").status
                        == .unauthorized)
            }
            let throttled = try await Self.adminCall(port, .get, "/v1/admin/users/\(user)")
            #expect(throttled.status == .tooManyRequests && throttled.headers[.retryAfter] != nil)
        }
    }

    /// 50 logins with the right password race a disable, ten times: once the disable has returned no session of the user
    /// is alive, and none of the tokens the logins got is accepted.
    @Test(arguments: ["node", "cluster"])
    func aDisableThatReturnedLeavesNoSessionWhateverLoginsRace(shape: String) async throws {
        let redis = shape == "cluster" ? try await TestRedis.clusterConfiguration() : nil
        let (configuration, port) = try await Self.configuration(
            redis: redis, environment: ["LOGIN_MAX_FAILURES": "1000000", "LOGIN_MAX_FAILURES_PER_USER": "1000000", "MAX_SESSIONS_PER_USER": "1000"])
        try await Instances.with(Self.two(configuration)) { clients in
            for round in 0..<10 {
                let name = uniqueName("race")
                let user = try await clients[0].register(name)
                let tokens = try await withThrowingTaskGroup(of: String?.self) { group in
                    for index in 0..<50 {
                        group.addTask {
                            let response = try await clients[index % 2].call(
                                .post, "/v1/login", json: ["username": name, "password": "correct horse"])
                            #expect(response.status == .ok || response.errorCode == "account_disabled", "\(response.status)")
                            return response.json["token"] as? String
                        }
                    }
                    group.addTask {
                        try await Task.sleep(for: .milliseconds(Int.random(in: 0...40)))
                        #expect(try await Self.adminCall(port, .post, "/v1/admin/users/\(user)/disable").status == .noContent)
                        let object = try await Self.adminCall(port, .get, "/v1/admin/users/\(user)").json
                        #expect(object["sessions"] as? Int == 0, "round \(round): sessions alive right after the disable returned")
                        return nil
                    }
                    var tokens: [String] = []
                    for try await token in group { if let token { tokens.append(token) } }
                    return tokens
                }
                #expect(try await Self.adminCall(port, .get, "/v1/admin/users/\(user)").json["sessions"] as? Int == 0)
                for token in tokens {
                    for client in clients { #expect(try await client.verifyAfterRevocation(token: token).status == .unauthorized) }
                }
            }
        }
    }
}

/// Sessions that say where they are (issue 24, item 2): the address and User-Agent recorded at login, a device label
/// derived from it, shown by `GET /v1/session` and `GET /v1/sessions` — and never read by a verification.
@Suite struct SessionMetadataTests {
    @Test(arguments: [
        ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36", "Chrome on Android"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Safari on iPhone"
        ),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0", "Edge on Windows"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari on macOS"),
        ("curl/7.88.1", "curl"),
        ("", "Unknown device"),
        ("something/1.0", "Unknown device"),
    ])
    func deviceLabels(userAgent: String, label: String) {
        #expect(DeviceLabel.of(userAgent) == label)
    }

    @Test func theUserAgentIsCutAt256BytesWithoutControlCharacters() {
        let metadata = SessionMetadata(ip: "203.0.113.9", userAgent: "a\u{0}b\u{7}c\r\n" + String(repeating: "é", count: 300))
        #expect(metadata.userAgent.hasPrefix("abc"))
        #expect(metadata.userAgent.utf8.count <= 256 && metadata.userAgent.utf8.count >= 255)
        #expect(!metadata.userAgent.unicodeScalars.contains { $0.properties.generalCategory == .control })
    }

    @Test func loginRecordsWhereAndTheSessionsSayItWithoutTouchingVerification() async throws {
        let agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0 " + String(repeating: "x", count: 39)
        #expect(agent.utf8.count == 110)
        let configuration = try await Instances.configuration()
        try await Instances.with(2, configuration) { clients in
            let name = uniqueName()
            try await clients[0].register(name)
            let token = try await clients[0].login(name, headers: [.userAgent: agent])
            let curl = try await clients[1].login(name, headers: [.userAgent: "curl/8.5.0"])
            for client in clients { #expect(try await client.call(.get, "/v1/verify", token: token).status == .ok) }
            let current = try await clients[1].call(.get, "/v1/session", token: token).json
            #expect(current["ip"] as? String == "127.0.0.1")
            #expect(current["user_agent"] as? String == agent)
            #expect(current["device"] as? String == "Firefox on Linux")
            #expect(current["authenticated_at"] as? String == current["created_at"] as? String)
            let listed = try await clients[0].call(.get, "/v1/sessions", token: curl).json["sessions"] as? [[String: Any]] ?? []
            #expect(Set(listed.compactMap { $0["device"] as? String }) == ["Firefox on Linux", "curl"])
            #expect(listed.allSatisfy { $0["ip"] as? String == "127.0.0.1" && $0["authenticated_at"] is String })

            // One string per session: 28 bytes, then where it was started. Its whole footprint in Redis.
            let parsed = try #require(SessionToken(token))
            let key = KeySchema(prefix: configuration.sessions.keyPrefix).session(parsed.sessionID, tag: parsed.tag)
            let bytes = try await TestRedis.withClient(try await TestRedis.configuration()) { redis in
                try await redis.send(RedisCommand("MEMORY", ["USAGE", key, "SAMPLES", "0"])).int ?? 0
            }
            #expect(bytes > 0 && bytes <= 400, "\(bytes) bytes for a session with a 110-byte User-Agent")
            // Logout takes it all: one key.
            #expect(try await clients[1].call(.post, "/v1/logout", token: token).status == .noContent)
            let left = try await TestRedis.withClient(try await TestRedis.configuration()) { redis in
                try await redis.send(RedisCommand("EXISTS", [key])).int ?? -1
            }
            #expect(left == 0)
        }
    }
}
