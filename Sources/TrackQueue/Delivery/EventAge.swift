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
struct EventAge: Sendable {
    var maxAge: Duration
    /// Now, on both clocks.
    var now: ClockReading
    /// The boots before this one. An event of any other boot row is this boot's.
    var earlierBoots: BootSpans
    /// False when the boot id cannot be read: ages are then the wall clock's.
    var bootIDKnown: Bool

    func ageMillis(of event: OutgoingBatch.Event) -> Int64 {
        guard bootIDKnown else { return now.wallMillis.saturatingSubtract(event.acceptedAtMillis) }
        if let before = earlierBoots.millisAfter(event.acceptedBoottimeMillis, inBoot: event.boot) {
            return before.saturatingAdd(max(0, now.boottimeMillis))
        }
        return now.boottimeMillis.saturatingSubtract(event.acceptedBoottimeMillis)
    }

    func isExpired(_ event: OutgoingBatch.Event) -> Bool {
        .milliseconds(ageMillis(of: event)) > maxAge
    }
}

/// The boots before this one, each with how long it is known to have run: its last recorded
/// `CLOCK_BOOTTIME` (none recorded, as for boots before trackq recorded them: zero).
struct BootSpans: Sendable, Equatable {
    private var ids: [Int64] = []
    /// `later[i]`: the spans of the boots after `ids[i]`, added up.
    private var later: [Int64] = []
    private var spans: [Int64] = []

    init(_ boots: [(id: Int64, spanMillis: Int64?)] = []) {
        let sorted = boots.sorted { $0.id < $1.id }
        ids = sorted.map(\.id)
        spans = sorted.map { max(0, $0.spanMillis ?? 0) }
        later = Array(repeating: 0, count: spans.count)
        var sum: Int64 = 0
        for i in spans.indices.reversed() {
            later[i] = sum
            sum = sum.saturatingAdd(spans[i])
        }
    }

    /// The time from `boottimeMillis` in boot `boot` to the end of the last earlier boot, at
    /// least; nil when `boot` is not an earlier boot.
    func millisAfter(_ boottimeMillis: Int64, inBoot boot: Int64) -> Int64? {
        var low = 0
        var high = ids.count
        while low < high {
            let mid = (low + high) / 2
            if ids[mid] < boot { low = mid + 1 } else { high = mid }
        }
        guard low < ids.count, ids[low] == boot else { return nil }
        return max(0, spans[low].saturatingSubtract(boottimeMillis)).saturatingAdd(later[low])
    }
}
