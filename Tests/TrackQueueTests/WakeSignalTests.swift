import Testing

@testable import TrackQueue

@Suite struct WakeSignalTests {
    @Test func aWaitReturnsForTheReasonsItAcceptsOnly() async {
        let wake = WakeSignal()
        wake.signal(.newEvents)
        // A backing-off sender (accepting shutdown and reload only) sleeps through new events.
        #expect(await wake.wait(for: [.shutdown, .reload], until: .now + .milliseconds(100)) == nil)
        // The new-events signal was kept for the next idle wait.
        #expect(await wake.wait(for: [.newEvents]) == .newEvents)
    }

    @Test func signalsAWaitDoesNotTakeLeaveItAsleep() async throws {
        let wake = WakeSignal()
        async let reason = wake.wait(for: [.shutdown])
        try await waitUntil("the wait to park") { wake.hasWaiter }
        // The writer signals new events after every commit; a lingering sender sleeps on.
        for _ in 0..<3 {
            wake.signal(.newEvents)
            try await waitUntil("the wait to park again") { wake.hasWaiter }
        }
        #expect(wake.wakes == 0)
        wake.signal(.shutdown)
        #expect(await reason == .shutdown)
        #expect(wake.wakes == 1)
    }

    @Test func aSignalDuringTheWaitEndsIt() async {
        let wake = WakeSignal()
        async let reason = wake.wait(for: [.reload, .shutdown], until: .now + .seconds(60))
        wake.signal(.reload)
        #expect(await reason == .reload)
    }

    @Test func shutdownWinsOverOtherPendingReasons() async {
        let wake = WakeSignal()
        wake.signal(.newEvents)
        wake.signal(.shutdown)
        #expect(await wake.wait(for: [.newEvents, .shutdown]) == .shutdown)
        #expect(wake.take([.newEvents]) == .newEvents)
        #expect(wake.take([.newEvents]) == nil)
    }

    @Test func cancellationEndsAWait() async {
        let wake = WakeSignal()
        let task = Task { await wake.wait(for: [.newEvents]) }
        task.cancel()
        #expect(await task.value == .shutdown)
    }
}
