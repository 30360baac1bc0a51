import TrackQueueClock
import TrackQueueStore

/// Whether a queued event is too old to send: `--max-event-age`.
///
/// Age is never measured by comparing wall clocks from different boots: an edge host's wall
/// clock may be years off until NTP reaches a server, and jumps when it does. Within a boot,
/// age is `CLOCK_BOOTTIME`'s difference, which counts suspend and never jumps. Across boots,
/// it is the boottime the event's boot ran on after it (as the `boots` table last recorded,
/// at most a minute short), plus every boot in between, plus this boot's boottime: a lower
/// bound, since the time the host was off is not counted. So a wrong wall clock expires
/// nothing, and a host that is off keeps its events past their age rather than losing them.
///
/// Only where the boot id cannot be read (all boots then share one row) is age the wall
/// clock's difference; the daemon warns of it at start.
package struct EventAge: Sendable {
    package var maxAge: Duration
    /// Now, on both clocks.
    package var now: ClockReading
    /// The boots before this one. An event of any other boot row is this boot's.
    package var earlierBoots: BootSpans
    /// False when the boot id cannot be read: ages are then the wall clock's.
    package var bootIDKnown: Bool

    package func ageMillis(of event: OutgoingBatch.Event) -> Int64 {
        guard bootIDKnown else { return now.wallMillis.saturatingSubtract(event.acceptedAtMillis) }
        if let before = earlierBoots.millisAfter(event.acceptedBoottimeMillis, inBoot: event.boot) {
            return before.saturatingAdd(max(0, now.boottimeMillis))
        }
        return now.boottimeMillis.saturatingSubtract(event.acceptedBoottimeMillis)
    }

    package func isExpired(_ event: OutgoingBatch.Event) -> Bool {
        .milliseconds(ageMillis(of: event)) > maxAge
    }

    /// Creates a value with every property given (or its default).
    package init(maxAge: Duration, now: ClockReading, earlierBoots: BootSpans, bootIDKnown: Bool) {
        self.maxAge = maxAge
        self.now = now
        self.earlierBoots = earlierBoots
        self.bootIDKnown = bootIDKnown
    }
}
