import Testing

@testable import TrackQueue

/// The delivery loop's decisions besides the scheduler's, as a plain value.
@Suite struct DeliveryPlanTests {
    private let timing = DeliveryPlan.Timing(linger: .milliseconds(100), readRetry: .seconds(1))

    @Test func anEmptyReadWaitsForEventsAtMostTheRecheck() {
        var plan = DeliveryPlan(timing: timing)
        #expect(plan.read(count: 0, ready: 0, holdUntilBoottime: nil, nowBoottime: 0) == .waitForEvents(.seconds(2)))
    }

    @Test func eventsHeldForTheClockWaitUntilTheirReleaseAnnouncedOnceAndAtMostAMinute() {
        var plan = DeliveryPlan(timing: timing)
        #expect(
            plan.read(count: 5, ready: 0, holdUntilBoottime: 10_500, nowBoottime: 10_000)
                == .holdForClock(.milliseconds(500), announce: true))
        #expect(
            plan.read(count: 5, ready: 0, holdUntilBoottime: 900_000, nowBoottime: 10_000)
                == .holdForClock(.seconds(60), announce: false), "said once, and a minute at most")
        #expect(
            plan.read(count: 5, ready: 0, holdUntilBoottime: 9_000, nowBoottime: 10_000)
                == .holdForClock(.milliseconds(1), announce: false), "a release in the past waits a millisecond, not none")
        #expect(plan.read(count: 5, ready: 5, holdUntilBoottime: nil, nowBoottime: 10_000) == .send(count: 5))
        #expect(
            plan.read(count: 5, ready: 0, holdUntilBoottime: 20_000, nowBoottime: 10_000)
                == .holdForClock(.seconds(10), announce: true), "a new hold is announced again")
    }

    @Test func theEventsBeforeAHeldOneAreSentAlone() {
        var plan = DeliveryPlan(timing: timing)
        #expect(plan.read(count: 5, ready: 3, holdUntilBoottime: 20_000, nowBoottime: 10_000) == .send(count: 3))
    }

    @Test func theNextBatchIsReadMeanwhileOnlyForAWholeBatchWhenAllIsWell() {
        let plan = DeliveryPlan(timing: timing)
        #expect(plan.prefetches(range: 0..<10, batchCount: 10, consecutiveFailures: 0))
        #expect(!plan.prefetches(range: 0..<5, batchCount: 10, consecutiveFailures: 0), "a bisection's half")
        #expect(!plan.prefetches(range: 0..<10, batchCount: 10, consecutiveFailures: 1), "after a failure")
    }

    @Test func aPrefetchedBatchGoesAtOnceWhenFullLingersWhenATrickleAndIsDroppedOtherwise() {
        let plan = DeliveryPlan(timing: timing)
        #expect(plan.finished(delivered: true, consecutiveFailures: 0, prefetched: (1000, true, 1000)) == .sendPrefetched)
        #expect(plan.finished(delivered: true, consecutiveFailures: 0, prefetched: (3, false, 3)) == .linger(.milliseconds(100)))
        #expect(plan.finished(delivered: false, consecutiveFailures: 0, prefetched: (1000, true, 1000)) == .read)
        #expect(plan.finished(delivered: true, consecutiveFailures: 1, prefetched: (1000, true, 1000)) == .read)
        #expect(plan.finished(delivered: true, consecutiveFailures: 0, prefetched: (1000, true, 999)) == .read, "one is held")
        #expect(plan.finished(delivered: true, consecutiveFailures: 0, prefetched: (0, false, 0)) == .read)
        #expect(plan.finished(delivered: true, consecutiveFailures: 0, prefetched: nil) == .read)
    }

    @Test func theSchedulerSaysOnceWhetherAnAnswerDelivered() {
        var scheduler = DeliveryScheduler<ContinuousClock.Instant>(backoff: Backoff(initial: .seconds(1), maximum: .seconds(8)))
        var random = SystemRandomNumberGenerator()
        scheduler.begin(batchCount: 2)
        _ = scheduler.handle(.response(status: 503, retryAfter: nil, body: ""), now: .now, using: &random)
        #expect(!scheduler.lastAnswerDelivered)
        _ = scheduler.handle(.response(status: 204, retryAfter: nil, body: ""), now: .now, using: &random)
        #expect(scheduler.lastAnswerDelivered)
        _ = scheduler.recordFailed(now: .now, using: &random)
        #expect(!scheduler.lastAnswerDelivered, "an answer that could not be recorded never happened")
    }
}
