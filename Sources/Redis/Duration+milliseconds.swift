// Duration in the units Redis, the service's timestamps and its metrics speak; shared by every layer above.

extension Duration {
    /// Whole milliseconds (the unit of every timestamp and TTL the service sends Redis, and of its logs).
    package var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Whole nanoseconds (what metrics timers record).
    package var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// Milliseconds with a fraction (`0.412`), for log lines.
    package var fractionalMilliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds / 1_000_000_000) / 1_000_000
    }
}
