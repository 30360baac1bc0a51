/// What the database knows of the clock in boots before this one.
package struct ClockHistory: Sendable, Equatable {
    /// Judges this boot's clock: its floor is the latest synchronized wall time of an earlier boot.
    package var judge: ClockJudge
    /// How long each earlier boot ran, for ages across boots.
    package var earlierBoots: BootSpans
    /// Each earlier boot whose clock was synchronized at some point: the true time at its
    /// start (`wall - boottime` of that reading), from which any time of that boot follows.
    package var syncedOffsets: [Int64: Int64] = [:]

    /// Creates a value with every property given (or its default).
    package init(judge: ClockJudge, earlierBoots: BootSpans, syncedOffsets: [Int64: Int64] = [:]) {
        self.judge = judge
        self.earlierBoots = earlierBoots
        self.syncedOffsets = syncedOffsets
    }
}

/// The boots before this one, each with how long it is known to have run: its last recorded
/// `CLOCK_BOOTTIME` (none recorded, as for boots before trackq recorded them: zero).
package struct BootSpans: Sendable, Equatable {
    private var ids: [Int64] = []
    /// `later[i]`: the spans of the boots after `ids[i]`, added up.
    private var later: [Int64] = []
    private var spans: [Int64] = []

    package init(_ boots: [(id: Int64, spanMillis: Int64?)] = []) {
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
    package func millisAfter(_ boottimeMillis: Int64, inBoot boot: Int64) -> Int64? {
        guard let i = index(of: boot) else { return nil }
        return max(0, spans[i].saturatingSubtract(boottimeMillis)).saturatingAdd(later[i])
    }

    /// Whether `boot` is one of the boots before this one.
    package func contains(_ boot: Int64) -> Bool { index(of: boot) != nil }

    private func index(of boot: Int64) -> Int? {
        var low = 0
        var high = ids.count
        while low < high {
            let mid = (low + high) / 2
            if ids[mid] < boot { low = mid + 1 } else { high = mid }
        }
        return low < ids.count && ids[low] == boot ? low : nil
    }
}
