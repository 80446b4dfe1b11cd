import Foundation
import Metrics
public import Redis

/// Where lifecycle events are kept, and the Lua that writes them inside the scripts that make the changes.
///
/// - **Per user** (`P{t}e:<user>`, a list in the user's slot, newest first): the last 50 events, written by the same
///   script as the change — a session that exists has its `session.created`, an ended one its `session.ended`.
/// - **For delivery** (`P{events}d`, one stream, trimmed approximately at `EVENTS_MAXLEN`): every event, field `e`
///   = its JSON. On one node and Sentinel the change's script appends to it in the same atomic step. On Cluster the
///   user's slot and the stream's differ, so the script appends to the user slot's **outbox** (`P{t}q`, a stream in the
///   same atomic step), and the outbox is moved to the delivery stream right after the script by the instance that ran
///   it, or — if that instance died in between — by any instance's sweep (`sweepOutboxes`, every 16,384 tags). A move
///   copies each entry once (`P{events}m:<id>`, a marker kept a day, makes a repeated move a no-op) and then deletes
///   it from the outbox: an acknowledged change's event reaches the stream exactly once, however the movers interleave.
public struct LifecycleEvents: Sendable {
    /// Events kept per user.
    public static let perUser = 50
    /// The delivery stream's approximate cap (`EVENTS_MAXLEN`).
    public let maxStreamLength: Int
    let redis: RedisClient
    let prefix: String
    /// Cluster: changes append to their slot's outbox.
    let usesOutbox: Bool
    /// Off: the scripts record nothing (`EVENTS=off`).
    public let enabled: Bool

    public init(redis: RedisClient, keyPrefix: String, maxStreamLength: Int, enabled: Bool = true) {
        self.redis = redis
        self.prefix = keyPrefix
        self.maxStreamLength = maxStreamLength
        self.enabled = enabled
        if case .cluster = redis.configuration.topology { usesOutbox = true } else { usesOutbox = false }
    }

    // MARK: Keys

    func tagged(_ tag: ShardTag) -> String { prefix + "{" + String(decoding: tag.digits, as: UTF8.self) + "}" }
    /// A user's recent events.
    public func activityKey(_ user: UserID) -> String { tagged(user.tag) + "e:" + user.text }
    /// The outbox of a tag's slot (Cluster).
    func outboxKey(_ tag: ShardTag) -> String { tagged(tag) + "q" }
    /// The delivery stream.
    public var streamKey: String { prefix + "{events}d" }
    /// Events whose delivery gave up (`WEBHOOK_MAX_ATTEMPTS`), kept until an operator re-queues them.
    public var failedKey: String { prefix + "{events}f" }
    /// The marker of an event already moved from an outbox.
    func movedKey(_ id: String) -> String { prefix + "{events}m:" + id }

    /// The two keys a recording script takes last: the user's list and where the event goes (stream or outbox).
    func scriptKeys(for user: UserID) -> [String] {
        [activityKey(user), usesOutbox ? outboxKey(user.tag) : streamKey]
    }

    /// The three arguments a recording script takes last: the id base, the event's template, the stream cap ('' for an
    /// outbox, which the move empties).
    func scriptArguments(_ event: LifecycleEvent) -> [String] {
        [Self.newIDBase(), enabled ? event.template : "", usesOutbox ? "" : String(maxStreamLength)]
    }

    /// `evt_` and 24 random hex digits; the script appends two more per event it writes.
    static func newIDBase() -> String {
        var generator = SystemRandomNumberGenerator()
        return "evt_" + Hex.encode((0..<12).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    /// Counts recorded events (`session_events_total{type}`, by the instance that recorded them; a session ended by a
    /// revocation of every session counts as the index listed it).
    func count(_ type: LifecycleEventType, _ n: Int = 1) {
        guard enabled, n > 0 else { return }
        Counter(label: "session_events_total", dimensions: [("type", type.rawValue)]).increment(by: n)
    }

    // MARK: Reading

    /// A user's recent events (JSON objects, newest first).
    public func recent(of user: UserID) async throws(SessionError) -> [String] {
        let reply = try await withStore { try await redis.send(RedisCommand("LRANGE", [activityKey(user), "0", String(Self.perUser - 1)])) }
        return (reply.array ?? []).compactMap(\.string)
    }

    /// Whether changes write their slot's outbox (Cluster), which `sweepOutboxes` must empty now and then.
    public var usesOutboxes: Bool { usesOutbox && enabled }

    // MARK: Dead letters

    /// Events whose delivery gave up, oldest first: `{"event":{…},"attempts":n,"error":"…","failed_at":"…"}` each.
    public func failed(limit: Int = 1000) async throws(SessionError) -> [String] {
        let reply = try await withStore { try await redis.send(RedisCommand("XRANGE", [failedKey, "-", "+", "COUNT", String(limit)])) }
        return (reply.array ?? []).compactMap { item in
            guard let parts = item.array, parts.count == 2, let fields = parts[1].array else { return nil }
            var map: [String: String] = [:]
            var index = 0
            while index + 1 < fields.count {
                if let name = fields[index].string, let value = fields[index + 1].string { map[name] = value }
                index += 2
            }
            guard let event = map["e"] else { return nil }
            let at = Double(map["at"] ?? "0") ?? 0
            let failedAt = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: at))
            let attempts = Int(map["attempts"] ?? "0") ?? 0
            let error = (try? JSONSerialization.data(withJSONObject: [map["error"] ?? ""])).map { String(decoding: $0, as: UTF8.self) } ?? "[\"\"]"
            return "{\"event\":\(event),\"attempts\":\(attempts),\"error\":\(error.dropFirst().dropLast()),\"failed_at\":\"\(failedAt)\"}"
        }
    }

    /// Puts every dead-lettered event back on the delivery stream (new attempts, same event ids); returns how many.
    public func requeueFailed() async throws(SessionError) -> Int {
        let reply = try await withStore {
            try await redis.evaluate(Self.requeueScript, keys: [failedKey, streamKey], arguments: [String(maxStreamLength)], durable: true)
        }
        return Int(reply.int ?? 0)
    }

    /// KEYS: failed, stream. ARGV: the stream cap. Moves up to 10,000 dead letters back; returns how many.
    static let requeueScript = RedisScript(
        name: "webhook_requeue",
        """
        local moved = 0
        for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 10000)) do
            local fields = entry[2]
            for i = 1, #fields, 2 do
                if fields[i] == 'e' then
                    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'e', fields[i + 1])
                    moved = moved + 1
                end
            end
            redis.call('XDEL', KEYS[1], entry[1])
        end
        return moved
        """
    )

    // MARK: Events with no other change

    /// Records a failed login: on the user's list and for delivery when the user is known; for delivery only (no
    /// `user_id`) when not — the same one round trip either way.
    public func recordLoginFailure(user: UserID?, reason: LoginFailureReason, origin: EventOrigin) async {
        guard enabled else { return }
        let event = LifecycleEvent(.loginFailed, user: user, reason: reason.rawValue, origin: origin)
        let keys = user.map(scriptKeys(for:)) ?? [streamKey, streamKey]
        var arguments = scriptArguments(event)
        if user == nil { arguments[2] = String(maxStreamLength) }
        // Best effort: a failed login must not fail louder because its record could not be written.
        if (try? await redis.evaluate(Self.recordScript, keys: keys, arguments: arguments)) != nil { count(.loginFailed) }
        if let user { await moveOutbox(user.tag) }
    }

    /// Records events on their own (a TOTP change whose script has no room for them, say).
    static let recordScript = RedisScript(name: "event", Lua.events + "emit({})\nreturn 1")

    // MARK: Cluster outboxes

    /// Moves a tag's outbox into the delivery stream (Cluster only; best effort — the sweep retries).
    public func moveOutbox(_ tag: ShardTag) async {
        guard usesOutbox, enabled else { return }
        let outbox = outboxKey(tag)
        while let reply = try? await redis.send(RedisCommand("XRANGE", [outbox, "-", "+", "COUNT", "100"])), let entries = reply.array,
            !entries.isEmpty
        {
            var moved: [String] = []
            for entry in entries {
                guard let parts = entry.array, parts.count == 2, let entryID = parts[0].string, let fields = parts[1].array, fields.count == 2,
                    let json = fields[1].string, let id = Self.eventID(json)
                else { continue }
                guard
                    (try? await redis.evaluate(
                        Self.moveScript, keys: [streamKey, movedKey(id)], arguments: [json, String(maxStreamLength)], durable: true)) != nil
                else { return }
                moved.append(entryID)
            }
            guard !moved.isEmpty, (try? await redis.send(RedisCommand("XDEL", [outbox] + moved))) != nil else { return }
        }
    }

    /// Moves every tag's outbox (Cluster): what an instance that died between a change and its move left behind.
    /// Returns the tags that held entries.
    @discardableResult
    public func sweepOutboxes(concurrency: Int = 32) async -> Int {
        guard usesOutbox else { return 0 }
        var found = 0
        await withTaskGroup(of: Bool.self) { group in
            var next: UInt16 = 0
            func add() {
                guard next < 16384 else { return }
                let tag = ShardTag(value: next)
                next += 1
                group.addTask {
                    guard let length = try? await redis.send(RedisCommand("XLEN", [outboxKey(tag)])).int, length > 0 else { return false }
                    await moveOutbox(tag)
                    return true
                }
            }
            for _ in 0..<concurrency { add() }
            while let had = await group.next() {
                if had { found += 1 }
                add()
            }
        }
        return found
    }

    /// Sweeps the outboxes unless another instance did in the last 10 s (a lock in the stream's slot); returns how many
    /// held entries.
    @discardableResult
    public func sweepOutboxesUnlessSwept(by owner: String) async -> Int {
        guard usesOutboxes,
            let reply = try? await redis.send(RedisCommand("SET", [prefix + "{events}l", owner, "NX", "PX", "10000"])), reply.string == "OK"
        else { return 0 }
        return await sweepOutboxes()
    }

    /// KEYS: stream, the event's moved marker. ARGV: the event's JSON, the stream cap. Appends unless already moved.
    static let moveScript = RedisScript(
        name: "event_move",
        """
        if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', 86400000) then return 0 end
        redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
        return 1
        """
    )

    /// The `id` of an event's JSON.
    static func eventID(_ json: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return nil }
        return object["id"] as? String
    }

    private func withStore<T>(_ body: () async throws -> T) async throws(SessionError) -> T {
        do { return try await body() } catch { throw SessionError.storeUnavailable(error as? RedisError) }
    }
}

extension Lua {
    /// Defines `emit(fields)`, which completes the script's event template with `fields` (type, reason, session_id…),
    /// an `id` and the `time`, pushes it on the user's list (kept to 50) and appends it to the stream or outbox; and
    /// `isNewDevice(ip, device)`. The script's last two KEYS are the list and the stream, its last three ARGV the id
    /// base, the template ('' records nothing: events off) and the stream cap ('' for an outbox).
    static let events = """
        local eventList, eventStream = KEYS[#KEYS - 1], KEYS[#KEYS]
        local eventBase, eventTemplate, eventCap = ARGV[#ARGV - 2], ARGV[#ARGV - 1], ARGV[#ARGV]
        local eventCount = 0
        local function eventTime(ms)
            local s = math.floor(ms / 1000)
            local days = math.floor(s / 86400)
            local rem = s - days * 86400
            local z = days + 719468
            local era = math.floor(z / 146097)
            local doe = z - era * 146097
            local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
            local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
            local mp = math.floor((5 * doy + 2) / 153)
            local d = doy - math.floor((153 * mp + 2) / 5) + 1
            local m = mp < 10 and mp + 3 or mp - 9
            local y = yoe + era * 400
            if m <= 2 then y = y + 1 end
            return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, math.floor(rem / 3600),
                math.floor((rem % 3600) / 60), rem % 60, ms % 1000)
        end
        local function hexID(bytes)
            return (string.gsub(bytes, '.', function(c) return string.format('%02x', string.byte(c)) end))
        end
        local function isNewDevice(ip, device)
            -- A substring search for the encoded field, not 50 decodes: the events are cjson's own encoding.
            local wanted = {}
            if ip then table.insert(wanted, '"ip":' .. cjson.encode(ip)) end
            if device then table.insert(wanted, '"device":' .. cjson.encode(device)) end
            for _, json in ipairs(redis.call('LRANGE', eventList, 0, 49)) do
                for _, field in ipairs(wanted) do
                    if string.find(json, field, 1, true) then return false end
                end
            end
            return true
        end
        local function emit(fields)
            if eventTemplate == '' then return end
            local event = cjson.decode(eventTemplate)
            for k, v in pairs(fields) do event[k] = v end
            eventCount = eventCount + 1
            event.id = eventBase .. string.format('%02x', eventCount)
            local t = redis.call('TIME')
            event.time = eventTime(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
            local json = cjson.encode(event)
            if event.user_id then
                redis.call('LPUSH', eventList, json)
                redis.call('LTRIM', eventList, 0, 49)
            end
            if eventCap == '' then
                redis.call('XADD', eventStream, '*', 'e', json)
            else
                redis.call('XADD', eventStream, 'MAXLEN', '~', eventCap, '*', 'e', json)
            end
        end

        """
}
