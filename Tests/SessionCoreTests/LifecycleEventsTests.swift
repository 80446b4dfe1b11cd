import Foundation
import TestSupport
import Testing

@testable import Redis
@testable import SessionCore

/// Lifecycle events on real Redis: recorded by the scripts that make the changes, with their fields, on the user's
/// list and on the delivery stream — and on a Cluster through the outboxes.
@Suite struct LifecycleEventsTests {
    struct Fixture {
        let redis: RedisClient
        let events: LifecycleEvents
        let store: RedisSessionStore
    }

    /// A store over a key prefix of its own (nothing shared is flushed): its own stream and lists.
    static func withStore(
        _ configuration: RedisConfiguration, maxSessionsPerUser: Int = 100, _ body: @Sendable (Fixture) async throws -> Void
    ) async throws {
        try await TestRedis.withClient(configuration) { redis in
            let prefix = "ev\(UUID().uuidString.prefix(8)):"
            let events = LifecycleEvents(redis: redis, keyPrefix: prefix, maxStreamLength: 1000)
            let store = RedisSessionStore(
                redis: redis, configuration: .init(keyPrefix: prefix, maxSessionsPerUser: maxSessionsPerUser), events: events)
            try await body(Fixture(redis: redis, events: events, store: store))
        }
    }

    /// The delivery stream's events, oldest first.
    static func stream(_ fixture: Fixture) async throws -> [[String: Any]] {
        let reply = try await fixture.redis.send(RedisCommand("XRANGE", [fixture.events.streamKey, "-", "+"]))
        return (reply.array ?? []).compactMap { entry in
            entry.array?.last?.array?.last?.string.flatMap(Self.object)
        }
    }

    static func object(_ json: String) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
    }

    static func recent(_ fixture: Fixture, _ user: UserID) async throws -> [[String: Any]] {
        try await fixture.events.recent(of: user).compactMap(Self.object)
    }

    static let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"

    @Test func everySessionAndAccountChangeRecordsItsEventsWithTheirFields() async throws {
        try await Self.withStore(try await TestRedis.configuration(), maxSessionsPerUser: 2) { fixture in
            let store = fixture.store
            let user = UserID.random()
            let here = SessionMetadata(ip: "203.0.113.7", userAgent: Self.firefox)
            let first = try await store.create(for: user, expecting: nil, metadata: here, level: .password)
            let second = try await store.create(
                for: user, expecting: nil, metadata: SessionMetadata(ip: "198.51.100.9", userAgent: "curl/8.0"), level: .secondFactor)
            // The cap (2): a third login ends the oldest.
            let third = try await store.create(for: user, expecting: nil, metadata: here, level: .password)
            #expect(try await store.revoke(second.session.id, of: user, ending: SessionEnd(.logout, origin: EventOrigin(ip: "198.51.100.9"))))
            #expect(try await !store.revoke(second.session.id, of: user, ending: SessionEnd(.logout)), "a second logout records nothing")
            try await store.changeAccount(of: user, .credentials, keeping: nil, origin: EventOrigin(ip: "203.0.113.7", userAgent: Self.firefox))
            _ = try await store.create(for: user, expecting: nil, metadata: here, level: .password)
            let admin = EventOrigin(ip: "10.0.0.1", adminClient: "ops")
            try await store.changeAccount(of: user, .disable, keeping: nil, origin: admin)
            try await store.changeAccount(of: user, .enable, keeping: nil, origin: admin)

            let recent = try await Self.recent(fixture, user)
            let types = recent.reversed().map { "\($0["type"] ?? "")/\($0["reason"] ?? "")" }
            #expect(
                types == [
                    "session.created/", "session.created/", "session.created/", "session.ended/evicted", "session.ended/logout",
                    "password.changed/", "session.ended/password_changed", "session.created/", "account.disabled/",
                    "session.ended/account_disabled", "account.enabled/",
                ], "\(types)")
            // The same events, in the same order, on the delivery stream.
            let streamed = try await Self.stream(fixture)
            #expect(streamed.map { $0["id"] as? String } == recent.reversed().map { $0["id"] as? String })
            // Fields: ids unique, times RFC 3339, the user on each, the session where one is meant.
            let ids = Set(recent.compactMap { $0["id"] as? String })
            #expect(ids.count == recent.count)
            for event in recent {
                #expect((event["time"] as? String)?.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression) != nil)
                #expect(event["user_id"] as? String == user.text)
            }
            let created = recent.reversed().filter { $0["type"] as? String == "session.created" }
            #expect(created[0]["session_id"] as? String == first.session.id.hex)
            #expect(created[0]["ip"] as? String == "203.0.113.7" && created[0]["device"] as? String == "Firefox on Linux")
            #expect(created[0]["new_device"] as? Bool == true)
            #expect(created[1]["new_device"] as? Bool == true, "another address and another device")
            #expect(created[2]["new_device"] as? Bool == false, "seen before")
            #expect(created[2]["session_id"] as? String == third.session.id.hex)
            let evicted = recent.first { $0["reason"] as? String == "evicted" }
            #expect(evicted?["session_id"] as? String == first.session.id.hex)
            let disabled = recent.first { $0["type"] as? String == "account.disabled" }
            #expect(disabled?["admin_client"] as? String == "ops" && disabled?["ip"] as? String == "10.0.0.1")
            // Nothing secret: no token anywhere in what was recorded.
            let everything = try await fixture.events.recent(of: user).joined()
            for token in [first.token, second.token, third.token] { #expect(!everything.contains(token.text)) }
        }
    }

    @Test func aDeletionRecordsItsEventThenLeavesNothingOfTheUser() async throws {
        try await Self.withStore(try await TestRedis.configuration()) { fixture in
            let user = UserID.random()
            let session = try await fixture.store.create(for: user).session
            try await fixture.store.revokeAll(for: user, ending: SessionEnd(.revokedAll))
            _ = try await fixture.store.create(for: user)
            try await fixture.store.changeAccount(of: user, .delete, keeping: nil, origin: EventOrigin(adminClient: "ops"))
            #expect(try await Self.recent(fixture, user).first?["type"] as? String == "session.ended")
            try await fixture.store.changeAccount(of: user, .purge, keeping: nil, origin: .none)
            #expect(try await fixture.events.recent(of: user).isEmpty, "the list goes with the user")
            let streamed = try await Self.stream(fixture).map { "\($0["type"] ?? "")/\($0["reason"] ?? "")" }
            #expect(
                streamed == [
                    "session.created/", "session.ended/revoked_all", "session.created/", "account.deleted/", "session.ended/admin",
                ], "\(streamed)")
            #expect(try await Self.stream(fixture)[1]["session_id"] as? String == session.id.hex)
        }
    }

    @Test func aFailedLoginOfAnUnknownNameNamesNoUser() async throws {
        try await Self.withStore(try await TestRedis.configuration()) { fixture in
            let known = UserID.random()
            await fixture.events.recordLoginFailure(user: nil, reason: .invalidCredentials, origin: EventOrigin(ip: "192.0.2.1"))
            await fixture.events.recordLoginFailure(user: known, reason: .invalidCredentials, origin: EventOrigin(ip: "192.0.2.1"))
            let streamed = try await Self.stream(fixture)
            #expect(streamed.count == 2)
            #expect(streamed[0]["user_id"] == nil && streamed[0]["reason"] as? String == "invalid_credentials")
            #expect(Set(streamed[0].keys) == Set(streamed[1].keys).subtracting(["user_id"]), "the same fields but the user")
            #expect(try await Self.recent(fixture, known).count == 1)
        }
    }

    @Test func eventsOffRecordNothing() async throws {
        try await TestRedis.withClient(try await TestRedis.configuration()) { redis in
            let prefix = "ev\(UUID().uuidString.prefix(8)):"
            let events = LifecycleEvents(redis: redis, keyPrefix: prefix, maxStreamLength: 1000, enabled: false)
            let store = RedisSessionStore(redis: redis, configuration: .init(keyPrefix: prefix), events: events)
            let user = UserID.random()
            let token = try await store.create(for: user).token
            #expect(try await store.revoke(token.sessionID, of: user, ending: SessionEnd(.logout)))
            #expect(try await redis.send(RedisCommand("EXISTS", [events.streamKey, events.activityKey(user)])).int == 0)
        }
    }

    /// Cluster: the change writes its slot's outbox atomically; the instance moves it right after, or a sweep does
    /// when the instance died in between — exactly once either way.
    @Test func onAClusterOutboxesReachTheStreamExactlyOnce() async throws {
        try await Self.withStore(try await TestRedis.clusterConfiguration()) { fixture in
            #expect(fixture.events.usesOutboxes)
            let user = UserID.random()
            let token = try await fixture.store.create(for: user).token
            #expect(try await fixture.store.revoke(token.sessionID, of: user, ending: SessionEnd(.logout)))
            #expect(try await Self.stream(fixture).map { $0["type"] as? String } == ["session.created", "session.ended"])
            // An instance that died after its change and before its move: the event waits in the outbox…
            let orphan = UserID.random()
            let event = LifecycleEvent(.loginFailed, user: orphan, reason: "invalid_credentials")
            _ = try await fixture.redis.evaluate(
                LifecycleEvents.recordScript, keys: fixture.events.scriptKeys(for: orphan), arguments: fixture.events.scriptArguments(event))
            #expect(try await Self.stream(fixture).count == 2)
            // …until a sweep moves it; a second sweep and a late move of the same entry add nothing.
            let outbox = fixture.events.outboxKey(orphan.tag)
            let entries = try await fixture.redis.send(RedisCommand("XRANGE", [outbox, "-", "+"]))
            #expect(await fixture.events.sweepOutboxes() >= 1)
            #expect(await fixture.events.sweepOutboxes() == 0)
            // A mover that read the entry before the sweep deleted it moves it again: the marker makes that a no-op.
            for entry in entries.array ?? [] {
                let json = try #require(entry.array?.last?.array?.last?.string)
                let id = try #require(LifecycleEvents.eventID(json))
                let moved = try await fixture.redis.evaluate(
                    LifecycleEvents.moveScript, keys: [fixture.events.streamKey, fixture.events.movedKey(id)], arguments: [json, "1000"])
                #expect(moved.int == 0)
            }
            let streamed = try await Self.stream(fixture)
            #expect(streamed.map { $0["type"] as? String } == ["session.created", "session.ended", "login.failed"])
            #expect(streamed[2]["user_id"] as? String == orphan.text)
            #expect(try await fixture.redis.send(RedisCommand("XLEN", [outbox])).int == 0)
        }
    }
}
