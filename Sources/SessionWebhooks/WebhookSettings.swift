import Foundation

/// Where and how lifecycle events are delivered (`WEBHOOK_*`).
public struct WebhookSettings: Sendable {
    /// `http` or `https`; redirects are not followed.
    public var url: String
    public var signature: WebhookSignature
    /// The event types delivered; nil: all. Others are acknowledged without a request.
    public var types: Set<String>?
    /// Attempts before an event is dead-lettered (`WEBHOOK_MAX_ATTEMPTS`).
    public var maxAttempts: Int
    /// How long another instance's unacknowledged delivery waits before this one takes it over (`WEBHOOK_CLAIM_AFTER`).
    public var claimAfter: Duration
    /// Requests in flight per instance at most (`WEBHOOK_CONCURRENCY`).
    public var concurrency: Int
    /// One attempt's limit, connection included.
    public var timeout: Duration = .seconds(5)
    /// The first retry's delay; each later one doubles it (with jitter).
    public var firstRetry: Duration = .seconds(1)

    public init(url: String, signature: WebhookSignature, types: Set<String>?, maxAttempts: Int, claimAfter: Duration, concurrency: Int) {
        self.url = url
        self.signature = signature
        self.types = types
        self.maxAttempts = maxAttempts
        self.claimAfter = claimAfter
        self.concurrency = concurrency
    }
}
