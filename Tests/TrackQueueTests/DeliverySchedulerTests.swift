import Testing

@testable import TrackQueue

/// A scheduler on a manual clock with 1 s initial and 300 s maximum backoff.
private func makeScheduler(batchCount: Int = 10) -> DeliveryScheduler<ManualInstant> {
    var scheduler = DeliveryScheduler<ManualInstant>(
        backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
    scheduler.begin(batchCount: batchCount)
    return scheduler
}

/// An HTTP answer without Retry-After.
private func apiAnswer(_ status: Int, _ body: String = "") -> DeliveryOutcome {
    .response(status: status, retryAfter: nil, body: body)
}

@Suite struct DeliverySchedulerTests {
    let retryMax = Duration.seconds(300)

    @Test func freshSchedulerIsIdle() {
        let scheduler = DeliveryScheduler<ManualInstant>(
            backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
        #expect(scheduler.state == .idle)
        #expect(scheduler.nextRange() == nil)
        #expect(scheduler.consecutiveFailures == 0)
        #expect(scheduler.alert == nil)
        #expect(scheduler.notBefore == nil)
    }

    @Test func successDeliversTheWholeBatch() {
        var scheduler = makeScheduler(batchCount: 500)
        var rng = SplitMix64(seed: 1)
        #expect(scheduler.state == .sending)
        #expect(scheduler.nextRange() == 0..<500)
        #expect(scheduler.handle(apiAnswer(200), now: ManualInstant(), using: &rng) == [.deliver(0..<500)])
        #expect(scheduler.nextRange() == nil)
        #expect(scheduler.state == .idle)
    }

    @Test func handleWithoutABatchDoesNothing() {
        var scheduler = makeScheduler(batchCount: 0)
        var rng = SplitMix64(seed: 1)
        #expect(scheduler.nextRange() == nil)
        #expect(scheduler.handle(apiAnswer(500), now: ManualInstant(), using: &rng).isEmpty)
        #expect(scheduler.consecutiveFailures == 0)
    }

    // 429 paces instead: see rateLimitingPacesTheHost.
    @Test(arguments: [408, 500, 502, 503, 504, 302, 100])
    func retryableStatusesBackOffWithExactJitter(status: Int) {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 99)
        var twin = SplitMix64(seed: 99)
        var clock = ManualClock()
        for failures in 1...12 {
            let cap = scheduler.backoff.cap(failures: failures)
            let expected = scheduler.backoff.delay(failures: failures, retryAfter: nil, using: &twin)
            let actions = scheduler.handle(apiAnswer(status), now: clock.now, using: &rng)
            #expect(actions == [.waitUntil(clock.now.advanced(by: expected))])
            #expect(scheduler.consecutiveFailures == failures)
            #expect(scheduler.notBefore == clock.now.advanced(by: expected))
            #expect(expected <= cap)
            #expect(scheduler.state == .backoff)
            #expect(scheduler.nextRange() == 0..<10, "the same range is retried")
            #expect(scheduler.alert == nil)
            clock.advance(to: clock.now.advanced(by: expected))
        }
    }

    @Test func firstWaitIsAtMostRetryInitial() {
        for seed in UInt64(0)..<200 {
            var scheduler = makeScheduler()
            var rng = SplitMix64(seed: seed)
            let actions = scheduler.handle(apiAnswer(503), now: ManualInstant(), using: &rng)
            guard case .waitUntil(let until)? = actions.first else {
                Issue.record("expected a wait, got \(actions)")
                return
            }
            #expect(until.offset >= .zero && until.offset <= .seconds(1))
        }
    }

    @Test func transportErrorsBackOffLike5xx() {
        var byStatus = makeScheduler()
        var byError = makeScheduler()
        var rng1 = SplitMix64(seed: 5)
        var rng2 = SplitMix64(seed: 5)
        let now = ManualInstant(offset: .seconds(10))
        for _ in 1...6 {
            let a = byStatus.handle(apiAnswer(503), now: now, using: &rng1)
            let b = byError.handle(.transportError("connection reset"), now: now, using: &rng2)
            #expect(a == b)
            #expect(byStatus.consecutiveFailures == byError.consecutiveFailures)
        }
        #expect(byError.consecutiveFailures == 6)
        #expect(byError.state == .backoff)
    }

    @Test func retryAfterFloorsTheWait() {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 8)
        let now = ManualInstant(offset: .seconds(100))
        let seconds = scheduler.handle(
            .response(status: 503, retryAfter: .seconds(120), body: ""), now: now, using: &rng)
        #expect(seconds == [.waitUntil(now.advanced(by: .seconds(120)))])
        // An HTTP date, parsed by the loop with RetryAfter, 45 s ahead of the wall clock.
        let wall: Int64 = 784_111_777_000 - 45_000
        let fromDate = RetryAfter.parse("Sun, 06 Nov 1994 08:49:37 GMT", nowMillis: wall)
        #expect(fromDate == .seconds(45))
        let dated = scheduler.handle(
            .response(status: 503, retryAfter: fromDate, body: ""), now: now, using: &rng)
        // Failure 2 has a 2 s cap, so the 45 s floor decides.
        #expect(dated == [.waitUntil(now.advanced(by: .seconds(45)))])
        // A floor below the jitter leaves the jitter, drawn exactly as Backoff draws it.
        var twin = rng
        let expected = scheduler.backoff.delay(failures: 3, retryAfter: .nanoseconds(1), using: &twin)
        let short = scheduler.handle(
            .response(status: 500, retryAfter: .nanoseconds(1), body: ""), now: now, using: &rng)
        #expect(short == [.waitUntil(now.advanced(by: expected))])
    }

    @Test func rateLimitingPacesTheHost() {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 12)
        var now = ManualInstant()
        let limited = DeliveryOutcome.response(status: 429, retryAfter: .seconds(1), body: "slow down")
        // Each 429 doubles the pace, from the Retry-After up to 32 times it; the retry comes
        // after a draw in [pace/2, 3·pace/2], never before the Retry-After.
        for expected in [1, 2, 4, 8, 16, 32, 32].map({ Duration.seconds($0) }) {
            let actions = scheduler.handle(limited, now: now, using: &rng)
            #expect(scheduler.pace == expected)
            guard case .waitUntil(let until)? = actions.first, actions.count == 1 else {
                Issue.record("a 429 is one wait: \(actions)")
                return
            }
            let wait = now.duration(to: until)
            #expect(wait >= max(expected / 2, .seconds(1)) && wait <= expected * 3 / 2)
            #expect(scheduler.state == .backoff)
            now = until
        }
        // A 2xx takes an eighth off, and the next batch waits about one pace: not a backoff.
        #expect(scheduler.handle(apiAnswer(200), now: now, using: &rng) == [.deliver(0..<10)])
        #expect(scheduler.pace == .seconds(28))
        let paced = scheduler.pacedUntil
        #expect(paced != nil)
        #expect(scheduler.sendNotBefore == paced)
        #expect(paced.map { now.duration(to: $0) }.map { $0 >= .seconds(14) && $0 <= .seconds(42) } == true)
        #expect(scheduler.state == .sending, "paced, the next batch is on its way")
        #expect(scheduler.consecutiveFailures == 0)
        // SIGHUP: retry now, pace or not.
        var reloaded = scheduler
        let retried = reloaded.retryNow()
        #expect(retried)
        #expect(reloaded.sendNotBefore == nil)
        // A 400 is the API answering for itself: the halves keep the pace.
        var splitting = scheduler
        splitting.begin(batchCount: 10)
        _ = splitting.handle(apiAnswer(400), now: now, using: &rng)
        #expect(splitting.nextRange() == 0..<5)
        #expect(splitting.pacedUntil != nil)
        // Successes bring the pace down to nothing.
        var successes = 0
        while scheduler.pace > .zero {
            scheduler.begin(batchCount: 10)
            _ = scheduler.handle(apiAnswer(200), now: now, using: &rng)
            successes += 1
        }
        #expect(successes == 48)  // 28 s × (7/8)^48 < 50 ms
        #expect(scheduler.pacedUntil == nil)
        // Other retryable answers keep the plain backoff, and do not pace.
        scheduler.begin(batchCount: 10)
        _ = scheduler.handle(apiAnswer(503), now: now, using: &rng)
        #expect(scheduler.pace == .zero)
    }

    @Test func successResetsFailures() {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 2)
        for _ in 1...5 { _ = scheduler.handle(apiAnswer(500), now: ManualInstant(), using: &rng) }
        #expect(scheduler.consecutiveFailures == 5)
        #expect(scheduler.handle(apiAnswer(200), now: ManualInstant(), using: &rng) == [.deliver(0..<10)])
        #expect(scheduler.consecutiveFailures == 0)
        #expect(scheduler.notBefore == nil)
        #expect(scheduler.state == .idle)
        // The next failure starts again at the initial cap.
        scheduler.begin(batchCount: 3)
        var twin = SplitMix64(seed: 77)
        var rng2 = SplitMix64(seed: 77)
        let expected = scheduler.backoff.delay(failures: 1, retryAfter: nil, using: &twin)
        #expect(
            scheduler.handle(apiAnswer(500), now: ManualInstant(), using: &rng2)
                == [.waitUntil(ManualInstant(offset: expected))])
    }

    @Test func authAlertRaisedOnceWaitsRetryMaxAndClearsOnSuccess() {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 3)
        var clock = ManualClock()
        let alert = DeliveryAlert(
            kind: .auth, status: 401,
            message: "the API answered 401: check the token (TRACKQ_TOKEN or --token-file), then send SIGHUP")
        let first = scheduler.handle(apiAnswer(401), now: clock.now, using: &rng)
        #expect(first == [.raiseAlert(alert), .waitUntil(clock.now.advanced(by: retryMax))])
        #expect(scheduler.alert == alert)
        #expect(scheduler.state == .alert)
        #expect(scheduler.nextRange() == 0..<10)

        clock.advance(by: retryMax)
        let second = scheduler.handle(apiAnswer(401), now: clock.now, using: &rng)
        #expect(second == [.waitUntil(clock.now.advanced(by: retryMax))], "no second raise, no jitter")

        clock.advance(by: retryMax)
        #expect(scheduler.handle(apiAnswer(200), now: clock.now, using: &rng) == [.deliver(0..<10), .clearAlert])
        #expect(scheduler.alert == nil)
        #expect(scheduler.state == .idle)

        scheduler.begin(batchCount: 4)
        #expect(scheduler.handle(apiAnswer(200), now: clock.now, using: &rng) == [.deliver(0..<4)], "cleared once")
    }

    @Test func endpointAlertFor404And405AndOther4xx() {
        for status in [404, 405, 410, 418, 451] {
            var scheduler = makeScheduler()
            var rng = SplitMix64(seed: 4)
            let now = ManualInstant(offset: .seconds(1))
            let actions = scheduler.handle(apiAnswer(status), now: now, using: &rng)
            let alert = DeliveryAlert(
                kind: .endpoint, status: status, message: "the API answered \(status): check --endpoint")
            #expect(actions == [.raiseAlert(alert), .waitUntil(now.advanced(by: retryMax))])
            #expect(scheduler.nextRange() == 0..<10, "nothing is dropped")
        }
    }

    @Test func changeOfKindOrStatusRaisesAgain() {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 6)
        let now = ManualInstant()
        let a = scheduler.handle(apiAnswer(403), now: now, using: &rng)
        #expect(a.first == .raiseAlert(.forStatus(403, kind: .auth)))
        let b = scheduler.handle(apiAnswer(404), now: now, using: &rng)
        #expect(b == [.raiseAlert(.forStatus(404, kind: .endpoint)), .waitUntil(now.advanced(by: retryMax))])
        let c = scheduler.handle(apiAnswer(405), now: now, using: &rng)
        #expect(c.first == .raiseAlert(.forStatus(405, kind: .endpoint)), "same kind, new status")
        let d = scheduler.handle(apiAnswer(405), now: now, using: &rng)
        #expect(d == [.waitUntil(now.advanced(by: retryMax))])
        let e = scheduler.handle(apiAnswer(401), now: now, using: &rng)
        #expect(e.first == .raiseAlert(.forStatus(401, kind: .auth)))
    }

    @Test func a401WithoutAConfiguredTokenSaysThatTheTokenIsMissing() throws {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 7)
        scheduler.tokenMissing = true
        let actions = scheduler.handle(apiAnswer(401), now: ManualInstant(), using: &rng)
        guard case .raiseAlert(let alert) = try #require(actions.first) else {
            Issue.record("expected an alert, got \(actions)")
            return
        }
        #expect(alert.kind == .auth && alert.status == 401)
        #expect(alert.message.contains("trackq has no token: write it to /etc/trackq/token"))
    }

    @Test func retryableAnswerKeepsTheAlertUntilA2xx() {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 10)
        let now = ManualInstant()
        _ = scheduler.handle(apiAnswer(401), now: now, using: &rng)
        let actions = scheduler.handle(apiAnswer(503), now: now, using: &rng)
        #expect(actions.count == 1)
        #expect(scheduler.alert?.kind == .auth)
        #expect(scheduler.state == .alert)
        // The same alert after the 503 is not raised again.
        #expect(scheduler.handle(apiAnswer(401), now: now, using: &rng) == [.waitUntil(now.advanced(by: retryMax))])
    }

    @Test func alertAnswersCountAsFailures() {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 20)
        _ = scheduler.handle(apiAnswer(401), now: ManualInstant(), using: &rng)
        _ = scheduler.handle(apiAnswer(404), now: ManualInstant(), using: &rng)
        #expect(scheduler.consecutiveFailures == 2)
        // A retryable answer after them backs off from failure 3.
        var twin = rng
        let expected = scheduler.backoff.delay(failures: 3, retryAfter: nil, using: &twin)
        #expect(
            scheduler.handle(apiAnswer(502), now: ManualInstant(), using: &rng)
                == [.waitUntil(ManualInstant(offset: expected))])
    }

    @Test func retryNowDropsAnAuthWaitButKeepsTheAlert() {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 11)
        #expect(scheduler.retryNow() == false, "nothing to drop")
        _ = scheduler.handle(apiAnswer(401), now: ManualInstant(), using: &rng)
        #expect(scheduler.notBefore != nil)
        #expect(scheduler.retryNow() == true)
        #expect(scheduler.notBefore == nil)
        #expect(scheduler.alert?.kind == .auth, "the alert stays until a 2xx")
        #expect(scheduler.state == .sending)
        #expect(scheduler.retryNow() == false, "already dropped")
    }

    /// SIGHUP retries at once whatever the wait: a backoff, however long a Retry-After
    /// asked for, and an endpoint alert's.
    @Test func retryNowDropsABackoffAndAnEndpointWait() {
        var scheduler = makeScheduler()
        var rng = SplitMix64(seed: 12)
        _ = scheduler.handle(.response(status: 503, retryAfter: .seconds(3600), body: ""), now: ManualInstant(), using: &rng)
        #expect(scheduler.state == .backoff)
        #expect(scheduler.retryNow() == true)
        #expect(scheduler.notBefore == nil)
        #expect(scheduler.consecutiveFailures == 1, "failures count on")

        _ = scheduler.handle(apiAnswer(404), now: ManualInstant(), using: &rng)
        #expect(scheduler.state == .alert)
        #expect(scheduler.retryNow() == true)
        #expect(scheduler.state == .sending)
        #expect(scheduler.alert?.kind == .endpoint)
    }

    @Test func rejectionsAreNotFailures() {
        var scheduler = makeScheduler(batchCount: 8)
        var rng = SplitMix64(seed: 14)
        let now = ManualInstant()
        _ = scheduler.handle(apiAnswer(500), now: now, using: &rng)
        _ = scheduler.handle(apiAnswer(500), now: now, using: &rng)
        #expect(scheduler.consecutiveFailures == 2)
        let actions = scheduler.handle(apiAnswer(400, "bad"), now: now, using: &rng)
        #expect(actions.isEmpty, "the next range is sent at once")
        #expect(scheduler.consecutiveFailures == 2)
        #expect(scheduler.notBefore == nil)
        #expect(scheduler.state == .sending)
        #expect(scheduler.nextRange() == 0..<4)
        _ = scheduler.handle(apiAnswer(422), now: now, using: &rng)
        _ = scheduler.handle(apiAnswer(413), now: now, using: &rng)
        #expect(scheduler.consecutiveFailures == 2)
    }

    @Test func rejectionDoesNotClearAnAlert() {
        var scheduler = makeScheduler(batchCount: 4)
        var rng = SplitMix64(seed: 15)
        _ = scheduler.handle(apiAnswer(401), now: ManualInstant(), using: &rng)
        #expect(scheduler.handle(apiAnswer(400), now: ManualInstant(), using: &rng).isEmpty)
        #expect(scheduler.alert != nil)
    }

    @Test func singleEventRefusedIsDeadLettered() {
        for status in [400, 413, 422] {
            var scheduler = makeScheduler(batchCount: 1)
            var rng = SplitMix64(seed: 16)
            let actions = scheduler.handle(apiAnswer(status, "{\"error\":\"x\"}"), now: ManualInstant(), using: &rng)
            #expect(actions == [.deadLetter(index: 0, status: status, body: "{\"error\":\"x\"}")])
            #expect(scheduler.nextRange() == nil)
            #expect(scheduler.state == .idle)
        }
    }

    @Test func splitSequenceIsExact() {
        // 5 events, event 3 is bad.
        var scheduler = makeScheduler(batchCount: 5)
        var rng = SplitMix64(seed: 17)
        let now = ManualInstant()
        var log: [(Range<Int>, [DeliveryAction<ManualInstant>])] = []
        while let range = scheduler.nextRange() {
            let outcome = range.contains(3) ? apiAnswer(400, "bad 3") : apiAnswer(200)
            log.append((range, scheduler.handle(outcome, now: now, using: &rng)))
        }
        #expect(log.map(\.0) == [0..<5, 0..<3, 3..<4, 4..<5])
        #expect(
            log.map(\.1) == [
                [],
                [.deliver(0..<3)],  // 3..<5 is now known bad: split into 3..<4 and 4..<5 unsent
                [.deadLetter(index: 3, status: 400, body: "bad 3")],
                [.deliver(4..<5)],
            ])
    }

    @Test func retryDuringSplittingKeepsTheRange() {
        var scheduler = makeScheduler(batchCount: 4)
        var rng = SplitMix64(seed: 18)
        let now = ManualInstant()
        _ = scheduler.handle(apiAnswer(400), now: now, using: &rng)
        #expect(scheduler.nextRange() == 0..<2)
        _ = scheduler.handle(.transportError("timeout"), now: now, using: &rng)
        #expect(scheduler.nextRange() == 0..<2)
        #expect(scheduler.state == .backoff)
        #expect(scheduler.handle(apiAnswer(200), now: now, using: &rng) == [.deliver(0..<2)])
        #expect(scheduler.consecutiveFailures == 0)
        // 2..<4 holds the bad event: split unsent.
        #expect(scheduler.nextRange() == 2..<3)
    }

    @Test func stateThroughAScenario() {
        var scheduler = DeliveryScheduler<ManualInstant>(
            backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
        var rng = SplitMix64(seed: 19)
        var clock = ManualClock()
        #expect(scheduler.state == .idle)
        scheduler.begin(batchCount: 6)
        #expect(scheduler.state == .sending)
        _ = scheduler.handle(apiAnswer(503), now: clock.now, using: &rng)
        #expect(scheduler.state == .backoff)
        clock.advance(by: .seconds(1))
        _ = scheduler.handle(apiAnswer(401), now: clock.now, using: &rng)
        #expect(scheduler.state == .alert)
        #expect(scheduler.retryNow() == true)
        #expect(scheduler.state == .sending)
        _ = scheduler.handle(apiAnswer(401), now: clock.now, using: &rng)
        #expect(scheduler.state == .alert)
        clock.advance(by: retryMax)
        #expect(scheduler.handle(apiAnswer(200), now: clock.now, using: &rng) == [.deliver(0..<6), .clearAlert])
        #expect(scheduler.state == .idle)
        // A wait survives begin(): the next batch still waits.
        scheduler.begin(batchCount: 2)
        _ = scheduler.handle(apiAnswer(500), now: clock.now, using: &rng)
        scheduler.begin(batchCount: 3)
        #expect(scheduler.state == .backoff)
        #expect(scheduler.consecutiveFailures == 1)
        #expect(scheduler.nextRange() == 0..<3)
        _ = scheduler.handle(apiAnswer(204), now: clock.now, using: &rng)
        #expect(scheduler.state == .idle)
    }
}
