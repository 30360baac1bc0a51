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
    /// The run ended in the alert for an API that refuses everything.
    var alerted = false

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
            if scheduler.state == .alert {
                alerted = true
                break
            }
            #expect(scheduler.consecutiveFailures == 0)
        }
        #expect(scheduler.nextRange() == nil)
        #expect(scheduler.state == (alerted ? .alert : .idle))
    }

    /// Checks every promise of the splitting for this poison set.
    func verify(count: Int, poison: Set<Int>, sourceLocation: SourceLocation = #_sourceLocation) {
        let k = poison.count
        let bound = 2 * k * ceilLog2(count)
        #expect(
            requestsAfterFirstRejection <= bound,
            "n=\(count) poison=\(poison.sorted()): \(requestsAfterFirstRejection) > \(bound)",
            sourceLocation: sourceLocation)
        let threshold = DeliveryScheduler<ManualInstant>.systemicThreshold
        let deliveredIndexes = delivered.flatMap { Array($0) }
        let clean = (0..<count).filter { !poison.contains($0) }
        if alerted {
            // Only when the probe (the batch's last event) was refused too, after `threshold`
            // poisons were dead-lettered in a row: all of them poison, nothing clean held back
            // for good (it stays queued).
            #expect(poison.count >= threshold + 2, sourceLocation: sourceLocation)
            #expect(deadLettered.count == threshold, sourceLocation: sourceLocation)
            #expect(Set(deadLettered).isSubset(of: poison), sourceLocation: sourceLocation)
            #expect(Set(deliveredIndexes).isSubset(of: Set(clean)), sourceLocation: sourceLocation)
            return
        }
        #expect(otherActions.isEmpty, sourceLocation: sourceLocation)
        #expect(deadLettered.sorted() == poison.sorted(), "each poison once", sourceLocation: sourceLocation)
        #expect(deliveredIndexes.sorted() == clean, "each clean event once", sourceLocation: sourceLocation)
        if k <= threshold {
            // No probe can have been sent: deliveries are in ascending order.
            #expect(deliveredIndexes == clean, "ascending", sourceLocation: sourceLocation)
            for (earlier, later) in zip(delivered, delivered.dropFirst()) {
                #expect(earlier.upperBound <= later.lowerBound, sourceLocation: sourceLocation)
            }
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

    // MARK: An API that refuses everything

    /// Every event refused: at most `threshold` dead letters, then the probe, then the alert,
    /// and the rest of the batch stays queued.
    @Test func anAPIThatRefusesEveryEventRaisesAnEndpointAlertAfterTheThreshold() {
        let run = BisectionRun(count: 1000, poison: Set(0..<1000))
        #expect(run.alerted)
        #expect(run.deadLettered == Array(0..<DeliveryScheduler<ManualInstant>.systemicThreshold))
        #expect(run.delivered.isEmpty)
        let alert = run.otherActions.compactMap { action -> DeliveryAlert? in
            if case .raiseAlert(let alert) = action { return alert }
            return nil
        }
        #expect(alert.count == 1)
        #expect(alert.first?.kind == .endpoint)
        #expect(alert.first?.status == 400)
        #expect(alert.first?.message.contains("refuses every event") == true)
        // About two requests per dead letter, not two per event of the queue.
        #expect(run.requests < 40, "\(run.requests)")
    }

    /// Many poisons in a row at the head are still the events' fault: the probe (the last
    /// event) is taken, so splitting goes on and dead-letters exactly the poisons.
    @Test func manyAdjacentPoisonsAreNotMistakenForTheAPI() {
        for poison in [Set(0..<12), Set(0..<40), Set(100..<150)] {
            let run = BisectionRun(count: 1000, poison: poison)
            #expect(!run.alerted, "\(poison.count)")
            run.verify(count: 1000, poison: poison)
        }
    }

    /// After the alert's wait the batch is tried again; the first refusal alone probes at
    /// once, and a 2xx then clears the alert and resets the count.
    @Test func theAlertClearsOnTheNext2xx() {
        var scheduler = DeliveryScheduler<ManualInstant>(backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
        var rng = SplitMix64(seed: 3)
        var clock = ManualClock()
        scheduler.begin(batchCount: 50)
        var requests = 0
        while scheduler.state != .alert, scheduler.nextRange() != nil, requests < 1000 {
            requests += 1
            _ = scheduler.handle(.response(status: 422, retryAfter: nil, body: ""), now: clock.now, using: &rng)
        }
        #expect(scheduler.state == .alert)
        #expect(scheduler.notBefore == clock.now.advanced(by: .seconds(300)))
        clock.advance(by: .seconds(300))
        scheduler.begin(batchCount: 42)
        #expect(
            scheduler.handle(.response(status: 200, retryAfter: nil, body: ""), now: clock.now, using: &rng)
                == [.deliver(0..<42), .clearAlert])
        #expect(scheduler.refusedAloneSince2xx == 0)
    }

    /// The loop decides on a copy; when the 2xx cannot be recorded it goes back to the copy
    /// and calls `recordFailed`: the failures go on counting, so the backoff grows.
    @Test func aFailedRecordBacksOffOneFailureMoreAndStartsTheBatchAgain() {
        var scheduler = DeliveryScheduler<ManualInstant>(backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
        var rng = SplitMix64(seed: 4)
        scheduler.begin(batchCount: 10)
        _ = scheduler.handle(.response(status: 503, retryAfter: nil, body: ""), now: ManualInstant(), using: &rng)
        _ = scheduler.handle(.response(status: 503, retryAfter: nil, body: ""), now: ManualInstant(), using: &rng)
        let before = scheduler
        #expect(
            scheduler.handle(.response(status: 200, retryAfter: nil, body: ""), now: ManualInstant(), using: &rng) == [.deliver(0..<10)])
        #expect(scheduler.consecutiveFailures == 0)
        scheduler = before
        var twin = rng
        let expected = scheduler.backoff.delay(failures: 3, retryAfter: nil, using: &twin)
        #expect(scheduler.recordFailed(now: ManualInstant(), using: &rng) == [.waitUntil(ManualInstant(offset: expected))])
        #expect(scheduler.consecutiveFailures == 3)
        #expect(scheduler.state == .backoff)
        #expect(scheduler.nextRange() == nil, "the batch is read again after the wait")
    }

    @Test func anAlertRaisedWithoutAnAnswerStaysUntilClearedByItsCause() {
        var scheduler = DeliveryScheduler<ManualInstant>(backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
        var rng = SplitMix64(seed: 5)
        let alert = DeliveryAlert(kind: .auth, status: 0, message: "the token was refused")
        #expect(scheduler.raise(alert) == [.raiseAlert(alert)])
        #expect(scheduler.raise(alert).isEmpty, "once")
        scheduler.begin(batchCount: 3)
        #expect(scheduler.handle(.response(status: 200, retryAfter: nil, body: ""), now: ManualInstant(), using: &rng) == [.deliver(0..<3)])
        #expect(scheduler.alert == alert, "a 2xx does not clear it")
        #expect(scheduler.clearRaised() == [.clearAlert])
        #expect(scheduler.alert == nil)
        #expect(scheduler.clearRaised().isEmpty)
    }
}
