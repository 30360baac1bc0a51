import Foundation
import Testing

@testable import TrackQueue

/// 2026-11-28T00:00:00Z: a true time, after the release floor.
private let trueNow: Int64 = 1_795_824_000_000
private let year: Int64 = 365 * 86_400_000

@Suite struct ClockJudgeTests {
    @Test func syncedIsTheKernelsWordWrongIsBehindTheFloorAndAllElseIsUnknown() {
        let judge = ClockJudge(latestSyncedWallMillis: nil)
        #expect(judge.floorMillis == ClockJudge.releaseFloorMillis)
        #expect(judge.state(wallMillis: trueNow, kernelSynced: true) == .synced)
        // A VM whose hypervisor keeps good time while the kernel says unsynchronized.
        #expect(judge.state(wallMillis: trueNow, kernelSynced: false) == .unknown)
        #expect(judge.state(wallMillis: trueNow, kernelSynced: nil) == .unknown)
        // A board without a battery-backed clock, booted at 1970.
        #expect(judge.state(wallMillis: 5_000, kernelSynced: false) == .wrong)
        #expect(judge.state(wallMillis: 5_000, kernelSynced: nil) == .wrong)
        #expect(judge.state(wallMillis: ClockJudge.releaseFloorMillis - 1, kernelSynced: nil) == .wrong)
        #expect(judge.state(wallMillis: ClockJudge.releaseFloorMillis, kernelSynced: nil) == .unknown)
        // The kernel's word wins: it disciplines the clock.
        #expect(judge.state(wallMillis: 5_000, kernelSynced: true) == .synced)
    }

    @Test func aTimeAnEarlierBootSawWhileSyncedRaisesTheFloor() {
        // fake-hwclock restored the time saved at the last shutdown, a day before the last
        // time the earlier boot saw while synchronized.
        let judge = ClockJudge(latestSyncedWallMillis: trueNow)
        #expect(judge.floorMillis == trueNow - 60_000)
        #expect(judge.state(wallMillis: trueNow - 86_400_000, kernelSynced: false) == .wrong)
        #expect(judge.state(wallMillis: trueNow - 60_001, kernelSynced: false) == .wrong)
        // A real-time clock a few seconds slow, rebooted at once, is not called wrong.
        #expect(judge.state(wallMillis: trueNow - 5_000, kernelSynced: false) == .unknown)
        // A synchronized time before the release floor does not lower it.
        #expect(ClockJudge(latestSyncedWallMillis: 1000).floorMillis == ClockJudge.releaseFloorMillis)
    }

    @Test func theFloorComesFromEarlierBootsSyncedReadingsOnly() throws {
        let dir = try TestDirectory()
        do {
            let store = try QueueStore(path: dir.database, durability: .full, bootID: "boot-1")
            try store.recordClock(.init(wallMillis: trueNow, boottimeMillis: 9_000, kernelSynced: true), state: .synced)
            // Later in that boot the clock was set years ahead, by hand: no floor from that.
            try store.recordClock(.init(wallMillis: trueNow + 9 * year, boottimeMillis: 70_000, kernelSynced: false), state: .unknown)
        }
        let store = try QueueStore(path: dir.database, durability: .full, bootID: "boot-2")
        let history = try store.clockHistory()
        #expect(history.judge.floorMillis == trueNow - ClockJudge.driftAllowanceMillis)
        #expect(history.earlierBoots.millisAfter(0, inBoot: 1) == 70_000)
        // This boot's own readings are not history.
        try store.recordClock(.init(wallMillis: trueNow + year, boottimeMillis: 1_000, kernelSynced: true), state: .synced)
        #expect(try store.clockHistory().judge.floorMillis == trueNow - ClockJudge.driftAllowanceMillis)
    }
}

@Suite struct ClockRecordPolicyTests {
    let policy = ClockRecordPolicy()
    let last = ClockReading(wallMillis: trueNow, boottimeMillis: 100_000, kernelSynced: nil)

    func after(_ boottime: Int64, wall: Int64) -> ClockReading {
        ClockReading(wallMillis: wall, boottimeMillis: boottime, kernelSynced: nil)
    }

    @Test func aStepOfTheWallClockIsRecordedAtOnceAndNamed() {
        let forward = after(101_000, wall: trueNow + 1_000 + 86_400_000)
        #expect(policy.decide(last: last, lastState: .unknown, now: forward, state: .unknown) == .step(byMillis: 86_400_000))
        let back = after(101_000, wall: trueNow + 1_000 - 1_001)
        #expect(policy.decide(last: last, lastState: .unknown, now: back, state: .unknown) == .step(byMillis: -1_001))
        // Slewing by less than a second is not a step.
        let slewed = after(101_000, wall: trueNow + 1_000 + 999)
        #expect(policy.decide(last: last, lastState: .unknown, now: slewed, state: .unknown) == .skip)
    }

    @Test func aChangeOfStateAndEveryMinuteAreRecorded() {
        #expect(policy.decide(last: last, lastState: .unknown, now: after(100_500, wall: trueNow + 500), state: .synced) == .record)
        #expect(policy.decide(last: last, lastState: .synced, now: after(159_999, wall: trueNow + 59_999), state: .synced) == .skip)
        #expect(policy.decide(last: last, lastState: .synced, now: after(160_000, wall: trueNow + 60_000), state: .synced) == .record)
    }

    @Test func readingsFromAnywhereNeverTrap() {
        let wild = ClockReading(wallMillis: .min, boottimeMillis: .max, kernelSynced: nil)
        #expect(wild.offsetMillis == .min)
        #expect(policy.decide(last: wild, lastState: .wrong, now: last, state: .wrong) == .step(byMillis: .max))
    }
}

@Suite struct EventAgeTests {
    func event(boot: Int64, acceptedAt: Int64 = trueNow, boottime: Int64) -> OutgoingBatch.Event {
        OutgoingBatch.Event(id: 1, range: 0..<10, acceptedAtMillis: acceptedAt, acceptedBoottimeMillis: boottime, boot: boot)
    }

    @Test func withinABootAgeIsBoottimeWhateverTheWallClockDoes() {
        let event = event(boot: 7, boottime: 5_000)
        for wall in [trueNow + 5 * year, trueNow - 5 * year, 0] {
            let age = EventAge(
                maxAge: .seconds(1), now: .init(wallMillis: wall, boottimeMillis: 6_000, kernelSynced: nil),
                earlierBoots: BootSpans([(id: 3, spanMillis: 10)]), bootIDKnown: true)
            #expect(age.ageMillis(of: event) == 1_000)
            #expect(!age.isExpired(event))
        }
        let justOver = EventAge(
            maxAge: .seconds(1), now: .init(wallMillis: 0, boottimeMillis: 6_001, kernelSynced: nil), earlierBoots: BootSpans(),
            bootIDKnown: true)
        #expect(justOver.isExpired(event))
    }

    @Test func acrossBootsAgeIsWhatTheBootsRanAfterItNeverTheWallClocks() {
        // Accepted 1 s into boot 3, which ran 1 h; boot 4 ran 2 h; this boot is 100 s old.
        let spans = BootSpans([(id: 4, spanMillis: 7_200_000), (id: 3, spanMillis: 3_601_000)])
        let event = event(boot: 3, boottime: 1_000)
        for wall in [trueNow + 5 * year, trueNow - 5 * year] {
            let now = ClockReading(wallMillis: wall, boottimeMillis: 100_000, kernelSynced: nil)
            let age = EventAge(maxAge: .seconds(3 * 3600), now: now, earlierBoots: spans, bootIDKnown: true)
            #expect(age.ageMillis(of: event) == 3_600_000 + 7_200_000 + 100_000)
            #expect(age.isExpired(event))
            #expect(!EventAge(maxAge: .seconds(4 * 3600), now: now, earlierBoots: spans, bootIDKnown: true).isExpired(event))
        }
        // A boot trackq never recorded the clock in (before it did) counts as nothing.
        let unrecorded = BootSpans([(id: 3, spanMillis: nil), (id: 4, spanMillis: 60_000)])
        let now = ClockReading(wallMillis: trueNow, boottimeMillis: 100_000, kernelSynced: nil)
        #expect(EventAge(maxAge: .seconds(1), now: now, earlierBoots: unrecorded, bootIDKnown: true).ageMillis(of: event) == 160_000)
    }

    @Test func withoutABootIDAgeIsTheWallClocks() {
        let event = event(boot: 1, acceptedAt: trueNow, boottime: 50_000)
        let now = ClockReading(wallMillis: trueNow + 7_000, boottimeMillis: 1_000, kernelSynced: nil)
        let age = EventAge(maxAge: .seconds(5), now: now, earlierBoots: BootSpans(), bootIDKnown: false)
        #expect(age.ageMillis(of: event) == 7_000)
        #expect(age.isExpired(event))
    }

    @Test func valuesFromTheDatabaseFileNeverTrap() {
        let spans = BootSpans([(id: 1, spanMillis: .max), (id: 2, spanMillis: .max), (id: 3, spanMillis: .min)])
        let now = ClockReading(wallMillis: .min, boottimeMillis: .max, kernelSynced: nil)
        let age = EventAge(maxAge: .seconds(1), now: now, earlierBoots: spans, bootIDKnown: true)
        #expect(age.ageMillis(of: event(boot: 1, boottime: .min)) == .max)
        #expect(age.ageMillis(of: event(boot: 9, boottime: .min)) == .max)
        #expect(age.ageMillis(of: event(boot: 9, boottime: .max)) == 0)
        let wallOnly = EventAge(maxAge: .seconds(1), now: now, earlierBoots: spans, bootIDKnown: false)
        #expect(wallOnly.ageMillis(of: event(boot: 1, acceptedAt: .max, boottime: 0)) == .min)
    }
}

@Suite(.serialized) struct ClockDaemonTests {
    /// One daemon run with `clock`, the API down (nothing listens on the endpoint), until it
    /// has tried to deliver twice with that clock (or has nothing left to try).
    func runWithTheAPIDown(_ dir: borrowing TestDirectory, clock: TestHostClock, enqueue: Int = 0) async throws {
        let daemon = try await InProcessDaemon(directory: dir, clock: clock.hostClock) {
            $0.maxEventAge = .seconds(3600)
            $0.retryInitial = .milliseconds(20)
            $0.retryMax = .milliseconds(40)
        }
        if enqueue > 0 { try DeliveryTests.enqueue(enqueue, socket: daemon.socket) }
        let probe = DatabaseProbe(path: daemon.database)
        // On this run's clock: from its start to an hour later (an earlier run's clock may be
        // years ahead, and its record is still there).
        let started = clock.reading.wallMillis
        let window = "BETWEEN \(started) AND \(started + 3_600_000)"
        try await waitUntil("two attempts on this clock") {
            try probe.queued == 0
                || probe.scalar("SELECT last_attempt_at_ms \(window) AND consecutive_failures >= 2 FROM daemon_state") == 1
        }
        try await daemon.stop()
    }

    @Test func aRestartWithTheClockYearsAheadOrBehindExpiresNothing() async throws {
        let dir = try TestDirectory()
        let probe = DatabaseProbe(path: dir.database)
        let now = SystemClock.wallMillis()
        // Boot A: five events wait for the API.
        try await runWithTheAPIDown(
            dir, clock: TestHostClock(wallMillis: now, boottimeMillis: 60_000, kernelSynced: true, bootID: "boot-a"), enqueue: 5)
        // Boot B, ten seconds of boottime later: the wall clock five years ahead, then a boot
        // with it five years behind. --max-event-age is an hour; nothing is an hour old.
        try await runWithTheAPIDown(
            dir, clock: TestHostClock(wallMillis: now + 5 * year, boottimeMillis: 10_000, kernelSynced: false, bootID: "boot-b"))
        try await runWithTheAPIDown(
            dir, clock: TestHostClock(wallMillis: now - 5 * year, boottimeMillis: 10_000, kernelSynced: false, bootID: "boot-c"))
        #expect(try probe.scalar("SELECT count(*) FROM dead_letters") == 0)
        #expect(try probe.queued == 5)

        // The API is back: every event is delivered, none expired.
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let daemon = try await InProcessDaemon(
            directory: dir, clock: TestHostClock(wallMillis: now + 9 * year, boottimeMillis: 10_000, bootID: "boot-d").hostClock
        ) {
            $0.endpoint = server.url
            $0.maxEventAge = .seconds(3600)
        }
        try await waitUntil("the queue to drain") { try probe.queued == 0 }
        #expect(try probe.scalar("SELECT delivered FROM counters") == 5)
        #expect(try probe.scalar("SELECT count(*) FROM dead_letters") == 0)
        try await daemon.stop()
        try await server.stop()
    }

    @Test func theClockStateIsRecordedWithEachEventShownInStatusAndFollowsAStep() async throws {
        let dir = try TestDirectory()
        // A board booted at 1970 with no battery-backed clock, NTP not reached yet.
        let clock = TestHostClock(wallMillis: 5_000, boottimeMillis: 5_000, kernelSynced: false, bootID: "boot-1970")
        let daemon = try await InProcessDaemon(directory: dir, clock: clock.hostClock) { $0.clockCheckInterval = .milliseconds(20) }
        let probe = DatabaseProbe(path: daemon.database)
        try DeliveryTests.enqueue(3, socket: daemon.socket)
        #expect(try probe.strings("SELECT clock_state FROM queue ORDER BY id") == ["3", "3", "3"])

        let client = try UnixClient(path: daemon.socket)
        var status = try client.exchange(httpRequest("GET", "/status")).json
        var clockJSON = status["clock"] as? [String: Any]
        #expect(clockJSON?["state"] as? String == "wrong")
        // The clock runs on from 1970-01-01T00:00:05Z as the test goes.
        #expect((clockJSON?["read_at"] as? String)?.hasPrefix("1970-01-01T00:0") == true)
        #expect(clockJSON?["floor"] as? String == "2026-11-01T00:00:00.000Z")
        #expect(clockJSON?["boot_id_known"] as? Bool == true)
        let wrongReport = try StatusReader.read(database: daemon.database, clock: clock.hostClock)
        #expect(wrongReport.verdict.contains("the clock is wrong"))
        #expect(wrongReport.human(nowMillis: 5_000).contains("\nclock:        WRONG — it read 1970-01-01T00:0"))

        // NTP reaches a server and steps the clock to the true time.
        let now = SystemClock.wallMillis()
        clock.setWall(now, kernelSynced: true)
        try await waitUntil("the step to be recorded") {
            try probe.scalar("SELECT clock_state = 'synced' AND wall_ms >= \(now) FROM boots WHERE boot_id = 'boot-1970'") == 1
        }
        try DeliveryTests.enqueue(2, socket: daemon.socket)
        #expect(try probe.strings("SELECT clock_state FROM queue ORDER BY id") == ["3", "3", "3", "1", "1"])
        status = try client.exchange(httpRequest("GET", "/status")).json
        clockJSON = status["clock"] as? [String: Any]
        #expect(clockJSON?["state"] as? String == "synced")
        let metrics = try client.exchange(httpRequest("GET", "/metrics")).body
        #expect(metrics.contains(#"trackq_clock_state{state="synced"} 1"#))
        #expect(metrics.contains(#"trackq_clock_state{state="wrong"} 0"#))
        try await daemon.stop()
    }

    /// The events of every request the server received, in order.
    static func received(_ server: TestHTTPServer) -> [[String: Any]] {
        server.requests.flatMap { $0.jsonArray ?? [] }
    }

    static func note(_ event: [String: Any]) -> [String: String] {
        ((event["context"] as? [String: Any])?["trackq"] as? [String: String]) ?? [:]
    }

    @Test func eventsStampedAt1970WaitForTheClockAndGoWithTheirTrueTimes() async throws {
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let dir = try TestDirectory()
        let clock = TestHostClock(wallMillis: 5_000, boottimeMillis: 5_000, kernelSynced: false, bootID: "boot-1970")
        let daemon = try await InProcessDaemon(directory: dir, clock: clock.hostClock) {
            $0.endpoint = server.url
            $0.clockCheckInterval = .milliseconds(20)
            $0.batchLinger = .zero
        }
        let probe = DatabaseProbe(path: daemon.database)
        // One write, one group commit, one batch: an event with the app's own time, then
        // three trackq stamps at 1970.
        let client = try UnixClient(path: daemon.socket)
        var lines = #"{"event_name":"app_timed","user_id":"u","timestamp":"2026-01-02T03:04:05Z"}"# + "\n"
        for i in 0..<3 { lines += #"{"event_name":"stamped","user_id":"u","properties":{"seq":\#(i)}}"# + "\n" }
        try client.write(lines)
        _ = try client.readLines(4)
        let accepted = try probe.strings("SELECT accepted_boottime_ms FROM queue WHERE stamped = 1 ORDER BY id").compactMap { Int64($0) }
        #expect(accepted.count == 3)

        // The app's event goes at once; the stamps wait for the clock.
        try await waitUntil("the app's event to arrive") { try probe.scalar("SELECT delivered FROM counters") >= 1 }
        var events = Self.received(server)
        #expect(events.count == 1)
        #expect(events.first?["timestamp"] as? String == "2026-01-02T03:04:05Z")
        #expect(Self.note(events[0])["clock"] == "wrong")
        #expect(try probe.queued == 3)

        // NTP reaches a server and steps the clock to the true time.
        let now = SystemClock.wallMillis()
        clock.setWall(now, kernelSynced: true)
        try await waitUntil("the stamped events to arrive") { try probe.queued == 0 }
        events = Self.received(server)
        #expect(events.count == 4)
        let offset = clock.offsetMillis
        for (event, boottime) in zip(events.dropFirst(), accepted) {
            // To the millisecond: the boottime at accept plus the clock's offset now.
            let truth = RFC3339.format(millis: boottime + offset)
            #expect(event["timestamp"] as? String == truth)
            #expect(Self.note(event)["clock"] == "repaired")
            #expect(Self.note(event)["accepted_at"] == truth)
            #expect((Self.note(event)["sent_at"] ?? "") >= RFC3339.format(millis: now))
        }
        #expect(!server.requests.contains { $0.bodyText.contains("1970-01-01T00:00:0") && $0.bodyText.contains("stamped") })
        try await daemon.stop()
        try await server.stop()
    }

    @Test func afterTheSyncWaitStampsGoAsTheyAreAndSaySo() async throws {
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        let dir = try TestDirectory()
        let clock = TestHostClock(wallMillis: 5_000, boottimeMillis: 5_000, kernelSynced: false, bootID: "boot-1970")
        let daemon = try await InProcessDaemon(directory: dir, clock: clock.hostClock) {
            $0.endpoint = server.url
            $0.clockSyncWait = .milliseconds(300)
        }
        try DeliveryTests.enqueue(2, socket: daemon.socket)
        let stored = try DatabaseProbe(path: daemon.database).strings("SELECT accepted_at_ms FROM queue ORDER BY id")
        try await waitUntil("the events to arrive") { Self.received(server).count == 2 }
        for (event, acceptedAt) in zip(Self.received(server), stored) {
            let stamp = RFC3339.format(millis: Int64(acceptedAt)!)
            #expect(event["timestamp"] as? String == stamp)
            #expect(
                Self.note(event).filter { $0.key != "event_id" }
                    == ["clock": "wrong", "accepted_at": stamp, "sent_at": Self.note(event)["sent_at"] ?? "?"])
            #expect(Self.note(event)["sent_at"]?.hasPrefix("1970-01-01T00:00:0") == true)
        }
        try await daemon.stop()
        try await server.stop()
    }

    @Test func onAnUnknownClockNothingIsHeldOrChangedAndTheNoteCanBeTurnedOff() async throws {
        let server = try await TestHTTPServer.start { _, _ in .ok() }
        for annotate in [true, false] {
            let dir = try TestDirectory()
            let clock = TestHostClock(wallMillis: SystemClock.wallMillis(), kernelSynced: nil, bootID: "boot-vm")
            let daemon = try await InProcessDaemon(directory: dir, clock: clock.hostClock) {
                $0.endpoint = server.url
                $0.clockAnnotation = annotate
                $0.eventIDs = annotate  // both off: the event goes as stored
            }
            let probe = DatabaseProbe(path: daemon.database)
            let before = Self.received(server).count
            let client = try UnixClient(path: daemon.socket)
            try client.write(#"{"event_name":"e","user_id":"u","context":{"ip":"10.0.0.1"}}"# + "\n")
            _ = try client.readLine()
            let stored = try probe.strings("SELECT body FROM queue")
            try await waitUntil("the event to arrive") { try probe.queued == 0 }
            let sent = server.requests.last!.bodyText
            if annotate {
                let event = Self.received(server)[before]
                let stamp = try #require((stored.first?.split(separator: "\"").dropLast().last).map(String.init))
                #expect(event["timestamp"] as? String == stamp)
                #expect((event["context"] as? [String: Any])?["ip"] as? String == "10.0.0.1")
                #expect(Self.note(event)["clock"] == "unknown")
                #expect(Self.note(event)["accepted_at"] == stamp)
            } else {
                // Byte for byte what was stored.
                #expect(sent == "[" + stored[0] + "]")
            }
            try await daemon.stop()
        }
        try await server.stop()
    }

    @Test func anUnknownClockAndAnUnreadableBootIDAreSaidAsSuch() async throws {
        let dir = try TestDirectory()
        let clock = TestHostClock(wallMillis: SystemClock.wallMillis(), kernelSynced: nil, bootID: nil)
        let daemon = try await InProcessDaemon(directory: dir, clock: clock.hostClock)
        try DeliveryTests.enqueue(1, socket: daemon.socket)
        let probe = DatabaseProbe(path: daemon.database)
        #expect(try probe.strings("SELECT clock_state FROM queue") == ["2"])
        #expect(try probe.strings("SELECT boot_id FROM boots") == ["unknown"])
        let report = try StatusReader.read(database: daemon.database, clock: clock.hostClock)
        #expect(report.clock?.state == .unknown)
        #expect(report.clock?.bootIDKnown == false)
        #expect(!report.verdict.contains("clock"))
        #expect(report.human(nowMillis: SystemClock.wallMillis()).contains("the boot id cannot be read"))
        try await daemon.stop()
    }
}
