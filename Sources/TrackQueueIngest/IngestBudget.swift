import NIOConcurrencyHelpers

/// The bytes read from clients, framed into lines and not yet answered, across every
/// connection, and HTTP bodies. (Bytes not framed yet, the unfinished line a client may keep
/// for as long as it likes, are bounded by each connection: see ``IngestHandler``.)
///
/// Each connection bounds its own work in flight (``LineLimits``), but a thousand
/// connections each with a few megabytes in flight would still be gigabytes. So a connection
/// reads only while the total is under ``limit``; one that finds it over stops reading and is
/// woken when commits have brought it back under.
///
/// A read already asked for still brings what the client sent, so the total can pass the
/// limit by what one read brings on each connection. That is why a read is short (one
/// buffer of ``LineLimits/readBytes``) unless a longer one fits in the limit beside
/// the bytes held and the other long reads: see ``tryReserve(_:)``. A connection frames what
/// it has read without asking again, so what it held unframed (the part of a line it had, up
/// to the line limit, and the rest of a burst it could not frame for lack of room) is counted
/// when it is framed. So the total stays under twice the limit plus, for each connection, one
/// short read and what it held unframed, however many clients write at once.
package final class IngestBudget: Sendable {
    /// Default: room for groups of tens of thousands of events, far from the memory of a host.
    package static let defaultLimit = 8 << 20

    package let limit: Int
    private struct State {
        package var used = 0
        package var peak = 0
        package var reserved = 0
        package var waiters: [@Sendable () -> Void] = []

        package mutating func add(_ bytes: Int) {
            used += bytes
            peak = max(peak, used)
        }
    }
    private let state = NIOLockedValueBox(State())

    package init(limit: Int = IngestBudget.defaultLimit) { self.limit = limit }

    /// Whether a connection may read, or an HTTP request start, now (a lock, no allocation).
    package var admits: Bool { state.withLockedValue { $0.used < limit } }

    /// Registers `wake` to run (once) when a submission may start again, unless it may now.
    /// - Returns: whether it registered; if not, the caller goes on at once.
    package func waitForRoom(_ wake: @escaping @Sendable () -> Void) -> Bool {
        state.withLockedValue { state in
            if state.used < limit { return false }
            state.waiters.append(wake)
            return true
        }
    }

    /// Reserves room for a long read of `bytes` more than a short one, if it fits beside what
    /// is held and the other reservations. A reservation does not stop anyone reading (an idle
    /// connection may keep one for long); it only keeps long reads together within the limit.
    package func tryReserve(_ bytes: Int) -> Bool {
        state.withLockedValue { state in
            guard state.used + state.reserved + bytes <= limit else { return false }
            state.reserved += bytes
            return true
        }
    }

    /// A long read reserved with ``tryReserve(_:)`` happened (its bytes were taken) or will not.
    package func release(_ bytes: Int) {
        state.withLockedValue { $0.reserved -= bytes }
    }

    /// Takes `bytes` if a submission may start now (an HTTP request reserves its body's size
    /// before reading it, so a request waiting for room holds none).
    package func tryTake(_ bytes: Int) -> Bool {
        state.withLockedValue { state in
            guard state.used < limit else { return false }
            state.add(bytes)
            return true
        }
    }

    /// `bytes` were read (or a submission of them went to the writer).
    package func take(_ bytes: Int) {
        state.withLockedValue { state in
            state.add(bytes)
        }
    }

    /// `bytes` were answered (or dropped); wakes the connections waiting once under the limit.
    package func give(_ bytes: Int) {
        let woken = state.withLockedValue { state -> [@Sendable () -> Void] in
            state.used -= bytes
            guard state.used < limit, !state.waiters.isEmpty else { return [] }
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for wake in woken { wake() }
    }

    /// For tests: bytes held now, the most there have been, connections waiting, room reserved.
    package var snapshot: (used: Int, peak: Int, waiting: Int, reserved: Int) {
        state.withLockedValue { ($0.used, $0.peak, $0.waiters.count, $0.reserved) }
    }
}

extension IngestBudget {
    /// Whether a line connection's read may go now. When the budget is spent it may not: the
    /// connection waits, and `waker()` (built only then, not for every read) resumes it once
    /// there is room. A read while the budget is spent would hold its bytes, unframed, until
    /// there was room again, and so would every other connection. A connection whose last read
    /// filled its buffer also reserves room for a burst of reads, if there is some.
    package func admitRead(
        _ connection: inout LineConnection, burstBytes: Int, waker: () -> @Sendable () -> Void
    ) -> Bool {
        if !admits, waitForRoom(waker()) {
            connection.budgetSpent()
            return false
        }
        if connection.wantsBurst { connection.burst(reserved: tryReserve(burstBytes)) }
        return true
    }
}
