import Testing

@testable import TrackQueue

/// A batch of `count` events with ids 1…count.
private func batch(_ count: Int) -> OutgoingBatch {
    var batch = OutgoingBatch()
    for i in 0..<count {
        batch.events.append(.init(id: Int64(i + 1), range: 0..<10, acceptedAtMillis: 0, acceptedBoottimeMillis: 0, boot: 1))
    }
    return batch
}

/// Drives the real scheduler and the record keeper together, as the delivery loop does, on
/// a manual clock whose wall time is 1,000,000 ms plus the manual offset.
private struct Rig {
    var scheduler = DeliveryScheduler<ManualInstant>(backoff: Backoff(initial: .seconds(1), maximum: .seconds(300)))
    var keeper = DeliveryRecordKeeper(loaded: DeliveryRecord())
    var clock = ManualClock()
    var rng = SplitMix64(seed: 7)
    let events: OutgoingBatch

    init(events: Int = 4) {
        self.events = batch(events)
        scheduler.begin(batchCount: events)
    }

    var wallMillis: Int64 { 1_000_000 + clock.now.offset.milliseconds }

    mutating func answer(_ outcome: DeliveryOutcome) -> (commit: DeliveryCommit, effects: [DeliveryEffect]) {
        let attempt = wallMillis
        let actions = scheduler.handle(outcome, now: clock.now, using: &rng)
        return keeper.answered(
            outcome, actions: actions, scheduler: scheduler, batch: events, attemptAtMillis: attempt,
            nowMillis: wallMillis, now: clock.now)
    }

    /// Waits out the scheduler's wait, as the loop would.
    mutating func waitOut() {
        if let notBefore = scheduler.notBefore { clock.advance(to: notBefore) }
        if scheduler.nextRange() == nil { scheduler.begin(batchCount: events.count) }
    }
}

private func http(_ status: Int, _ body: String = "") -> DeliveryOutcome {
    .response(status: status, retryAfter: nil, body: body)
}

@Suite struct DeliveryRecordKeeperTests {
    @Test func aNewRunStartsCleanButKeepsHistory() {
        var loaded = DeliveryRecord()
        loaded.state = .alert
        loaded.consecutiveFailures = 9
        loaded.nextAttemptAtMillis = 5
        loaded.alertKind = .auth
        loaded.alertStatus = 401
        loaded.alertSinceMillis = 3
        loaded.alertMessage = "m"
        loaded.lastSuccessAtMillis = 42
        let keeper = DeliveryRecordKeeper(loaded: loaded)
        var expected = DeliveryRecord()
        expected.lastSuccessAtMillis = 42
        #expect(keeper.record == expected)
    }

    @Test func successRecordsTheDeliveryAndNothingToSay() {
        var rig = Rig()
        let (commit, effects) = rig.answer(http(200))
        #expect(commit.delivered.map(\.id) == [1, 2, 3, 4])
        #expect(commit.refused.isEmpty)
        #expect(commit.record.state == .idle)
        #expect(commit.record.lastStatus == 200)
        #expect(commit.record.lastSuccessAtMillis == 1_000_000)
        #expect(commit.record.lastAttemptAtMillis == 1_000_000)
        #expect(commit.record.lastError == nil)
        #expect(effects == [.backoffSeconds(0)])
    }

    @Test func aFailureThenRecoveryIsSaidOnceEachWithTheWaitInTheRecord() {
        var rig = Rig()
        let first = rig.answer(http(503, "busy"))
        let wait = rig.clock.now.duration(to: rig.scheduler.notBefore!)
        #expect(first.commit.delivered.isEmpty)
        #expect(first.commit.record.state == .backoff)
        #expect(first.commit.record.consecutiveFailures == 1)
        #expect(first.commit.record.lastError == "HTTP 503: busy")
        #expect(first.commit.record.nextAttemptAtMillis == 1_000_000 + wait.milliseconds)
        #expect(
            first.effects == [
                .backoffSeconds(Double(wait.milliseconds) / 1000),
                .log(.warning, "delivery failed; backing off", metadata: ["error": "HTTP 503: busy"]),
                .status("backoff: HTTP 503: busy"),
            ])

        rig.waitOut()
        let second = rig.answer(.transportError("connection refused"))
        #expect(second.commit.record.consecutiveFailures == 2)
        #expect(second.commit.record.lastStatus == nil)
        #expect(second.commit.record.lastError == "connection refused")
        // Only the first failure is announced.
        #expect(!second.effects.contains { if case .status = $0 { true } else { false } })

        rig.waitOut()
        let recovered = rig.answer(http(200))
        #expect(recovered.commit.delivered.count == 4)
        #expect(recovered.commit.record.state == .idle)
        #expect(recovered.commit.record.consecutiveFailures == 0)
        #expect(recovered.commit.record.nextAttemptAtMillis == nil)
        #expect(recovered.commit.record.lastSuccessAtMillis == rig.wallMillis)
        #expect(
            recovered.effects == [
                .backoffSeconds(0),
                .log(.notice, "delivery recovered", metadata: ["failures": "2"]),
                .status("sending"),
            ])
    }

    @Test func anAlertIsRaisedOnceAndClearedByTheNext2xx() {
        var rig = Rig()
        let raised = rig.answer(http(401))
        let alert = DeliveryAlert.forStatus(401, kind: .auth)
        #expect(raised.commit.record.state == .alert)
        #expect(raised.commit.record.alertKind == .auth)
        #expect(raised.commit.record.alertStatus == 401)
        #expect(raised.commit.record.alertSinceMillis == 1_000_000)
        #expect(raised.commit.record.alertMessage == alert.message)
        #expect(raised.commit.record.nextAttemptAtMillis == Int64(1_300_000))
        #expect(raised.effects.contains(.alertCommand(raised: true, alert)))
        #expect(raised.effects.contains(.status("alert: \(alert.message)")))

        rig.waitOut()
        let again = rig.answer(http(401))
        #expect(!again.effects.contains { if case .alertCommand = $0 { true } else { false } })
        #expect(again.commit.record.alertSinceMillis == 1_000_000)  // since the first raise

        rig.waitOut()
        let cleared = rig.answer(http(200))
        #expect(cleared.commit.record.alertKind == nil)
        #expect(cleared.commit.record.alertMessage == nil)
        #expect(cleared.commit.record.state == .idle)
        #expect(
            cleared.effects.contains(
                .alertCommand(raised: false, DeliveryAlert(kind: .auth, status: 401, message: "delivery works again"))))
        #expect(cleared.effects.contains(.log(.notice, "alert cleared: the API accepts events again")))
    }

    @Test func aRefusedEventGoesToTheDeadLettersWithItsAnswer() {
        var rig = Rig(events: 2)
        #expect(rig.answer(http(400, "bad")).commit.refused.isEmpty)  // split: nothing decided yet
        let firstHalf = rig.answer(http(200))
        #expect(firstHalf.commit.delivered.map(\.id) == [1])
        let alone = rig.answer(http(400, #"{"error":"poison"}"#))
        #expect(alone.commit.refused.map(\.event.id) == [2])
        #expect(alone.commit.refused.first?.status == 400)
        #expect(alone.commit.refused.first?.response == #"{"error":"poison"}"#)
        #expect(alone.commit.record.consecutiveFailures == 0)
        #expect(
            alone.effects.contains(
                .log(
                    .warning, "the API refused an event; moved to the dead letters", metadata: ["event.id": "2", "http.status": "400"])))
    }

    @Test func anEmptyQueueIsAnnouncedOnceAfterWork() {
        var keeper = DeliveryRecordKeeper(loaded: DeliveryRecord())
        #expect(keeper.queueEmpty() == nil)
        var rig = Rig()
        _ = rig.answer(http(503))
        keeper = rig.keeper
        let idle = keeper.queueEmpty()
        #expect(idle?.record.state == .idle)
        #expect(idle?.record.nextAttemptAtMillis == nil)
        #expect(idle?.effects == [.status("idle: queue empty")])
        #expect(keeper.queueEmpty() == nil)
    }

    /// A standing alert (trust files that cannot be used) hidden by a 401's is shown again by
    /// the 2xx that clears the 401's, and the recovery leaves systemd's status saying it.
    @Test func aStandingAlertShownAgainKeepsTheStatusLine() {
        var rig = Rig()
        let trust = DeliveryAlert(kind: .tls, status: 0, message: "--ca-file x holds no PEM certificate")
        _ = rig.keeper.alertsChanged(rig.scheduler.raise(trust), nowMillis: rig.wallMillis)
        _ = rig.answer(http(401))
        #expect(rig.keeper.record.alertStatus == 401)
        rig.waitOut()
        let (commit, effects) = rig.answer(http(200))
        #expect(commit.record.alertKind == .tls && commit.record.alertMessage == trust.message)
        #expect(effects.contains(.alertCommand(raised: true, trust)))
        let statuses = effects.compactMap { if case .status(let line) = $0 { line } else { nil } }
        #expect(statuses.last == "alert: \(trust.message)", "\(statuses)")
    }
}
