@testable import TrackQueue

/// A fleet of hosts, each running trackq's own ``DeliveryScheduler`` (and so its
/// ``Backoff``) on one manual time line, against a simulated Track API that is down for an
/// outage and then comes back with a rate limit: above `limitPerSecond` requests in a
/// second, it answers 429 with `Retry-After`. Pure and deterministic: each host has its own
/// seeded generator.
///
/// A host sends its next batch as soon as the last one is delivered (as the delivery loop
/// does: the next batch is read while one is out), and otherwise does what its scheduler's
/// `waitUntil` says.
struct FleetSimulation {
    struct Setup {
        var hosts = 1000
        /// Batches each host has queued when the outage begins.
        var batchesPerHost = 20
        var outage: Duration = .seconds(3600)
        var limitPerSecond = 100
        var retryAfterSeconds = 1
        /// From a request to its answer.
        var latency: Duration = .milliseconds(50)
        var backoff = Backoff(initial: .seconds(1), maximum: .seconds(300))
        var seed: UInt64 = 1
    }

    /// What the API saw in one minute after it came back.
    struct Minute: Equatable {
        var requests = 0
        var accepted = 0
        /// The most requests in any one second of the minute.
        var peakPerSecond = 0
    }

    struct Result {
        /// Minute by minute from the API's return.
        var minutes: [Minute]
        /// From the API's return to the last host's last batch delivered.
        var drainTime: Duration
        /// Requests during the outage (all failed).
        var outageRequests: Int
    }

    private struct Host {
        var scheduler: DeliveryScheduler<ManualInstant>
        var random: SplitMix64
        var batchesLeft: Int
    }

    static func run(_ setup: Setup) -> Result {
        var hosts: [Host] = (0..<setup.hosts).map { i in
            var scheduler = DeliveryScheduler<ManualInstant>(backoff: setup.backoff)
            scheduler.begin(batchCount: 1000)
            return Host(scheduler: scheduler, random: SplitMix64(seed: setup.seed &+ UInt64(i) &* 7919), batchesLeft: setup.batchesPerHost)
        }
        // Each host's next send, in a binary heap ordered by time (then host, for determinism).
        var queue = SendQueue()
        var start = SplitMix64(seed: setup.seed)
        for i in hosts.indices {
            queue.push(ManualInstant(offset: .nanoseconds(Int64(UInt64.random(in: 0..<1_000_000_000, using: &start)))), host: i)
        }
        let back = ManualInstant(offset: setup.outage)
        var perSecond: [Int64: Int] = [:]
        var minutes: [Minute] = []
        var outageRequests = 0
        var lastDelivery = back
        while let (at, i) = queue.pop() {
            let outcome: DeliveryOutcome
            if at < back {
                outageRequests += 1
                outcome = .transportError("connection refused")
            } else {
                let since = back.duration(to: at)
                let second = since.components.seconds
                let minute = Int(second / 60)
                while minutes.count <= minute { minutes.append(Minute()) }
                let seen = (perSecond[second] ?? 0) + 1
                perSecond[second] = seen
                minutes[minute].requests += 1
                minutes[minute].peakPerSecond = max(minutes[minute].peakPerSecond, seen)
                if seen > setup.limitPerSecond {
                    outcome = .response(status: 429, retryAfter: .seconds(setup.retryAfterSeconds), body: "slow down")
                } else {
                    minutes[minute].accepted += 1
                    outcome = .response(status: 200, retryAfter: nil, body: #"{"ok":true}"#)
                }
            }
            let answered = at.advanced(by: setup.latency)
            var host = hosts[i]
            let actions = host.scheduler.handle(outcome, now: answered, using: &host.random)
            var next = answered
            for action in actions {
                switch action {
                case .deliver:
                    host.batchesLeft -= 1
                    lastDelivery = max(lastDelivery, answered)
                case .waitUntil(let until):
                    next = until
                default:
                    break
                }
            }
            if let paced = host.scheduler.sendNotBefore, paced > next { next = paced }
            defer { hosts[i] = host }
            if host.scheduler.nextRange() == nil {
                guard host.batchesLeft > 0 else { continue }
                host.scheduler.begin(batchCount: 1000)
            }
            queue.push(next, host: i)
        }
        return Result(minutes: minutes, drainTime: back.duration(to: lastDelivery), outageRequests: outageRequests)
    }

    /// A min-heap of (instant, host).
    private struct SendQueue {
        private var items: [(ManualInstant, Int)] = []

        private static func before(_ a: (ManualInstant, Int), _ b: (ManualInstant, Int)) -> Bool {
            a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
        }

        mutating func push(_ at: ManualInstant, host: Int) {
            items.append((at, host))
            var child = items.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard Self.before(items[child], items[parent]) else { break }
                items.swapAt(child, parent)
                child = parent
            }
        }

        mutating func pop() -> (ManualInstant, Int)? {
            guard !items.isEmpty else { return nil }
            items.swapAt(0, items.count - 1)
            let top = items.removeLast()
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < items.count, Self.before(items[left], items[smallest]) { smallest = left }
                if right < items.count, Self.before(items[right], items[smallest]) { smallest = right }
                guard smallest != parent else { break }
                items.swapAt(parent, smallest)
                parent = smallest
            }
            return top
        }
    }
}

extension FleetSimulation.Result {
    /// The minute-by-minute table, as BENCHMARKS.md keeps it.
    func table(limit: Int) -> String {
        var lines = ["| minute | requests/s (mean) | peak in a second | accepted/s | peak ÷ limit |", "|---|---|---|---|---|"]
        for (i, minute) in minutes.enumerated() {
            let mean = Double(minute.requests) / 60
            let accepted = Double(minute.accepted) / 60
            let ratio = Double(minute.peakPerSecond) / Double(limit)
            lines.append(
                "| \(i + 1) | \(Self.fixed(mean)) | \(minute.peakPerSecond) | \(Self.fixed(accepted)) | \(Self.fixed(ratio)) |")
        }
        return lines.joined(separator: "\n")
    }

    static func fixed(_ value: Double) -> String {
        let scaled = Int((value * 10).rounded())
        return "\(scaled / 10).\(scaled % 10)"
    }
}
