import Foundation
import Redis

/// GET throughput and latency of the Redis client at several concurrencies, as a Markdown table.
///
/// Usage: redis-bench REDIS_URL [SECONDS] [CONNECTIONS]. Each concurrency level runs `SECONDS` (default 5) after a
/// one-second warm-up; every task loops `GET` on one 64-byte value and records each call's latency.
@main
struct RedisBenchmark {
    static func main() async throws {
        let arguments = CommandLine.arguments
        guard arguments.count >= 2 else {
            print("usage: redis-bench REDIS_URL [SECONDS] [CONNECTIONS]")
            exit(2)
        }
        var configuration = try RedisConfiguration(url: arguments[1])
        let seconds = arguments.count > 2 ? Double(arguments[2]) ?? 5 : 5
        if arguments.count > 3, let connections = Int(arguments[3]) { configuration.connectionCount = connections }
        configuration.maxInFlightPerConnection = 100_000
        let client = RedisClient(configuration: configuration)
        try await client.withRunning {
            try await client.set("bench:key", to: String(repeating: "x", count: 64))
            for concurrency in [1, 50, 500] {
                _ = try await measure(client, concurrency: concurrency, seconds: 1)
                let result = try await measure(client, concurrency: concurrency, seconds: seconds)
                print(
                    "| Redis client (\(configuration.connectionCount) conn), \(concurrency) task\(concurrency == 1 ? "" : "s") "
                        + "| \(Int(result.rate)) | \(format(result.p50)) | \(format(result.p99)) |"
                )
            }
        }
    }

    static func measure(_ client: RedisClient, concurrency: Int, seconds: Double) async throws -> (rate: Double, p50: Double, p99: Double) {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + .milliseconds(Int(seconds * 1000))
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var samples: [Double] = []
                    samples.reserveCapacity(100_000)
                    while clock.now < deadline {
                        let before = clock.now
                        _ = try await client.get("bench:key")
                        let elapsed = clock.now - before
                        samples.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
                    }
                    return samples
                }
            }
            return try await group.reduce(into: [Double]()) { $0 += $1 }.sorted()
        }
        let elapsed = clock.now - start
        let total = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        func percentile(_ p: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        return (Double(latencies.count) / total, percentile(0.5), percentile(0.99))
    }

    static func format(_ milliseconds: Double) -> String { String(format: "%.3f ms", milliseconds) }
}
