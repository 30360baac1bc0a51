import NIOConcurrencyHelpers

/// The bytes of parsed events waiting for their commit, across every connection.
///
/// Each connection bounds its own work in flight (``IngestHandler/Limits``), but a thousand
/// connections each with a few megabytes in flight would still be gigabytes. So a connection
/// starts a new submission only while the total is under ``limit``; one that finds it over
/// stops reading and is woken when commits have brought it back under. The total can pass
/// the limit by at most one submission per event loop (their checks race), so memory stays
/// flat however many clients write at once.
final class IngestBudget: Sendable {
    /// Default: room for groups of tens of thousands of events, far from the memory of a host.
    static let defaultLimit = 8 << 20

    let limit: Int
    private struct State {
        var used = 0
        var peak = 0
        var waiters: [@Sendable () -> Void] = []

        mutating func add(_ bytes: Int) {
            used += bytes
            peak = max(peak, used)
        }
    }
    private let state = NIOLockedValueBox(State())

    init(limit: Int = IngestBudget.defaultLimit) { self.limit = limit }

    /// Whether a new submission may start now (once per submission: a lock, no allocation).
    var admits: Bool { state.withLockedValue { $0.used < limit } }

    /// Registers `wake` to run (once) when a submission may start again, unless it may now.
    /// - Returns: whether it registered; if not, the caller goes on at once.
    func waitForRoom(_ wake: @escaping @Sendable () -> Void) -> Bool {
        state.withLockedValue { state in
            if state.used < limit { return false }
            state.waiters.append(wake)
            return true
        }
    }

    /// Takes `bytes` if a submission may start now (an HTTP request reserves its body's size
    /// before reading it, so a request waiting for room holds none).
    func tryTake(_ bytes: Int) -> Bool {
        state.withLockedValue { state in
            guard state.used < limit else { return false }
            state.add(bytes)
            return true
        }
    }

    /// A submission of `bytes` went to the writer.
    func take(_ bytes: Int) {
        state.withLockedValue { state in
            state.add(bytes)
        }
    }

    /// A submission of `bytes` was answered; wakes the connections waiting once under the limit.
    func give(_ bytes: Int) {
        let woken = state.withLockedValue { state -> [@Sendable () -> Void] in
            state.used -= bytes
            guard state.used < limit, !state.waiters.isEmpty else { return [] }
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for wake in woken { wake() }
    }

    /// For tests: bytes in flight now, the most there have been, connections waiting.
    var snapshot: (used: Int, peak: Int, waiting: Int) {
        state.withLockedValue { ($0.used, $0.peak, $0.waiters.count) }
    }
}
