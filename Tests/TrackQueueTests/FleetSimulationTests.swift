import Testing

@testable import TrackQueue

/// Issue 12, point 5: 1,000 hosts, each with a backlog, lose the API for an hour; it comes
/// back with a rate limit (429 with `Retry-After: 1` above N requests a second). Pure and
/// seeded: the real ``DeliveryScheduler`` and ``Backoff`` on a manual time line. The tables
/// are in BENCHMARKS.md ("A fleet coming back from an outage").
@Suite struct FleetSimulationTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var limit: Int
        var batchesPerHost: Int
        /// The most the API sees in any second after the first minute, as a multiple of its limit.
        var statedPeakFactor: Double
        var testDescription: String { "\(limit)/s, \(batchesPerHost) batches a host" }
    }

    @Test(arguments: [
        Case(limit: 100, batchesPerHost: 100, statedPeakFactor: 2),
        Case(limit: 20, batchesPerHost: 20, statedPeakFactor: 4),
        Case(limit: 5, batchesPerHost: 5, statedPeakFactor: 12),
    ])
    func aFleetComingBackFromAnHourLongOutageStaysNearTheAPIsLimit(_ scenario: Case) {
        var setup = FleetSimulation.Setup()
        setup.batchesPerHost = scenario.batchesPerHost
        setup.limitPerSecond = scenario.limit
        setup.latency = .milliseconds(100)
        let result = FleetSimulation.run(setup)
        let ideal = Double(setup.hosts * setup.batchesPerHost) / Double(setup.limitPerSecond)
        let drained = Double(result.drainTime.components.seconds)
        let peak = result.minutes.dropFirst().map { Double($0.peakPerSecond) / Double(setup.limitPerSecond) }.max() ?? 0
        let mean = result.minutes.dropFirst().map { Double($0.requests) / 60 / Double(setup.limitPerSecond) }.max() ?? 0
        let fixed = FleetSimulation.Result.fixed
        print(
            "fleet \(scenario.testDescription): drained in \(Int(drained)) s (at the limit: \(Int(ideal)) s); "
                + "after minute 1 the API saw at most \(fixed(peak))× its limit in a second, \(fixed(mean))× in a minute; "
                + "\(result.outageRequests) requests during the outage")
        print(result.table(limit: setup.limitPerSecond))
        #expect(peak <= scenario.statedPeakFactor)
        // Every minute but the last uses the API: the fleet drains within a quarter of the
        // time the limit itself allows.
        #expect(drained <= ideal * 1.25)
        #expect(result.minutes.count > 1)
    }
}
