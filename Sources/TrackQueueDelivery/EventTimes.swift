import TrackQueueClock
import TrackQueueStore

/// What `context.trackq.clock` says of an event's time.
public enum ClockWord: String, Sendable, Equatable {
    /// The clock was synchronized when trackq accepted it.
    case synced
    /// The kernel did not say; the time is used as the clock gave it.
    case unknown
    /// trackq stamped it on a wrong clock, and has since learned the true time of the stamp
    /// exactly (the clock was set in the same boot, or that boot's clock synchronized later).
    case repaired
    /// trackq stamped it on a wrong clock in an earlier boot that never synchronized: its time
    /// is now's true time less the event's age on the boots' clocks, which leaves out any time
    /// the host was off, so it errs late.
    case estimated
    /// The clock was wrong when trackq accepted it, and no better time is known.
    case wrong

    package init(_ state: ClockState) {
        switch state {
        case .synced: self = .synced
        case .unknown: self = .unknown
        case .wrong: self = .wrong
        }
    }
}

/// How delivery sends one event's time.
package struct EventTimeFix: Sendable, Equatable {
    /// The `timestamp` to send instead of the stored one; only ever for a time trackq stamped.
    package var timestampMillis: Int64?
    package var word: ClockWord
    /// `context.trackq.accepted_at`: when trackq accepted it, in true time when that is known.
    package var acceptedAtMillis: Int64

    /// Creates a value with every property given (or its default).
    package init(timestampMillis: Int64?, word: ClockWord, acceptedAtMillis: Int64) {
        self.timestampMillis = timestampMillis
        self.word = word
        self.acceptedAtMillis = acceptedAtMillis
    }
}

package enum EventTimeVerdict: Sendable, Equatable {
    /// Not yet: stamped on a wrong clock that may still be set. Ask again at this boottime.
    case hold(untilBoottimeMillis: Int64)
    case send(EventTimeFix)
}

/// Decides, for each queued event, whether it waits for the clock and what time it is sent
/// with: a pure value, made for one moment (`now`).
///
/// - This boot: the clock's offset (`wall - boottime`) changes only when the clock is set.
///   When it moved by more than a second since the event was accepted, the true accept time
///   is `boottime_at_accept + offset_now`, if the clock is now more to be trusted than it
///   was: a stamp made while `wrong`, once the clock is not; a stamp made while `unknown`,
///   once it is `synced` (NTP stepping a clock fake-hwclock restored). A `synced` stamp is
///   never re-derived (a VM paused and resumed steps a synced clock, and its boottime did not
///   run meanwhile), nor an `unknown` one from a clock still `unknown` (set by hand, maybe
///   wrongly): `unknown` alters nothing by itself.
/// - An earlier boot whose clock synchronized at some point: the same, with that boot's
///   synchronized offset.
/// - An earlier boot that never synchronized, its event stamped while the clock was wrong:
///   estimated, once the clock is not wrong, as now less the event's age across boots.
/// - A time stamped while the clock was wrong waits, while it still is, at most
///   `--clock-sync-wait` of boottime from its accept (from this boot's start, for an
///   earlier boot's), then goes with the best time known.
/// - A time the app gave is never changed; only `accepted_at` and the word tell.
/// - Without a boot id, boottimes of different boots cannot be told apart: nothing is
///   repaired or held.
package struct EventTimes: Sendable {
    package var now: ClockReading
    package var nowState: ClockState
    /// `--clock-sync-wait` in ms; 0 holds nothing.
    package var syncWaitMillis: Int64
    package var bootIDKnown: Bool
    package var history: ClockHistory

    /// The least move of the clock's offset that counts as the clock being set.
    package static let stepMillis: Int64 = 1000

    package func verdict(for event: OutgoingBatch.Event) -> EventTimeVerdict {
        let state = event.clockState ?? .unknown
        let asStored = EventTimeFix(timestampMillis: nil, word: ClockWord(state), acceptedAtMillis: event.acceptedAtMillis)
        guard bootIDKnown else { return .send(asStored) }
        let clockWrong = nowState == .wrong

        if let elapsed = history.earlierBoots.millisAfter(event.acceptedBoottimeMillis, inBoot: event.boot) {
            // That boot's synchronized offset is more to be trusted than any unsynced stamp of it.
            if state != .synced, let offset = history.syncedOffsets[event.boot] {
                return .send(fix(event, state: state, trueAcceptMillis: event.acceptedBoottimeMillis.saturatingAdd(offset)))
            }
            guard state == .wrong else { return .send(asStored) }
            if clockWrong {
                if event.stamped && now.boottimeMillis < syncWaitMillis { return .hold(untilBoottimeMillis: syncWaitMillis) }
                return .send(asStored)
            }
            let estimate = now.wallMillis.saturatingSubtract(elapsed.saturatingAdd(max(0, now.boottimeMillis)))
            return .send(
                EventTimeFix(
                    timestampMillis: event.stamped ? estimate : nil, word: event.stamped ? .estimated : .wrong,
                    acceptedAtMillis: estimate))
        }

        // This boot.
        let moved = now.offsetMillis.saturatingSubtract(
            event.acceptedAtMillis.saturatingSubtract(event.acceptedBoottimeMillis))
        if moved > Self.stepMillis || moved < -Self.stepMillis, Self.trustGrew(from: state, to: nowState) {
            return .send(fix(event, state: state, trueAcceptMillis: event.acceptedBoottimeMillis.saturatingAdd(now.offsetMillis)))
        }
        if clockWrong, event.stamped, state == .wrong, syncWaitMillis > 0 {
            // Never longer than the wait from now: a boottime from the file may lie ahead.
            let until = min(
                event.acceptedBoottimeMillis.saturatingAdd(syncWaitMillis), now.boottimeMillis.saturatingAdd(syncWaitMillis))
            if now.boottimeMillis < until { return .hold(untilBoottimeMillis: until) }
        }
        return .send(asStored)
    }

    /// Whether a clock now in state `now` tells a stamp's time better than it was told when
    /// the stamp was made in state `then`.
    package static func trustGrew(from then: ClockState, to now: ClockState) -> Bool {
        switch (then, now) {
        case (.wrong, .synced), (.wrong, .unknown), (.unknown, .synced): true
        default: false
        }
    }

    /// The event with its true accept time known: a stamp that was off by more than a
    /// second is repaired; the app's own time is left alone.
    private func fix(_ event: OutgoingBatch.Event, state: ClockState, trueAcceptMillis: Int64) -> EventTimeFix {
        let off = trueAcceptMillis.saturatingSubtract(event.acceptedAtMillis)
        guard event.stamped, off > Self.stepMillis || off < -Self.stepMillis else {
            return EventTimeFix(timestampMillis: nil, word: ClockWord(state), acceptedAtMillis: trueAcceptMillis)
        }
        return EventTimeFix(timestampMillis: trueAcceptMillis, word: .repaired, acceptedAtMillis: trueAcceptMillis)
    }

    /// Creates a value with every property given (or its default).
    package init(now: ClockReading, nowState: ClockState, syncWaitMillis: Int64, bootIDKnown: Bool, history: ClockHistory) {
        self.now = now
        self.nowState = nowState
        self.syncWaitMillis = syncWaitMillis
        self.bootIDKnown = bootIDKnown
        self.history = history
    }
}

extension EventTimes {
    /// The time `event` is sent with now, held or not (a batch already chosen goes whole).
    package func fix(for event: OutgoingBatch.Event) -> EventTimeFix {
        switch verdict(for: event) {
        case .send(let fix): return fix
        case .hold: return EventTimeFix(timestampMillis: nil, word: .wrong, acceptedAtMillis: event.acceptedAtMillis)
        }
    }
}

extension OutgoingBatch {
    /// How many events from the first may be sent now; when none may, the boottime at which
    /// to ask again (events behind a held one wait with it: the queue keeps its order).
    package func releasable(_ times: EventTimes) -> (count: Int, holdUntilBoottimeMillis: Int64?) {
        for (i, event) in events.enumerated() {
            if case .hold(let until) = times.verdict(for: event) { return (i, until) }
        }
        return (events.count, nil)
    }

    /// The first `count` events.
    package func prefix(_ count: Int) -> OutgoingBatch {
        var batch = OutgoingBatch()
        batch.generation = generation
        batch.body = body(of: 0..<count)
        var offset = 1
        for event in events.prefix(count) {
            var moved = event
            moved.range = offset..<(offset + event.range.count)
            offset = moved.range.upperBound + 1
            batch.events.append(moved)
        }
        return batch
    }

    /// The bytes to POST for the events of `range`: as stored when nothing is to change,
    /// otherwise each event with its repaired time and `context.trackq` (``EventRewriter``).
    package func sendBody(_ range: Range<Int>, times: EventTimes, annotate: Bool, eventIDs: Bool = false) -> [UInt8] {
        let fixes = events[range].map(times.fix(for:))
        guard annotate || eventIDs || fixes.contains(where: { $0.timestampMillis != nil }) else {
            return range == events.indices ? body : body(of: range)
        }
        var out: [UInt8] = [UInt8(ascii: "[")]
        out.reserveCapacity(body.count + range.count * EventRewriter.noteBytes(annotate: annotate, eventIDs: eventIDs))
        var texts = EventRewriter.TimeTexts()
        body.withUnsafeBytes { all in
            for (event, fix) in zip(events[range], fixes) {
                if out.count > 1 { out.append(UInt8(ascii: ",")) }
                EventRewriter.append(
                    UnsafeRawBufferPointer(rebasing: all[event.range]), fix: fix, sentAtMillis: times.now.wallMillis,
                    annotate: annotate, eventID: eventIDs ? event.uuid : nil, to: &out, times: &texts)
            }
        }
        out.append(UInt8(ascii: "]"))
        return out
    }

    /// The stored bytes of the events of `range`, as one JSON array.
    package func body(of range: Range<Int>) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "[")]
        for event in events[range] {
            if out.count > 1 { out.append(UInt8(ascii: ",")) }
            out += body[event.range]
        }
        out.append(UInt8(ascii: "]"))
        return out
    }
}
