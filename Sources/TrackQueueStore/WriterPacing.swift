/// When the writer commits delivery's writes, and when it gives space back: decisions on the
/// times passed in (nanoseconds of a monotonic clock), so they are tested without waiting.
///
/// - **Delivery shares the group commit.** While apps are writing (an ingest group committed
///   in the last ``joinWindow``), delivery's writes wait, at most until then plus the
///   window, for the next ingest group and go into its transaction. Acks streaming in then
///   do not wait behind transactions of delivery's own, and a burst pays one fsync per
///   group, not two. When apps are quiet, delivery commits at once, so a backlog drains at
///   full speed.
/// - **Space is given back when apps leave room.** A step of `incremental_vacuum` and a
///   checkpoint take milliseconds; one runs only when no ingest group has committed for
///   ``reclaimIdle``, or at most every ``reclaimEvery`` under steady ingest.
package struct WriterPacing: Sendable, Equatable {
    package static let millisecond: Int64 = 1_000_000

    package var joinWindow: Int64 = 5 * millisecond
    package var reclaimIdle: Int64 = 200 * millisecond
    package var reclaimEvery: Int64 = 5_000 * millisecond

    /// A drained backlog left free pages to give back.
    package var reclaimWanted: Bool = false
    package private(set) var lastIngestCommit: Int64?
    package private(set) var lastReclaim: Int64?

    package mutating func ingestCommitted(at now: Int64) { lastIngestCommit = now }

    /// Until when delivery's writes may wait for an ingest group; nil: commit them now.
    package func holdPartsUntil(now: Int64) -> Int64? {
        guard let last = lastIngestCommit else { return nil }
        let until = last.addingReportingOverflow(joinWindow).partialValue
        return until > now ? until : nil
    }

    /// When the next step of giving space back may run; nil: now (or nothing is wanted).
    package func nextReclaim(now: Int64) -> Int64? {
        guard reclaimWanted, let lastIngest = lastIngestCommit else { return nil }
        let idleAt = lastIngest.addingReportingOverflow(reclaimIdle).partialValue
        guard idleAt > now else { return nil }
        if let lastReclaim {
            let everyAt = lastReclaim.addingReportingOverflow(reclaimEvery).partialValue
            return everyAt > now ? min(idleAt, everyAt) : nil
        }
        return nil
    }

    package mutating func reclaimed(at now: Int64, more: Bool) {
        lastReclaim = now
        reclaimWanted = more
    }

    /// Creates a value with every property given (or its default).
    package init(
        joinWindow: Int64 = 5 * millisecond, reclaimIdle: Int64 = 200 * millisecond, reclaimEvery: Int64 = 5_000 * millisecond,
        reclaimWanted: Bool = false, lastIngestCommit: Int64? = nil, lastReclaim: Int64? = nil
    ) {
        self.joinWindow = joinWindow
        self.reclaimIdle = reclaimIdle
        self.reclaimEvery = reclaimEvery
        self.reclaimWanted = reclaimWanted
        self.lastIngestCommit = lastIngestCommit
        self.lastReclaim = lastReclaim
    }
}
