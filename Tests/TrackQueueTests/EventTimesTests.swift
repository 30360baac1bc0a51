import Foundation
import Testing

@testable import TrackQueue

/// 2026-11-28T00:00:00Z: a true time, after the release floor.
private let trueNow: Int64 = 1_795_824_000_000
private let hour: Int64 = 3_600_000

@Suite struct EventTimesTests {
    /// Boot rows: 3 and 4 are earlier boots (4 synchronized at some point), 9 is this one.
    let history = ClockHistory(
        judge: ClockJudge(latestSyncedWallMillis: nil),
        earlierBoots: BootSpans([(id: 3, spanMillis: 2 * hour), (id: 4, spanMillis: hour)]),
        syncedOffsets: [4: trueNow - 10 * hour])

    func times(wall: Int64, boottime: Int64, state: ClockState, syncWait: Int64 = hour, bootIDKnown: Bool = true) -> EventTimes {
        EventTimes(
            now: ClockReading(wallMillis: wall, boottimeMillis: boottime, kernelSynced: state == .synced), nowState: state,
            syncWaitMillis: syncWait, bootIDKnown: bootIDKnown, history: history)
    }

    /// An event accepted at boottime `boottime` of boot `boot` when the wall clock read `wall`.
    func event(wall: Int64, boottime: Int64, boot: Int64 = 9, state: ClockState, stamped: Bool = true) -> OutgoingBatch.Event {
        OutgoingBatch.Event(
            id: 1, range: 0..<1, acceptedAtMillis: wall, acceptedBoottimeMillis: boottime, boot: boot, clockState: state,
            stamped: stamped)
    }

    @Test func aTimeStampedAt1970IsRepairedOnceTheClockIsSetInTheSameBoot() {
        // Booted at 1970; accepted 5 s into the boot; NTP set the clock 40 s into the boot.
        let stamped = event(wall: 5_000, boottime: 5_000, state: .wrong)
        let now = times(wall: trueNow, boottime: 40_000, state: .synced)
        let truth = 5_000 + (trueNow - 40_000)
        #expect(now.verdict(for: stamped) == .send(.init(timestampMillis: truth, word: .repaired, acceptedAtMillis: truth)))
        // An app's own time is never changed; the true accept time is still told.
        let appTime = event(wall: 5_000, boottime: 5_000, state: .wrong, stamped: false)
        #expect(now.verdict(for: appTime) == .send(.init(timestampMillis: nil, word: .wrong, acceptedAtMillis: truth)))
        // A clock that is set but not known synchronized (unknown) repairs just the same.
        #expect(
            times(wall: trueNow, boottime: 40_000, state: .unknown).verdict(for: stamped)
                == .send(.init(timestampMillis: truth, word: .repaired, acceptedAtMillis: truth)))
    }

    @Test func whileTheClockIsWrongAStampWaitsAtMostTheSyncWait() {
        let stamped = event(wall: 5_000, boottime: 5_000, state: .wrong)
        let waiting = times(wall: 5_000 + 60_000, boottime: 65_000, state: .wrong)
        #expect(waiting.verdict(for: stamped) == .hold(untilBoottimeMillis: 5_000 + hour))
        // The wait is over: sent with the best time known, which is the stamp.
        let over = times(wall: 5_000 + hour, boottime: 5_000 + hour, state: .wrong)
        #expect(over.verdict(for: stamped) == .send(.init(timestampMillis: nil, word: .wrong, acceptedAtMillis: 5_000)))
        // --clock-sync-wait 0 holds nothing; an app's time is never held.
        #expect(
            times(wall: 65_000, boottime: 65_000, state: .wrong, syncWait: 0).verdict(for: stamped)
                == .send(.init(timestampMillis: nil, word: .wrong, acceptedAtMillis: 5_000)))
        let appTime = event(wall: 5_000, boottime: 5_000, state: .wrong, stamped: false)
        #expect(waiting.verdict(for: appTime) == .send(.init(timestampMillis: nil, word: .wrong, acceptedAtMillis: 5_000)))
    }

    @Test func anUnknownClockHoldsAndChangesNothingByItself() {
        let stamped = event(wall: trueNow, boottime: 5_000, state: .unknown)
        // The clock slewed by less than a second: no step.
        let now = times(wall: trueNow + 60_900, boottime: 65_000, state: .unknown)
        #expect(now.verdict(for: stamped) == .send(.init(timestampMillis: nil, word: .unknown, acceptedAtMillis: trueNow)))
    }

    @Test func aStampIsReDerivedOnlyFromAClockMoreToBeTrustedThanItsOwn() {
        // fake-hwclock restored a time 20 minutes behind (not below any floor: unknown);
        // NTP then stepped it: the stamps are repaired.
        let restored = event(wall: trueNow - 20 * 60_000, boottime: 5_000, state: .unknown)
        let synced = times(wall: trueNow + 35_000, boottime: 40_000, state: .synced)
        let truth = 5_000 + (trueNow + 35_000 - 40_000)
        #expect(synced.verdict(for: restored) == .send(.init(timestampMillis: truth, word: .repaired, acceptedAtMillis: truth)))
        // The same step on a clock the kernel still does not vouch for changes nothing.
        let stillUnknown = times(wall: trueNow + 35_000, boottime: 40_000, state: .unknown)
        #expect(
            stillUnknown.verdict(for: restored)
                == .send(.init(timestampMillis: nil, word: .unknown, acceptedAtMillis: trueNow - 20 * 60_000)))
        // A VM paused for an hour: its boottime stood still, then NTP stepped the synced
        // clock. The synced stamp was true and stays so.
        let beforePause = event(wall: trueNow, boottime: 5_000, state: .synced)
        let resumed = times(wall: trueNow + hour + 10_000, boottime: 15_000, state: .synced)
        #expect(resumed.verdict(for: beforePause) == .send(.init(timestampMillis: nil, word: .synced, acceptedAtMillis: trueNow)))
    }

    @Test func aHoldNeverOutlastsTheWaitFromNowWhateverTheFileSays() {
        // An accept boottime far ahead of now in the same boot (a restored or edited file).
        let ahead = event(wall: 5_000, boottime: 900 * hour, state: .wrong)
        let now = times(wall: 9_000, boottime: 9_000, state: .wrong)
        #expect(now.verdict(for: ahead) == .hold(untilBoottimeMillis: 9_000 + hour))
    }

    @Test func aTrueStampIsNotRewrittenFromAClockSetWrongLater() {
        let stamped = event(wall: trueNow, boottime: 5_000, state: .synced)
        // Someone set the clock a year ahead by hand; the kernel no longer says synchronized.
        let now = times(wall: trueNow + 365 * 24 * hour, boottime: 65_000, state: .unknown)
        #expect(now.verdict(for: stamped) == .send(.init(timestampMillis: nil, word: .synced, acceptedAtMillis: trueNow)))
    }

    @Test func anEarlierBootsStampIsRepairedFromItsSyncedOffsetOrElseEstimated() {
        let now = times(wall: trueNow, boottime: 100_000, state: .synced)
        // Boot 4 synchronized later on: its offset is known exactly.
        let fromSyncedBoot = event(wall: 5_000, boottime: 7_000, boot: 4, state: .wrong)
        let truth = 7_000 + trueNow - 10 * hour
        #expect(now.verdict(for: fromSyncedBoot) == .send(.init(timestampMillis: truth, word: .repaired, acceptedAtMillis: truth)))
        // Boot 3 never synchronized: the event is at least the rest of boot 3 (2 h - 7 s),
        // all of boot 4 (1 h) and this boot's 100 s old.
        let fromWrongBoot = event(wall: 5_000, boottime: 7_000, boot: 3, state: .wrong)
        let estimate = trueNow - (2 * hour - 7_000 + hour + 100_000)
        #expect(
            now.verdict(for: fromWrongBoot) == .send(.init(timestampMillis: estimate, word: .estimated, acceptedAtMillis: estimate)))
        // While this boot's clock is wrong too, it waits: at most the sync wait into this boot.
        let stillWrong = times(wall: 9_000, boottime: 100_000, state: .wrong)
        #expect(stillWrong.verdict(for: fromWrongBoot) == .hold(untilBoottimeMillis: hour))
        // An earlier boot's event on a clock that was not wrong is sent as it is.
        let fine = event(wall: trueNow - 5 * hour, boottime: 7_000, boot: 3, state: .unknown)
        #expect(now.verdict(for: fine) == .send(.init(timestampMillis: nil, word: .unknown, acceptedAtMillis: trueNow - 5 * hour)))
    }

    @Test func withoutABootIDNothingIsRepairedOrHeld() {
        let stamped = event(wall: 5_000, boottime: 5_000, state: .wrong)
        let now = times(wall: 6_000, boottime: 6_000, state: .wrong, bootIDKnown: false)
        #expect(now.verdict(for: stamped) == .send(.init(timestampMillis: nil, word: .wrong, acceptedAtMillis: 5_000)))
    }

    @Test func eventsBehindAHeldOneWaitWithItInQueueOrder() {
        var batch = OutgoingBatch()
        var events: [OutgoingBatch.Event] = []
        for (i, text) in [#"{"a":1}"#, #"{"b":2}"#, #"{"c":3}"#].enumerated() {
            if i > 0 { batch.body.append(UInt8(ascii: ",")) }
            let start = batch.body.count
            batch.body += Array(text.utf8)
            var e = event(wall: 5_000, boottime: 5_000, state: i == 0 ? .unknown : .wrong, stamped: i != 2)
            e.id = Int64(i + 1)
            e.range = start..<batch.body.count
            events.append(e)
        }
        batch.body.append(UInt8(ascii: "]"))
        batch.events = events
        batch.generation = 2
        let now = times(wall: 10_000, boottime: 10_000, state: .wrong)
        #expect(batch.releasable(now).count == 1)
        #expect(batch.releasable(now).holdUntilBoottimeMillis == 5_000 + hour)
        let first = batch.prefix(1)
        #expect(String(decoding: first.body, as: UTF8.self) == #"[{"a":1}]"#)
        #expect(first.events.map(\.range) == [1..<8])
        // Read from the file as a recovery left it: delivery records answers for it there.
        #expect(first.generation == 2)
        #expect(String(decoding: batch.prefix(3).body, as: UTF8.self) == String(decoding: batch.body, as: UTF8.self))
    }
}

@Suite struct EventRewriterTests {
    let repaired = EventTimeFix(timestampMillis: 1_795_824_000_123, word: .repaired, acceptedAtMillis: 1_795_824_000_123)
    let note = #""trackq":{"clock":"repaired","accepted_at":"2026-11-28T00:00:00.123Z","sent_at":"2026-11-28T00:01:00.000Z"}"#

    func rewrite(_ text: String, fix: EventTimeFix, annotate: Bool = true) -> String {
        var out: [UInt8] = []
        Array(text.utf8).withUnsafeBytes {
            EventRewriter.append($0, fix: fix, sentAtMillis: 1_795_824_060_000, annotate: annotate, to: &out)
        }
        let result = String(decoding: out, as: UTF8.self)
        #expect((try? JSONSerialization.jsonObject(with: Data(out))) != nil, "not JSON: \(result)")
        return result
    }

    @Test func aStampIsReplacedAndTheNoteGoesInANewContext() {
        let stored = #"{"event_name":"e","user_id":"u","timestamp":"1970-01-01T00:00:05.000Z"}"#
        #expect(
            rewrite(stored, fix: repaired)
                == #"{"event_name":"e","user_id":"u","timestamp":"2026-11-28T00:00:00.123Z","context":{"# + note + "}}")
        #expect(
            rewrite(stored, fix: repaired, annotate: false)
                == #"{"event_name":"e","user_id":"u","timestamp":"2026-11-28T00:00:00.123Z"}"#)
    }

    @Test func theNoteJoinsTheAppsContextAndReplacesATrackqItPutThere() {
        let fix = EventTimeFix(timestampMillis: nil, word: .repaired, acceptedAtMillis: 1_795_824_000_123)
        #expect(
            rewrite(#"{"event_name":"e","context":{"ip":"1.2.3.4"},"user_id":"u"}"#, fix: fix)
                == #"{"event_name":"e","context":{"# + note + #","ip":"1.2.3.4"},"user_id":"u"}"#)
        #expect(rewrite(#"{"context":{},"event_name":"e"}"#, fix: fix) == #"{"context":{"# + note + #"},"event_name":"e"}"#)
        #expect(rewrite(#"{"context":{ },"event_name":"e"}"#, fix: fix) == #"{"context":{"# + note + #" },"event_name":"e"}"#)
        #expect(
            rewrite(#"{"context":{"a":1,"trackq":{"clock":"forged"},"b":[2]},"event_name":"e"}"#, fix: fix)
                == #"{"context":{"a":1,"# + note + #","b":[2]},"event_name":"e"}"#)
        // A key spelled with escapes is the same key.
        #expect(
            rewrite(#"{"cont\u0065xt":{"a":1},"event_name":"e"}"#, fix: fix)
                == #"{"cont\u0065xt":{"# + note + #","a":1},"event_name":"e"}"#)
    }

    @Test func anAppsTimestampIsNeverTouched() {
        // A time the app gave may sit last too; without a fix it is left as it is.
        let stored = #"{"event_name":"e","user_id":"u","timestamp":"2026-01-02T03:04:05.000Z"}"#
        let fix = EventTimeFix(timestampMillis: nil, word: .synced, acceptedAtMillis: 1_795_824_000_123)
        #expect(rewrite(stored, fix: fix, annotate: false) == stored)
        #expect(rewrite(stored, fix: fix).hasPrefix(#"{"event_name":"e","user_id":"u","timestamp":"2026-01-02T03:04:05.000Z","#))
    }

    @Test func theNoteNeverAddsMoreThanBatchesAndMaxEventBytesAllowFor() {
        // The longest note: a new context, the longest word, the widest times.
        let fix = EventTimeFix(timestampMillis: nil, word: .estimated, acceptedAtMillis: .max)
        let stored = #"{"event_name":"e","user_id":"u"}"#
        let sent = rewrite(stored, fix: fix)
        #expect(sent.utf8.count - stored.utf8.count <= EventRewriter.maxNoteBytes)
        #expect(sent.utf8.count - stored.utf8.count > EventRewriter.maxNoteBytes - 16, "the allowance is not far above the need")
    }

    /// The walk to `context` steps over strings holding brackets, quotes and escapes, and
    /// over nested containers, without validating.
    @Test func theWalkStepsOverAnyValueBeforeTheContext() {
        let fix = EventTimeFix(timestampMillis: nil, word: .repaired, acceptedAtMillis: 1_795_824_000_123)
        let stored = #"{"a":"x}\"{[","n":-1.5e3,"t":true,"z":null,"l":[1,{"c":"]"},[]],"context":{"b":[1,{"c":"}"}]}}"#
        #expect(
            rewrite(stored, fix: fix)
                == #"{"a":"x}\"{[","n":-1.5e3,"t":true,"z":null,"l":[1,{"c":"]"},[]],"context":{"# + note
                + #","b":[1,{"c":"}"}]}}"#)
    }

    /// A stored text damaged on disk is sent as it is (the API refuses it, and it becomes a
    /// dead letter); nothing traps.
    @Test func aDamagedStoredTextIsSentAsItIs() {
        let fix = EventTimeFix(timestampMillis: nil, word: .repaired, acceptedAtMillis: 1_795_824_000_123)
        for damaged in [
            #"{"a":"x}"#, #"{"a":}"#, #"{"a" 1}"#, #"{"a":1 "b":2}"#, #"{"context":{"a":"x}"#, #"{"context":{"a":}}"#,
            #"{"context":[1}"#, #"{"a":[[[[}"#, #"{:1}"#, #"{"a":1,}"#, #"{"a"#, "{\"context\":{\"x\":\"\\\"}",
        ] {
            var out: [UInt8] = []
            Array(damaged.utf8).withUnsafeBytes {
                EventRewriter.append($0, fix: fix, sentAtMillis: 1_795_824_060_000, annotate: true, to: &out)
            }
            #expect(String(decoding: out, as: UTF8.self) == damaged)
        }
    }

    /// The parser never stores an event without members, but a file changed by hand may
    /// hold one: it is still sent as JSON, with the note as its only member.
    @Test func anEventWithoutMembersGetsAContextOfItsOwn() {
        let fix = EventTimeFix(timestampMillis: nil, word: .repaired, acceptedAtMillis: 1_795_824_000_123)
        #expect(rewrite("{}", fix: fix) == #"{"context":{"# + note + "}}")
        #expect(rewrite("{ }", fix: fix) == #"{ "context":{"# + note + "}}")
    }

    @Test func aStoredTextOfAnotherShapeIsSentAsItIs() {
        // No stamp at the end to replace, a context that is not an object: nothing guessed.
        let odd = #"{"event_name":"e","context":"x"}"#
        #expect(rewrite(odd, fix: repaired) == odd)
    }
}

extension EventRewriterTests {
    /// Random events, with strings of every length holding quotes, backslashes and brackets
    /// on either side of the 8-byte steps the walk takes: the note always lands in the
    /// event's own top-level `context` (or a new one), and every other member is sent as it
    /// was stored. `JSONSerialization` is the judge, not the walk.
    @Test func theNoteLandsInTheTopLevelContextOfAnyEvent() throws {
        var random = SplitMix64(seed: 20_261_128)
        let fix = EventTimeFix(timestampMillis: nil, word: .repaired, acceptedAtMillis: 1_795_824_000_123)
        let pieces = ["a", "b", "é", #"\""#, #"\\"#, "{", "}", "[", "]", ":", ",", " ", #"\u0041"#, "context", "trackq"]
        func string() -> String {
            "\"" + (0..<Int.random(in: 0..<24, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined() + "\""
        }
        /// An object of distinct keys; `context` and `trackq` among them, at any depth.
        func object(depth: Int) -> String {
            let keys = ["context", "trackq", "a", "b\\u0063", "x y"].shuffled(using: &random).prefix(Int.random(in: 0..<5, using: &random))
            return "{" + keys.map { "\"\($0)\":" + value(depth: depth + 1) }.joined(separator: ",") + "}"
        }
        func value(depth: Int) -> String {
            switch Int.random(in: 0..<(depth > 3 ? 2 : 4), using: &random) {
            case 0: return string()
            case 1: return ["-1.5e3", "0", "123456789", "true", "false", "null"].randomElement(using: &random)!
            case 2: return object(depth: depth)
            default:
                return "[" + (0..<Int.random(in: 0..<5, using: &random)).map { _ in value(depth: depth + 1) }.joined(separator: ",") + "]"
            }
        }
        func canonical(_ object: [String: Any]) throws -> String {
            String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        }
        for _ in 0..<2_000 {
            var members = (0..<Int.random(in: 0..<6, using: &random)).map { "\"m\($0)\":" + value(depth: 1) }
            let hasContext = Bool.random(using: &random)
            if hasContext {
                members.insert("\"context\":" + object(depth: 2), at: Int.random(in: 0...members.count, using: &random))
            }
            let stored = "{" + members.joined(separator: ",") + "}"
            let before = try #require(try JSONSerialization.jsonObject(with: Data(stored.utf8)) as? [String: Any], "\(stored)")
            let sent = rewrite(stored, fix: fix)
            var after = try #require(try JSONSerialization.jsonObject(with: Data(sent.utf8)) as? [String: Any], "\(sent)")
            var sentContext = try #require(after["context"] as? [String: Any], "\(stored) -> \(sent)")
            let note = sentContext.removeValue(forKey: "trackq") as? [String: Any]
            #expect(note?["clock"] as? String == "repaired", "\(stored) -> \(sent)")
            if hasContext {
                var storedContext = try #require(before["context"] as? [String: Any])
                storedContext["trackq"] = nil
                #expect(try canonical(sentContext) == canonical(storedContext), "\(stored) -> \(sent)")
                after["context"] = before["context"]
            } else {
                #expect(sentContext.isEmpty, "\(stored) -> \(sent)")
                after["context"] = nil
            }
            #expect(try canonical(after) == canonical(before), "\(stored) -> \(sent)")
        }
    }
}
