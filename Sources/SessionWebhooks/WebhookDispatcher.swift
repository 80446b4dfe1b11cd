public import AsyncHTTPClient
import Foundation
public import Logging
import Metrics
import NIOCore
import NIOHTTP1
public import Redis
public import ServiceLifecycle
public import SessionCore

/// Delivers the lifecycle events of the delivery stream as signed webhooks, at least once, from every instance at once.
///
/// Every instance runs one, as a consumer of one Redis consumer group (`webhooks`) on `P{events}d`:
/// - **New events**: `XREADGROUP … >` hands each event to exactly one instance. Within a batch, one user's events go
///   one after another in stream order; different users' go side by side, at most `WEBHOOK_CONCURRENCY` requests at once.
/// - **A 2xx acknowledges** (`XACK`). Anything else — another status, no connection, 5 s without an answer — leaves the
///   event pending; it is tried again after 1 s, 2 s, 4 s … (×0.75–1.25 jitter) from its last attempt, counted by
///   Redis' delivery counter, so the count survives a change of instance. After `WEBHOOK_MAX_ATTEMPTS` attempts it is
///   dead-lettered: copied to `P{events}f` with its attempts and last error, and acknowledged, in one script.
/// - **An instance that died mid-delivery**: its pending events sit idle; any instance claims (`XCLAIM`) those idle
///   for `WEBHOOK_CLAIM_AFTER` and goes on with their attempt count.
/// - **Cluster**: changes write their slot's outbox; this loop also sweeps every outbox, one instance at a time (a
///   10 s lock), for events whose instance died between the change and its move (`LifecycleEvents.sweepOutboxes`).
///
/// What a receiver can rely on: every event arrives at least once, with the same `webhook-id` (the event's `id`) on
/// every attempt; one user's events are *sent* in the order they happened unless a retry intervenes — an event that
/// failed is retried after later ones of the same user have been delivered. Order by the event's `time` (Redis'
/// clock), and deduplicate by `webhook-id`.
public final class WebhookDispatcher: Service, Sendable {
    static let group = "webhooks"
    private let events: LifecycleEvents
    private let redis: RedisClient
    private let settings: WebhookSettings
    private let client: HTTPClient
    private let consumer: String
    private let logger: Logger
    private let batch = 64

    public init(events: LifecycleEvents, redis: RedisClient, settings: WebhookSettings, logger: Logger) {
        self.events = events
        self.redis = redis
        self.settings = settings
        self.logger = logger
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(5))
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(1, settings.concurrency)
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        consumer = "\(ProcessInfo.processInfo.hostName)-\(getpid())-\(Int.random(in: 0..<1_000_000))"
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.loop()
        }
        try? await client.shutdown()
    }

    private func loop() async {
        var groupReady = false
        var lastSweep = ContinuousClock.now - .seconds(60)
        var lastGauges = ContinuousClock.now - .seconds(60)
        while !Task.isCancelled {
            var worked = false
            if !groupReady { groupReady = await createGroup() }
            if groupReady {
                worked = await deliverNew()
                await retryPending()
            }
            let now = ContinuousClock.now
            if now - lastSweep >= .seconds(10) {
                lastSweep = now
                await sweepIfLeader()
            }
            if now - lastGauges >= .seconds(1) {
                lastGauges = now
                await updateGauges()
            }
            if !worked { try? await Task.sleep(for: .milliseconds(200)) }
        }
    }

    // MARK: Reading

    private func createGroup() async -> Bool {
        do {
            _ = try await redis.send(RedisCommand("XGROUP", ["CREATE", events.streamKey, Self.group, "0", "MKSTREAM"]))
            return true
        } catch  where error.message.hasPrefix("BUSYGROUP") {
            return true  // another instance made it
        } catch {
            logger.warning("webhook delivery waits for Redis", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Reads and delivers a batch of new events; true when there were any.
    private func deliverNew() async -> Bool {
        let reply: RESPValue
        do {
            reply = try await redis.send(
                RedisCommand("XREADGROUP", ["GROUP", Self.group, consumer, "COUNT", String(batch), "STREAMS", events.streamKey, ">"]))
        } catch {
            // NOGROUP: the stream was deleted (a FLUSHALL); make the group again.
            if error.message.hasPrefix("NOGROUP") { _ = await createGroup() }
            return false
        }
        let entries = Self.entries(reply.array?.first?.array?.dropFirst().first)
        guard !entries.isEmpty else { return false }
        await deliver(entries.map { ($0, 1) })
        return true
    }

    /// Retries this instance's failed events whose backoff has passed, and claims other instances' events idle for
    /// `WEBHOOK_CLAIM_AFTER`.
    private func retryPending() async {
        guard
            let reply = try? await redis.send(RedisCommand("XPENDING", [events.streamKey, Self.group, "-", "+", String(batch)])),
            let rows = reply.array, !rows.isEmpty
        else { return }
        let claimAfter = Self.milliseconds(settings.claimAfter)
        var due: [(id: String, deliveries: Int, minIdle: Int64)] = []
        for row in rows {
            guard let fields = row.array, fields.count == 4, let id = fields[0].string, let owner = fields[1].string,
                let idle = fields[2].int, let deliveries = fields[3].int
            else { continue }
            let wait = owner == consumer ? backoff(id: id, after: Int(deliveries)) : claimAfter
            if idle >= wait { due.append((id, Int(deliveries), wait)) }
        }
        var claimed: [(Entry, Int)] = []
        for item in due {
            // XCLAIM with the same min-idle: of two instances claiming at once, one gets it.
            guard
                let reply = try? await redis.send(
                    RedisCommand("XCLAIM", [events.streamKey, Self.group, consumer, String(item.minIdle), item.id])),
                let entry = Self.entries(reply).first
            else { continue }
            claimed.append((entry, item.deliveries + 1))
        }
        if !claimed.isEmpty { await deliver(claimed) }
    }

    /// The delay before attempt `after + 1`: 1 s, 2 s, 4 s … from the last attempt, ×0.75–1.25 by the event's id.
    private func backoff(id: String, after deliveries: Int) -> Int64 {
        let base = Double(Self.milliseconds(settings.firstRetry)) * pow(2, Double(max(0, deliveries - 1)))
        var hasher = Hasher()
        hasher.combine(id)
        hasher.combine(deliveries)
        let jitter = 0.75 + Double(UInt64(bitPattern: Int64(hasher.finalize())) % 1000) / 2000
        return Int64(min(base * jitter, 3_600_000))
    }

    // MARK: Delivering

    struct Entry: Sendable {
        let streamID: String
        let json: String
        let eventID: String
        let type: String
        let time: String
        let userID: String?
    }

    /// Delivers entries (with their attempt numbers): one user's in order, users side by side, bounded.
    private func deliver(_ entries: [(Entry, Int)]) async {
        var byUser: [String: [(Entry, Int)]] = [:]
        var order: [String] = []
        for (entry, attempt) in entries {
            let key = entry.userID ?? entry.streamID
            if byUser[key] == nil { order.append(key) }
            byUser[key, default: []].append((entry, attempt))
        }
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for key in order {
                if running >= settings.concurrency {
                    await group.next()
                    running -= 1
                }
                let queue = byUser[key] ?? []
                group.addTask {
                    for (entry, attempt) in queue { await self.attempt(entry, number: attempt) }
                }
                running += 1
            }
        }
    }

    private func attempt(_ entry: Entry, number: Int) async {
        if let types = settings.types, !types.contains(entry.type) {
            await acknowledge(entry)
            Counter(label: "session_webhook_deliveries_total", dimensions: [("result", "skipped")]).increment()
            return
        }
        let body = Array("{\"type\":\(Self.quoted(entry.type)),\"timestamp\":\(Self.quoted(entry.time)),\"data\":\(entry.json)}".utf8)
        let timestamp = Int64(Date().timeIntervalSince1970)
        var request = HTTPClientRequest(url: settings.url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "user-agent", value: "session-service-webhooks/1")
        request.headers.add(name: "webhook-id", value: entry.eventID)
        request.headers.add(name: "webhook-timestamp", value: String(timestamp))
        request.headers.add(name: "webhook-signature", value: settings.signature.sign(id: entry.eventID, timestamp: timestamp, body: body))
        request.body = .bytes(body)
        let failure: String
        do {
            let response = try await client.execute(request, deadline: .now() + TimeAmount(settings.timeout))
            if (200..<300).contains(response.status.code) {
                await acknowledge(entry)
                Counter(label: "session_webhook_deliveries_total", dimensions: [("result", "success")]).increment()
                return
            }
            failure = "HTTP \(response.status.code)"
        } catch {
            failure = Self.describe(error)
        }
        Counter(label: "session_webhook_deliveries_total", dimensions: [("result", "failure")]).increment()
        guard number >= settings.maxAttempts else {
            logger.info(
                "webhook delivery failed, will retry",
                metadata: ["event_id": "\(entry.eventID)", "attempt": "\(number)", "error": "\(failure)"])
            return
        }
        let reply = try? await redis.evaluate(
            Self.deadLetterScript, keys: [events.streamKey, events.failedKey],
            arguments: [Self.group, entry.streamID, entry.json, String(number), failure], durable: true)
        if reply != nil {
            Counter(label: "session_webhook_deliveries_total", dimensions: [("result", "dead_letter")]).increment()
            logger.warning(
                "webhook delivery gave up: dead-lettered",
                metadata: ["event_id": "\(entry.eventID)", "attempts": "\(number)", "error": "\(failure)"])
        }
    }

    private func acknowledge(_ entry: Entry) async {
        _ = try? await redis.send(RedisCommand("XACK", [events.streamKey, Self.group, entry.streamID]))
    }

    /// KEYS: stream, failed. ARGV: group, stream entry ID, event JSON, attempts, last error. Keeps the event with why it
    /// failed and acknowledges it, at once: never both lost and never twice.
    static let deadLetterScript = RedisScript(
        name: "webhook_dead_letter",
        """
        if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
        local t = redis.call('TIME')
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'e', ARGV[3], 'attempts', ARGV[4], 'error', ARGV[5], 'at', t[1])
        return 1
        """
    )

    // MARK: Cluster sweep and gauges

    private func sweepIfLeader() async {
        let found = await events.sweepOutboxesUnlessSwept(by: consumer)
        if found > 0 { logger.info("moved events left in outboxes", metadata: ["outboxes": "\(found)"]) }
    }

    private func updateGauges() async {
        guard let info = try? await redis.send(RedisCommand("XINFO", ["GROUPS", events.streamKey])), let groups = info.array else { return }
        for group in groups {
            guard let fields = group.array else { continue }
            var map: [String: RESPValue] = [:]
            var index = 0
            while index + 1 < fields.count {
                if let name = fields[index].string { map[name] = fields[index + 1] }
                index += 2
            }
            guard map["name"]?.string == Self.group else { continue }
            let pending = map["pending"]?.int ?? 0
            let lag = map["lag"]?.int ?? 0
            Gauge(label: "session_webhook_pending").record(pending + lag)
            // The oldest unacknowledged: the first pending entry, else the first one not yet read.
            var oldest: String?
            if pending > 0, let summary = try? await redis.send(RedisCommand("XPENDING", [events.streamKey, Self.group])) {
                oldest = summary.array?.dropFirst().first?.string
            } else if lag > 0, let last = map["last-delivered-id"]?.string,
                let next = try? await redis.send(RedisCommand("XRANGE", [events.streamKey, "(" + last, "+", "COUNT", "1"]))
            {
                oldest = next.array?.first?.array?.first?.string
            }
            let age = oldest.flatMap { $0.split(separator: "-").first }.flatMap { Double($0) }.map { Date().timeIntervalSince1970 - $0 / 1000 } ?? 0
            Gauge(label: "session_webhook_oldest_pending_seconds").record(max(0, age))
        }
    }

    // MARK: Parsing

    /// `[[id, [field, value, …]], …]` → entries with their event's fields; malformed ones are skipped.
    static func entries(_ value: RESPValue?) -> [Entry] {
        (value?.array ?? []).compactMap { item in
            guard let parts = item.array, parts.count == 2, let streamID = parts[0].string, let fields = parts[1].array,
                fields.count >= 2, let json = fields[1].string,
                let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
                let id = object["id"] as? String, let type = object["type"] as? String, let time = object["time"] as? String
            else { return nil }
            return Entry(streamID: streamID, json: json, eventID: id, type: type, time: time, userID: object["user_id"] as? String)
        }
    }

    static func quoted(_ text: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed])) ?? Data("[\"\"]".utf8)
        return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// A failure for the logs and the dead letter: its kind, never a URL's credentials or a body.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError { return "\(error)" }
        return String(describing: type(of: error))
    }
}

/// A Cluster's outbox sweep on its own, for a service that records events but delivers none (no `WEBHOOK_URL`): the
/// delivery stream still gets every event for whoever reads it.
public struct OutboxSweeper: Service {
    let events: LifecycleEvents
    private let owner = "sweeper-\(getpid())-\(Int.random(in: 0..<1_000_000))"

    public init(events: LifecycleEvents) { self.events = events }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await events.sweepOutboxesUnlessSwept(by: owner)
                try? await Task.sleep(for: .seconds(10))
            }
        }
    }
}
