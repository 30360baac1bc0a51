/// Whether a queued event is too old to send.
///
/// Age is measured on `CLOCK_BOOTTIME` when the event was accepted during this boot, so a
/// wall-clock jump (NTP fixing a host that booted with a wrong clock) never expires a
/// healthy queue; across boots only the wall clock can tell.
struct EventAge: Sendable {
    var maxAge: Duration
    /// Now, on both clocks, and this boot's row in `boots`.
    var nowWallMillis: Int64
    var nowBoottimeMillis: Int64
    var currentBoot: Int64

    func ageMillis(of event: OutgoingBatch.Event) -> Int64 {
        event.boot == currentBoot
            ? nowBoottimeMillis - event.acceptedBoottimeMillis
            : nowWallMillis - event.acceptedAtMillis
    }

    func isExpired(_ event: OutgoingBatch.Event) -> Bool {
        .milliseconds(ageMillis(of: event)) > maxAge
    }
}
