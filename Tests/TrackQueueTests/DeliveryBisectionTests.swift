import Testing

@testable import TrackQueue

/// What a fake API that refuses every range holding a poison event made the scheduler do.
private struct BisectionRun {
    var requests = 0
    /// The request number (1-based) of the first refusal, if any.
    var firstRejection: Int?
    var delivered: [Range<Int>] = []
    var deadLettered: [Int] = []
    var otherActions: [DeliveryAction<ManualInstant>] = []

    var requestsAfterFirstRejection: Int { firstRejection.map { requests - $0 } ?? 0 }

    init(count: Int, poison: Set<Int>, status: Int = 400) {
        var scheduler = DeliveryScheduler<ManualInstant>(
            backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
        var rng = SplitMix64(seed: 0)
        scheduler.begin(batchCount: count)
        while let range = scheduler.nextRange(), requests < 100_000 {
            requests += 1
            let bad = range.contains { poison.contains($0) }
            if bad && firstRejection == nil { firstRejection = requests }
            let outcome: DeliveryOutcome =
                bad
                ? .response(status: status, retryAfter: nil, body: "refused \(range)")
                : .response(status: 200, retryAfter: nil, body: "{}")
            for action in scheduler.handle(outcome, now: ManualInstant(), using: &rng) {
                switch action {
                case .deliver(let delivered): self.delivered.append(delivered)
                case .deadLetter(let index, let deadStatus, let body):
                    deadLettered.append(index)
                    #expect(deadStatus == status)
                    #expect(body == "refused \(index)..<\(index + 1)", "the body of its own refusal")
                default: otherActions.append(action)
                }
            }
            #expect(scheduler.consecutiveFailures == 0)
        }
        #expect(scheduler.nextRange() == nil)
        #expect(scheduler.state == .idle)
    }

    /// Checks every promise of the splitting for this poison set.
    func verify(count: Int, poison: Set<Int>, sourceLocation: SourceLocation = #_sourceLocation) {
        let k = poison.count
        let bound = 2 * k * ceilLog2(count)
        #expect(
            requestsAfterFirstRejection <= bound,
            "n=\(count) poison=\(poison.sorted()): \(requestsAfterFirstRejection) > \(bound)",
            sourceLocation: sourceLocation)
        #expect(otherActions.isEmpty, sourceLocation: sourceLocation)
        #expect(deadLettered.sorted() == poison.sorted(), "each poison once", sourceLocation: sourceLocation)
        let deliveredIndexes = delivered.flatMap { Array($0) }
        let clean = (0..<count).filter { !poison.contains($0) }
        #expect(deliveredIndexes == clean, "each clean event once, ascending", sourceLocation: sourceLocation)
        for (earlier, later) in zip(delivered, delivered.dropFirst()) {
            #expect(earlier.upperBound <= later.lowerBound, sourceLocation: sourceLocation)
        }
        if k == 0 { #expect(requests == 1, sourceLocation: sourceLocation) }
    }
}

private func ceilLog2(_ n: Int) -> Int {
    var bits = 0
    while (1 << bits) < n { bits += 1 }
    return bits
}

@Suite struct DeliveryBisectionTests {
    @Test func onePoisonAtEveryPositionOfAThousand() {
        var worst = 0
        for position in 0..<1000 {
            let run = BisectionRun(count: 1000, poison: [position])
            run.verify(count: 1000, poison: [position])
            worst = max(worst, run.requestsAfterFirstRejection)
        }
        #expect(worst <= 20)
    }

    @Test(arguments: [2, 3, 5, 10])
    func severalPoisonsAtSeededRandomPositions(k: Int) {
        var rng = SplitMix64(seed: UInt64(k) * 1_000_003)
        for _ in 0..<200 {
            var poison = Set<Int>()
            while poison.count < k { poison.insert(Int.random(in: 0..<1000, using: &rng)) }
            BisectionRun(count: 1000, poison: poison).verify(count: 1000, poison: poison)
        }
    }

    @Test func adjacentAndClusteredPoisons() {
        for poison: Set<Int> in [[0, 1], [998, 999], [0, 999], [499, 500], [500, 501, 502], Set(0..<10), Set(990..<1000)] {
            BisectionRun(count: 1000, poison: poison).verify(count: 1000, poison: poison)
        }
    }

    @Test func poisonAtBothEnds() {
        for poison: Set<Int> in [[0], [999], [0, 999]] {
            BisectionRun(count: 1000, poison: poison).verify(count: 1000, poison: poison)
        }
    }

    @Test func oneEvent() {
        let clean = BisectionRun(count: 1, poison: [])
        clean.verify(count: 1, poison: [])
        #expect(clean.delivered == [0..<1])
        let bad = BisectionRun(count: 1, poison: [0])
        bad.verify(count: 1, poison: [0])
        #expect(bad.requests == 1)
    }

    @Test func twoEvents() {
        for poison: Set<Int> in [[], [0], [1], [0, 1]] {
            BisectionRun(count: 2, poison: poison).verify(count: 2, poison: poison)
        }
        #expect(BisectionRun(count: 2, poison: [1]).requests == 3)
        #expect(BisectionRun(count: 2, poison: [0]).requests == 3)
    }

    @Test func everyPoisonSetOfSmallBatches() {
        for count in 1...10 {
            for mask in 0..<(1 << count) {
                let poison = Set((0..<count).filter { mask & (1 << $0) != 0 })
                BisectionRun(count: count, poison: poison).verify(count: count, poison: poison)
            }
        }
    }

    @Test(arguments: [413, 422])
    func otherRefusalsSplitTheSameWay(status: Int) {
        let poison: Set<Int> = [17, 600]
        BisectionRun(count: 1000, poison: poison, status: status).verify(count: 1000, poison: poison)
    }

    @Test func oddSizes() {
        for count in [3, 7, 999, 1000] {
            for position in [0, count / 2, count - 1] {
                BisectionRun(count: count, poison: [position]).verify(count: count, poison: [position])
            }
        }
    }
}
