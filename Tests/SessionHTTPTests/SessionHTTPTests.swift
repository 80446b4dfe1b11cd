// Over 300 lines: the HTTP contract end to end on real instances — each route's statuses and JSON, across
// instances — sharing the instance fixtures; the concern-specific suites live in their own files.

import AccessTokens
import ArgumentParser
import Foundation
import HTTPTestSupport
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Redis
import ServiceSettings
import SessionCore
import TestSupport
import Testing

@testable import SessionHTTP

@Suite struct AccountEndpointTests {
    @Test func registerValidatesAndRejectsDuplicatesCaseInsensitively() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let api = clients[0]
            let name = uniqueName("Alice")
            let created = try await api.call(.post, "/v1/users", json: ["username": name, "password": "correct horse"])
            #expect(created.status == .created)
            #expect(created.json["username"] as? String == name)
            #expect(UserID(created.json["user_id"] as? String ?? "") != nil)
            let duplicate = try await api.call(.post, "/v1/users", json: ["username": name.uppercased(), "password": "correct horse"])
            #expect(duplicate.status == .conflict)
            #expect(duplicate.errorCode == "username_taken")
            for (username, password) in [("ab", "correct horse"), ("bad name", "correct horse"), (uniqueName(), "short")] {
                let bad = try await api.call(.post, "/v1/users", json: ["username": username, "password": password])
                #expect(bad.status == .badRequest)
                #expect(bad.errorCode == "invalid_request")
            }
        }
    }

    @Test func closedRegistrationIsRefused() async throws {
        try await Instances.with(1, try await Instances.configuration { $0.registrationOpen = false }) { clients in
            let response = try await clients[0].call(.post, "/v1/users", json: ["username": uniqueName(), "password": "correct horse"])
            #expect(response.status == .forbidden)
            #expect(response.errorCode == "registration_closed")
        }
    }

    @Test func loginIssuesAUUIDv4TokenWithNoStore() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let api = clients[0]
            let name = uniqueName()
            let userID = try await api.register(name)
            let response = try await api.call(.post, "/v1/login", json: ["username": name.uppercased(), "password": "correct horse"])
            #expect(response.status == .ok)
            #expect(response.headers[.cacheControl] == "no-store")
            let token = try #require(response.json["token"] as? String)
            #expect(SessionToken(token) != nil)
            #expect(response.json["token_type"] as? String == "Bearer")
            #expect(response.json["user_id"] as? String == userID)
            #expect((1795...1800).contains(response.json["expires_in"] as? Int ?? 0))
            // Form-encoded logins work too.
            let form = try await api.executeRequest(
                uri: "/v1/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                body: ByteBuffer(string: "username=\(name)&password=correct+horse")
            )
            #expect(form.status == .ok)
            #expect(form.json["token"] as? String != token)
        }
    }

    @Test func unknownUserAndWrongPasswordLookTheSame() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let api = clients[0]
            let name = uniqueName()
            try await api.register(name)
            let wrong = try await api.call(.post, "/v1/login", json: ["username": name, "password": "wrong password"])
            let unknown = try await api.call(.post, "/v1/login", json: ["username": uniqueName(), "password": "wrong password"])
            #expect(wrong.status == .unauthorized)
            #expect(unknown.status == .unauthorized)
            #expect(wrong.body == unknown.body)
            #expect(wrong.errorCode == "invalid_credentials")
        }
    }

    @Test func concurrentLoginsGiveDistinctWorkingTokens() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let api = clients[0]
            let name = uniqueName()
            try await api.register(name)
            let tokens = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<20 { group.addTask { try await api.login(name) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(tokens).count == 20)
            for token in tokens { #expect(try await api.call(.get, "/v1/verify", token: token).status == .ok) }
            let list = try await api.call(.get, "/v1/sessions", token: tokens[0])
            #expect((list.json["sessions"] as? [[String: Any]])?.count == 20)
        }
    }
}

@Suite struct SharedSessionTests {
    @Test func aTokenFromOneInstanceWorksOnAllAndLogoutOnOneEndsItOnAll() async throws {
        try await Instances.with(3, try await Instances.configuration()) { clients in
            let (a, b, c) = (clients[0], clients[1], clients[2])
            let name = uniqueName()
            let userID = try await a.register(name)
            let token = try await a.login(name)
            for instance in [a, b, c] {
                let response = try await instance.call(.get, "/v1/verify", token: token)
                #expect(response.status == .ok)
                #expect(response.headers[HTTPField.Name("X-User-Id")!] == userID)
                #expect(response.headers[HTTPField.Name("X-Session-Id")!]?.count == 32)
            }
            #expect(try await c.call(.post, "/v1/logout", token: token).status == .noContent)
            for instance in [a, b, c] {
                let response = try await instance.verifyAfterRevocation(token: token)
                #expect(response.status == .unauthorized)
                #expect(response.errorCode == "invalid_token")
            }
        }
    }

    @Test func sessionListingAndRevocation() async throws {
        try await Instances.with(2, try await Instances.configuration()) { clients in
            let (a, b) = (clients[0], clients[1])
            let name = uniqueName()
            let userID = try await a.register(name)
            let first = try await a.login(name)
            let second = try await b.login(name)
            let third = try await a.login(name)

            let current = try await b.call(.get, "/v1/session", token: second)
            #expect(current.status == .ok)
            #expect(current.json["user_id"] as? String == userID)
            #expect(current.json["username"] as? String == name)
            let secondID = try #require(current.json["session_id"] as? String)
            for field in ["created_at", "expires_at"] {
                let text = try #require(current.json[field] as? String)
                #expect(text.hasSuffix("Z"))
                #expect(ISO8601DateFormatter.withFractions.date(from: text) != nil, "\(field)=\(text) is not RFC 3339")
            }
            #expect(!secondID.contains(second.replacingOccurrences(of: "-", with: "").prefix(8)))

            let listed = try await a.call(.get, "/v1/sessions", token: first)
            let sessions = try #require(listed.json["sessions"] as? [[String: Any]])
            #expect(sessions.count == 3)
            #expect(sessions.filter { $0["current"] as? Bool == true }.count == 1)
            for session in sessions {
                for field in ["session_id", "created_at", "last_seen_at", "expires_at"] { #expect(session[field] is String) }
            }

            // Another user cannot end my session.
            let intruderName = uniqueName()
            try await a.register(intruderName)
            let intruder = try await a.login(intruderName)
            let foreign = try await b.call(.delete, "/v1/sessions/\(secondID)", token: intruder)
            #expect(foreign.status == .notFound)
            #expect(foreign.errorCode == "not_found")
            #expect(try await a.call(.get, "/v1/verify", token: second).status == .ok)

            #expect(try await b.call(.delete, "/v1/sessions/\(secondID)", token: first).status == .noContent)
            #expect(try await a.verifyAfterRevocation(token: second).status == .unauthorized)
            #expect(try await a.call(.delete, "/v1/sessions/\(secondID)", token: first).status == .notFound)
            #expect(try await a.call(.delete, "/v1/sessions/not-hex", token: first).status == .notFound)

            #expect(try await b.call(.delete, "/v1/sessions", token: third).status == .noContent)
            for token in [first, third] {
                for instance in [a, b] { #expect(try await instance.verifyAfterRevocation(token: token).status == .unauthorized) }
            }
            #expect(try await a.call(.get, "/v1/verify", token: intruder).status == .ok)
        }
    }

    @Test func idleAndAbsoluteExpiryOnEveryInstance() async throws {
        let configuration = try await Instances.configuration {
            $0.sessions.idleTimeout = .seconds(2)
            $0.sessions.absoluteTimeout = .seconds(5)
        }
        try await Instances.with(2, configuration) { clients in
            let (a, b) = (clients[0], clients[1])
            let name = uniqueName()
            try await a.register(name)
            let clock = ContinuousClock()
            let idle = try await a.login(name)
            let idleLoggedIn = clock.now
            let busy = try await a.login(name)
            let busyLoggedIn = clock.now
            // The busy one is used every 400 ms on alternating instances and stays alive past the idle timeout. Asserted by
            // what the timeout promises, not by a stopwatch: a use that follows the previous one's request by less than the
            // idle timeout must find the session alive (a loaded machine can only stretch the gaps, so a late round checks
            // nothing rather than failing).
            var previousSent = clock.now
            var checked = 0
            for round in 0..<7 {
                try await Task.sleep(for: .milliseconds(400))
                let sent = clock.now
                let status = try await [a, b][round % 2].call(.get, "/v1/verify", token: busy).status
                if clock.now - previousSent < .milliseconds(1900) {
                    #expect(status == .ok, "round \(round)")
                    checked += 1
                }
                if status != .ok { break }
                previousSent = sent
            }
            #expect(checked >= 1)
            // ...while the idle one died 2 s after its login.
            while clock.now - idleLoggedIn < .milliseconds(2300) { try await Task.sleep(for: .milliseconds(100)) }
            #expect(try await b.call(.get, "/v1/verify", token: idle).status == .unauthorized)
            #expect(try await a.call(.get, "/v1/verify", token: idle).status == .unauthorized)
            // Past the absolute timeout even the busy one ends, whatever its activity.
            while clock.now - busyLoggedIn < .milliseconds(5300) {
                try await Task.sleep(for: .milliseconds(400))
                _ = try await a.call(.get, "/v1/verify", token: busy)
            }
            #expect(try await a.call(.get, "/v1/verify", token: busy).status == .unauthorized)
            #expect(try await b.call(.get, "/v1/verify", token: busy).status == .unauthorized)
        }
        // Every session key and the index are gone by themselves.
        try await TestRedis.withClient(try await RedisConfiguration(url: TestRedis.url())) { (redis: RedisClient) async throws in
            let leftovers = try await redis.scan(match: "\(configuration.sessions.keyPrefix)[sx]:*", count: 1000).keys
            #expect(leftovers.isEmpty)
        }
    }

    @Test func throttlingIsSharedAcrossInstancesAndIgnoresUntrustedForwardedFor() async throws {
        let configuration = try await Instances.configuration {
            $0.loginMaxFailures = 3
            $0.loginFailureWindow = .seconds(60)
        }
        try await Instances.with(3, configuration) { clients in
            let name = uniqueName()
            try await clients[0].register(name)
            for (index, client) in clients.enumerated() {
                // A different X-Forwarded-For each time: ignored, because the peer (127.0.0.1) is not a trusted proxy.
                let response = try await client.call(
                    .post, "/v1/login", json: ["username": name, "password": "wrong password"],
                    headers: [HTTPField.Name("X-Forwarded-For")!: "203.0.113.\(index)"]
                )
                #expect(response.status == .unauthorized)
            }
            let blocked = try await clients[1].call(.post, "/v1/login", json: ["username": name, "password": "correct horse"])
            #expect(blocked.status == .tooManyRequests)
            #expect(blocked.errorCode == "too_many_attempts")
            #expect((50...60).contains(Int(blocked.headers[.retryAfter] ?? "") ?? 0))
        }
    }

    @Test func trustedProxiesForwardTheClientAddress() async throws {
        let configuration = try await Instances.configuration {
            $0.loginMaxFailures = 2
            $0.trustedProxies = try! TrustedProxies(parsing: "127.0.0.1, ::1")
        }
        try await Instances.with(1, configuration) { clients in
            let api = clients[0]
            let name = uniqueName()
            try await api.register(name)
            let from = { (address: String) in [HTTPField.Name("X-Forwarded-For")!: address] as HTTPFields }
            for _ in 0..<2 {
                _ = try await api.call(.post, "/v1/login", json: ["username": name, "password": "wrong password"], headers: from("198.51.100.7"))
            }
            let blocked = try await api.call(
                .post, "/v1/login", json: ["username": name, "password": "correct horse"], headers: from("198.51.100.7"))
            #expect(blocked.status == .tooManyRequests)
            // Another client behind the same proxy is not blocked, and a success resets its count.
            _ = try await api.login(name, headers: from("198.51.100.8"))
        }
    }
}

@Suite struct ProtocolTests {
    @Test func missingMalformedAndRepeatedAuthorization() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let api = clients[0]
            let missing = try await api.call(.get, "/v1/session")
            #expect(missing.status == .unauthorized)
            #expect(missing.errorCode == "missing_token")
            #expect(missing.headers[.wwwAuthenticate]?.hasPrefix("Bearer realm=") == true)
            for value in ["Bearer nope", "Bearer 6FCC52A0-34F2-4734-950E-B757473493CB", "bearer " + String(repeating: "a", count: 300)] {
                let malformed = try await api.call(.get, "/v1/verify", headers: [.authorization: value])
                #expect(malformed.status == .unauthorized)
                #expect(malformed.errorCode == "invalid_token")
                #expect(malformed.headers[.wwwAuthenticate]?.contains("error=\"invalid_token\"") == true)
            }
            let unknown = try await api.call(.get, "/v1/verify", token: SessionToken.random().text)
            #expect(unknown.errorCode == "invalid_token")
            let basic = try await api.call(.get, "/v1/verify", headers: [.authorization: "Basic YWxhZGRpbjpvcGVuc2VzYW1l"])
            #expect(basic.errorCode == "missing_token")
            var repeated = HTTPFields()
            repeated.append(HTTPField(name: .authorization, value: "Bearer \(SessionToken.random().text)"))
            repeated.append(HTTPField(name: .authorization, value: "Bearer \(SessionToken.random().text)"))
            let twice = try await api.executeRequest(uri: "/v1/verify", method: .get, headers: repeated, body: nil)
            #expect(twice.status == .badRequest)
        }
    }

    /// JSON routes read JSON only when it is labelled so (or a form when it is one); a key twice is refused, since
    /// a proxy's parser and ours could each read a different one.
    @Test func bodiesNeedTheirMediaTypeAndOneOfEachKey() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let api = clients[0]
            let json = ByteBuffer(string: #"{"username":"x-user","password":"correct horse"}"#)
            for type in [nil, "text/plain", "application/xml"] as [String?] {
                var headers = HTTPFields()
                if let type { headers[.contentType] = type }
                let response = try await api.executeRequest(uri: "/v1/login", method: .post, headers: headers, body: json)
                #expect(response.status == .unsupportedMediaType, "\(type ?? "none")")
                #expect(response.errorCode == "unsupported_media_type")
            }
            for duplicate in [
                #"{"username":"a-user","password":"correct horse","username":"b-user"}"#,
                #"{"username":"a-user","user\u006eame":"b-user","password":"correct horse"}"#,
            ] {
                let response = try await api.executeRequest(
                    uri: "/v1/users", method: .post, headers: [.contentType: "application/json; charset=utf-8"], body: ByteBuffer(string: duplicate)
                )
                #expect(response.status == .badRequest, "\(duplicate)")
            }
            // Nested objects may repeat their own keys' names at the top level without being duplicates.
            let nested = try await api.executeRequest(
                uri: "/v1/users", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: #"{"meta":{"username":1},"username":"\#(uniqueName())","password":"correct horse"}"#)
            )
            #expect(nested.status == .created)
        }
    }

    /// `GET /v1/sessions` pages with `limit` and `cursor`; bad ones are 400.
    @Test func sessionListIsPaged() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let api = clients[0]
            let name = uniqueName()
            try await api.register(name)
            var token = ""
            for _ in 0..<3 { token = try await api.login(name) }
            var ids: [String] = []
            var cursor: String?
            repeat {
                let uri = "/v1/sessions?limit=2" + (cursor.map { "&cursor=\($0)" } ?? "")
                let page = try await api.call(.get, uri, token: token)
                #expect(page.status == .ok)
                ids += (page.json["sessions"] as? [[String: Any]] ?? []).compactMap { $0["session_id"] as? String }
                cursor = page.json["next_cursor"] as? String
                #expect(page.json.keys.contains("next_cursor"))
            } while cursor != nil && ids.count < 10
            #expect(ids.count == 3 && Set(ids).count == 3)
            for bad in ["?limit=0", "?limit=101", "?limit=x", "?cursor=nope"] {
                let response = try await api.call(.get, "/v1/sessions" + bad, token: token)
                #expect(response.status == .badRequest, "\(bad)")
            }
        }
    }

    @Test func unknownRoutesWrongMethodsAndBadBodies() async throws {
        try await Instances.with(1, try await Instances.configuration { $0.maxBodySize = 1024 }) { clients in
            let api = clients[0]
            let notFound = try await api.call(.get, "/nope")
            #expect(notFound.status == .notFound)
            #expect(notFound.errorCode == "not_found")
            let wrongMethod = try await api.call(.get, "/v1/login")
            #expect(wrongMethod.status == .methodNotAllowed)
            #expect(wrongMethod.headers[.allow] == "POST")
            #expect(wrongMethod.headers[.contentType]?.hasPrefix("application/json") == true)
            let tooLarge = try await api.executeRequest(
                uri: "/v1/login", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: "{\"username\":\"" + String(repeating: "a", count: 2000) + "\"}")
            )
            #expect(tooLarge.status == .contentTooLarge)
            for body in ["{", "[]", "{\"username\": 1, \"password\": \"x\"}", "{\"username\":\"a\"}", "", "null"] {
                let bad = try await api.executeRequest(
                    uri: "/v1/users", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: body)
                )
                #expect(bad.status == .badRequest, "\(body)")
                #expect(bad.errorCode == "invalid_request")
            }
            #expect(try await api.call(.get, "/healthz").status == .ok)
        }
    }

    @Test func healthReadinessAndMetrics() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let api = clients[0]
            #expect(try await api.call(.get, "/healthz").status == .ok)
            #expect(try await api.call(.get, "/readyz").status == .ok)
            let metrics = try await api.call(.get, "/metrics")
            #expect(metrics.status == .ok)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain") == true)
        }
    }
}

@Suite struct StoreOutageTests {
    @Test func redisStoppedGives503FastAndServiceRecovers() async throws {
        let server = try await RedisServerProcess.started()
        let configuration = try await Instances.configuration(redisURL: server.url) { $0.redis.commandTimeout = .milliseconds(500) }
        try await Instances.with(2, configuration) { clients in
            let name = uniqueName()
            try await clients[0].register(name)
            let token = try await clients[0].login(name)
            await server.stop()
            let clock = ContinuousClock()
            for client in clients {
                let start = clock.now
                let response = try await client.call(.get, "/v1/verify", token: token)
                #expect(response.status == .serviceUnavailable)
                #expect(response.errorCode == "store_unavailable")
                #expect(clock.now - start < .seconds(1))
                let login = try await client.call(.post, "/v1/login", json: ["username": name, "password": "correct horse"])
                #expect(login.status == .serviceUnavailable)
                #expect(try await client.call(.get, "/readyz").status == .serviceUnavailable)
                #expect(try await client.call(.get, "/healthz").status == .ok)
            }
            try await server.start()
            for client in clients { try await Instances.waitUntilReady(client) }
            // Redis restarted empty (no persistence here): the old token is simply unknown, and new logins work.
            #expect(try await clients[1].call(.get, "/v1/verify", token: token).status == .unauthorized)
            try await clients[1].register(name)
            let fresh = try await clients[1].login(name)
            #expect(try await clients[0].call(.get, "/v1/verify", token: fresh).status == .ok)
        }
        await server.stop()
    }

    @Test func serviceStartedBeforeRedisBecomesReady() async throws {
        let server = try RedisServerProcess()
        let configuration = try await Instances.configuration(redisURL: server.url)
        try await Instances.with(1, configuration, waitForRedis: false) { clients in
            let api = clients[0]
            #expect(try await api.call(.get, "/healthz").status == .ok)
            #expect(try await api.call(.get, "/readyz").status == .serviceUnavailable)
            #expect(try await api.call(.get, "/v1/verify", token: SessionToken.random().text).status == .serviceUnavailable)
            try await server.start()
            try await Instances.waitUntilReady(api)
            try await api.register(uniqueName())
        }
        await server.stop()
    }
}

extension ISO8601DateFormatter {
    nonisolated(unsafe) static let withFractions: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()
}

@Suite struct ConfigurationTests {
    @Test func trustedProxiesParseAndMatch() throws {
        let proxies = try TrustedProxies(parsing: "10.0.0.0/8, 192.168.1.1 ,::1")
        let peer = try SocketAddress(ipAddress: "10.1.2.3", port: 1)
        #expect(proxies.clientAddress(peer: peer, forwardedFor: ["203.0.113.5, 10.9.9.9"]) == "203.0.113.5")
        let untrusted = try SocketAddress(ipAddress: "203.0.113.77", port: 1)
        #expect(proxies.clientAddress(peer: untrusted, forwardedFor: ["198.51.100.1"]) == "203.0.113.77")
    }

    // Found by scripts/fuzz: "/" crashed the parser (an empty split), which would have crashed start-up.
    @Test(arguments: ["/", "/8", "10.0.0.0/", "10.0.0.0/33", "not-an-ip", "::1/129", "1.2.3.4/x"])
    func badTrustedProxiesAreRefusedNotCrashed(list: String) {
        #expect(throws: ConfigurationError.self) { try TrustedProxies(parsing: list) }
    }

    @Test func environmentAndFlagsAreRead() throws {
        let configuration = try ServiceConfiguration(
            environment: ["PORT": "9000", "SESSION_IDLE_TIMEOUT": "60", "REGISTRATION": "closed", "UNRELATED": "x", "VERIFY_FAST_PATH": "off"],
            arguments: ["--port", "9100", "--redis-url=redis://:pw@10.0.0.5:6380/2", "--key-prefix", "app:"]
        )
        #expect(configuration.port == 9100)
        #expect(configuration.sessions.idleTimeout == .seconds(60))
        #expect(configuration.registrationOpen == false)
        #expect(configuration.verifyFastPath == false)
        #expect(configuration.redis.database == 2)
        #expect(configuration.sessions.keyPrefix == "app:")
        let defaults = try ServiceConfiguration(environment: [:], arguments: [])
        #expect(defaults.port == 8080 && defaults.registrationOpen && defaults.verifyFastPath && defaults.warnings.isEmpty)
        for bad in [["--port", "x"], ["--nope", "1"], ["--port", "70000"], ["--redis-url", "http://x"], ["--log-level", "loud"]] {
            #expect(throws: ConfigurationError.self) { try ServiceConfiguration(environment: [:], arguments: bad) }
        }
        let badEnvironment = #expect(throws: ConfigurationError.self) { try ServiceConfiguration(environment: ["PORT": "x"], arguments: []) }
        #expect(badEnvironment?.description.contains("environment") == true)
        let secret = #expect(throws: ConfigurationError.self) {
            try ServiceConfiguration(environment: [:], arguments: ["--redis-url", "redis://:hunter2@host:notaport"])
        }
        #expect(secret?.description.contains("hunter2") == false)
    }

    @Test func highAvailabilitySettingsAreRead() throws {
        let sentinel = try ServiceConfiguration(
            environment: [
                "REDIS_URL": "redis-sentinel://:data@s1,s2:26380/0#mymaster", "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
                "REDIS_MIN_REPLICAS": "2", "REDIS_WAIT_TIMEOUT_MS": "250",
            ],
            arguments: []
        )
        #expect(
            sentinel.redis.topology == .sentinel(masterName: "mymaster", sentinels: [.tcp(host: "s1", port: 26379), .tcp(host: "s2", port: 26380)]))
        #expect(sentinel.redis.sentinelPassword == "sentinel-secret" && sentinel.redis.password == "data")
        #expect(sentinel.redis.effectiveMinReplicas == 2 && sentinel.redis.waitTimeout == .milliseconds(250))
        let cluster = try ServiceConfiguration(environment: ["REDIS_URL": "redis-cluster://a:7000,b:7001"], arguments: [])
        #expect(cluster.redis.effectiveMinReplicas == 1)
        #expect(
            try ServiceConfiguration(environment: ["REDIS_MIN_REPLICAS": "0", "REDIS_URL": "redis-cluster://a"], arguments: []).redis
                .effectiveMinReplicas == 0)
        // TLS files need a rediss URL; a TLS URL needs readable files; neither message repeats a password.
        #expect(throws: ConfigurationError.self) {
            try ServiceConfiguration(environment: ["REDIS_TLS_CA_FILE": "/etc/hostname"], arguments: [])
        }
        let missing = #expect(throws: ConfigurationError.self) {
            try ServiceConfiguration(environment: ["REDIS_URL": "rediss://:hunter2@h", "REDIS_TLS_CA_FILE": "/nonexistent/ca.pem"], arguments: [])
        }
        #expect(missing?.description.contains("hunter2") == false)
        #expect(missing?.description.contains("REDIS_TLS") == true)
    }

    @Test func browserCookieSettingsAreRead() throws {
        let defaults = try ServiceConfiguration(environment: [:], arguments: [])
        #expect(defaults.cookie == SessionCookie() && defaults.cookie.name == "__Host-session" && defaults.accountPage)
        let development = try ServiceConfiguration(
            environment: ["COOKIE_SECURE": "false", "ALLOWED_ORIGINS": "https://app.example, http://localhost:3000", "ACCOUNT_PAGE": "off"],
            arguments: []
        )
        #expect(development.cookie.name == "session" && !development.cookie.secure && !development.accountPage)
        #expect(development.cookie.allowedOrigins == ["https://app.example", "http://localhost:3000"])
        #expect(development.warnings.contains { $0.contains("COOKIE_SECURE") })
        #expect(try ServiceConfiguration(environment: ["COOKIE_NAME": "sid"], arguments: []).cookie.name == "sid")
        for bad in [["COOKIE_NAME": "a b"], ["COOKIE_NAME": "__Host-x", "COOKIE_SECURE": "off"], ["ALLOWED_ORIGINS": "app.example"]] {
            #expect(throws: ConfigurationError.self) { try ServiceConfiguration(environment: bad, arguments: []) }
        }
    }

    /// Every option's flag, as derived for the environment, is one ArgumentParser knows: the names are declared once.
    @Test func everyFlagReadsItsEnvironmentVariable() throws {
        let help = ServiceOptions.helpMessage()
        #expect(ServiceOptions.flags.count == 69)
        for flag in ServiceOptions.flags {
            #expect(help.contains("--\(flag) "), "\(flag)")
        }
        #expect(ServiceOptions.environmentName(ofFlag: "redis-timeout-ms") == "REDIS_TIMEOUT_MS")
        #expect(ServiceOptions.environmentName(ofFlag: "redis-tls-ca-file") == "REDIS_TLS_CA_FILE")
        for (flag, variable) in [
            ("jwt-hs256-secret", "JWT_HS256_SECRET"), ("jwt-ttl", "JWT_TTL"), ("introspection-clients", "INTROSPECTION_CLIENTS"),
        ] {
            #expect(ServiceOptions.flags.contains(flag) && ServiceOptions.environmentName(ofFlag: flag) == variable)
        }
        #expect(ServiceOptions.arguments(fromEnvironment: ["REDIS_URL": "redis://h", "HOME": "/root"]) == ["--redis-url=redis://h"])
    }

    @Test func accessTokenSettingsAreReadAndSecretsNeverEchoed() throws {
        #expect(try ServiceConfiguration(environment: [:], arguments: []).accessTokens == nil)
        let secret = "a-shared-secret-of-at-least-32-bytes!"
        let shared = try ServiceConfiguration(
            environment: ["JWT_HS256_SECRET": secret, "JWT_TTL": "900", "JWT_ISSUER": "https://auth.example", "JWT_AUDIENCE": "orders"],
            arguments: []
        )
        let issuer = try #require(shared.accessTokens)
        #expect(issuer.lifetime == 900 && issuer.issuer == "https://auth.example" && issuer.audience == "orders")
        #expect(issuer.keys.signingAlgorithm == .hs256)
        for (bad, hidden) in [
            (["JWT_HS256_SECRET": "too-short-secret-hunter2"], "hunter2"), (["JWT_TTL": "901"], "901"),
            (["INTROSPECTION_CLIENTS": "gateway-hunter2"], "hunter2"), (["JWT_KEYS_FILE": "/nonexistent/keys.json"], "\u{0}"),
        ] {
            let error = #expect(throws: ConfigurationError.self) { try ServiceConfiguration(environment: bad, arguments: []) }
            #expect(error?.description.contains(hidden) == false, "\(error?.description ?? "")")
        }
        let flagged = #expect(throws: ConfigurationError.self) {
            try ServiceConfiguration(environment: [:], arguments: ["--jwt-hs256-secret=hunter2hunter2", "--port", "x"])
        }
        #expect(flagged?.description.contains("hunter2") == false)
        let clients = try ServiceConfiguration(
            environment: ["INTROSPECTION_CLIENTS": "gw:se:cret-of-sixteen+, api:x-sixteen-chars!"], arguments: [])
        let basic = "Basic " + Data("gw:se:cret-of-sixteen+".utf8).base64EncodedString()
        #expect(clients.introspectionClients.client(authorization: basic) == "gw")
        #expect(clients.introspectionClients.client(authorization: "Basic " + Data("api:x-sixteen-chars!".utf8).base64EncodedString()) == "api")
        #expect(clients.introspectionClients.client(authorization: "Basic " + Data("gw:se".utf8).base64EncodedString()) == nil)
        #expect(!"\(clients.introspectionClients)".contains("cret"))
    }

    /// Only shortening the absolute lifetime must not crash-loop the service: the idle timeout is capped, with a warning.
    @Test func absoluteTimeoutBelowIdleCapsIdle() throws {
        let configuration = try ServiceConfiguration(environment: ["SESSION_ABSOLUTE_TIMEOUT": "900"], arguments: [])
        #expect(configuration.sessions.idleTimeout == .seconds(900))
        #expect(configuration.sessions.absoluteTimeout == .seconds(900))
        #expect(configuration.warnings.count == 1)
    }
}

@Suite struct ReadmeExampleTests {
    /// The README's "use the middleware in your own app" example, compiled and served for real.
    @Test func protectingYourOwnRoutesWorksAsTheReadmeShows() async throws {
        let redis = RedisClient(configuration: try await RedisConfiguration(url: TestRedis.url()))
        let store = RedisSessionStore(redis: redis, configuration: SessionConfiguration(keyPrefix: "ss:readme\(UUID().uuidString.prefix(6)):"))
        let router = Router(context: SessionRequestContext.self)
        router.group("/api").add(middleware: BearerAuthenticator(store: store))
            .get("/me") { _, context in context.session!.userID.text }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), services: [redis])
        try await app.test(.live) { client in
            try await redis.waitUntilConnected()
            let user = UserID.random()
            let (token, _) = try await store.create(for: user)
            let me = try await client.executeRequest(uri: "/api/me", method: .get, headers: [.authorization: "Bearer \(token.text)"], body: nil)
            #expect(me.status == .ok)
            #expect(String(buffer: me.body) == user.text)
            let anonymous = try await client.executeRequest(uri: "/api/me", method: .get, headers: [:], body: nil)
            #expect(anonymous.status == .unauthorized)
            try await store.revokeAll(for: user, ending: SessionEnd(.revokedAll))
        }
    }
}
