import TrackQueueEvent

/// A line-protocol connection as a value: its flags in one place, events in, steps out.
///
/// ``IngestHandler`` tells it what happened (bytes read, a submission answered, the peer's
/// writability, a half-close, a drain, the budget's room) and performs the ``Steps`` it
/// returns, in their fixed order; it frames only while ``mayFrame``, passes a read on only
/// when ``mayRead``, and closes only when ``isDone``. Nothing here touches a channel, the
/// budget or the writer, so every path is tested as a plain value (`LineConnectionTests`).
///
/// The rules it keeps: a connection frames and parses only while fewer than
/// `maxOutstanding` of its submissions await their commit and while its peer reads its
/// answers; it reads only once every byte read is framed, while its input is open and the
/// budget has room; it closes once its input has ended (or a drain came), every line read is
/// answered, and nothing is left to frame.
package struct LineConnection: Sendable {
    /// What the handler does next, always in this order.
    package struct Steps: OptionSet, Sendable {
        package let rawValue: UInt8
        package init(rawValue: UInt8) { self.rawValue = rawValue }
        /// Give back the room reserved for a burst of reads.
        package static let releaseBurst = Steps(rawValue: 1 << 0)
        /// Frame and parse what was read, while ``LineConnection/mayFrame``.
        package static let frame = Steps(rawValue: 1 << 1)
        /// Hand the lines framed so far to the writer as one submission.
        package static let submit = Steps(rawValue: 1 << 2)
        /// Pass a requested read on, if ``LineConnection/mayRead`` (and the budget has room).
        package static let read = Steps(rawValue: 1 << 3)
        /// Close, once the last answer is written, if ``LineConnection/isDone``.
        package static let closeIfDone = Steps(rawValue: 1 << 4)

        /// More room (an answer, writability, the budget): use it.
        package static let resume: Steps = [.frame, .submit, .read, .closeIfDone]
    }

    package enum Input: Sendable, Equatable {
        case open
        /// The client sent EOF or went away: a last line without a newline still counts.
        case ended
        /// The daemon is stopping: what was read is answered, nothing more is read.
        case draining
    }

    package let maxOutstanding: Int
    package let readsPerBurst: UInt
    package private(set) var input = Input.open
    /// Submissions handed to the writer and not answered yet.
    package private(set) var outstanding = 0
    /// A read was requested and not passed on yet.
    package private(set) var readPending = false
    /// The budget was spent when a read was to start: reading waits for ``budgetGranted()``.
    package private(set) var waitingForBudget = false
    /// Every byte read is framed; a line may be incomplete.
    package private(set) var needsMoreData = true
    /// Lines are framed and not submitted yet.
    package private(set) var holdsLines = false
    package private(set) var writable = true
    package private(set) var active = true
    /// The last read filled its buffer: the client has more to send, and the next read may be
    /// a burst. A client gone quiet reads (and reserves room for) no burst.
    package private(set) var lastReadFilled = false
    /// Room is reserved in the budget for a burst of reads.
    package private(set) var burstReserved = false

    package init(maxOutstanding: Int, readsPerBurst: UInt) {
        precondition(maxOutstanding >= 1 && readsPerBurst >= 1)
        self.maxOutstanding = maxOutstanding
        self.readsPerBurst = readsPerBurst
    }

    // MARK: Questions the handler asks

    /// Whether more work may be in flight. A connection nobody reads from any more (inactive)
    /// still gets its lines committed, at the same pace.
    package var hasRoom: Bool { outstanding < maxOutstanding && (writable || !active) }
    package var mayFrame: Bool { !needsMoreData && hasRoom }
    package var mayRead: Bool { readPending && input == .open && needsMoreData && !waitingForBudget && hasRoom }
    /// A last line without a newline is a line now.
    package var lastLineNeedsNoNewline: Bool { input == .ended }
    package var isDone: Bool { input != .open && outstanding == 0 && !holdsLines && needsMoreData && active }
    /// A burst of reads is worth reserving room for.
    package var wantsBurst: Bool { !burstReserved && lastReadFilled && readsPerBurst > 1 }
    /// Reads in the next go: a burst only with room reserved for it.
    package var readsPerRead: UInt { burstReserved ? readsPerBurst : 1 }

    // MARK: Events

    package mutating func readRequested() -> Steps {
        readPending = true
        return .read
    }

    package mutating func readPassed() { readPending = false }

    package mutating func budgetSpent() { waitingForBudget = true }

    package mutating func budgetGranted() -> Steps {
        waitingForBudget = false
        return .resume
    }

    package mutating func burst(reserved: Bool) { burstReserved = reserved }

    /// - Parameter filledBuffer: the read filled its buffer (as NIO decides whether to read
    ///   again at once). A reset or a read error ends the connection; what was read is committed.
    package mutating func bytesRead(filledBuffer: Bool) -> Steps {
        lastReadFilled = filledBuffer
        needsMoreData = false
        return .frame
    }

    /// The framer used every byte it could: it waits for more, or for the end of input.
    package mutating func framerNeedsMoreData() { needsMoreData = true }

    package mutating func lineTaken() { holdsLines = true }

    package mutating func submitted() {
        outstanding += 1
        holdsLines = false
    }

    /// The lines framed were all blank (or the rest of a line too long): nothing to submit.
    package mutating func nothingSubmitted() { holdsLines = false }

    /// NIO's reads for this go are over: submit what they brought (one submission for a
    /// burst), and free the burst's room.
    package mutating func readComplete() -> Steps {
        defer { burstReserved = false }
        return burstReserved ? [.releaseBurst, .submit] : .submit
    }

    package mutating func answered() -> Steps {
        precondition(outstanding > 0, "an answer for no submission")
        outstanding -= 1
        return .resume
    }

    package mutating func writabilityChanged(to writable: Bool) -> Steps {
        self.writable = writable
        return .resume
    }

    /// The client closed its side (`socat` at the end of its input): answer what it sent.
    package mutating func inputEnded() -> Steps {
        input = .ended
        needsMoreData = false  // the last line needs no newline now
        return [.frame, .submit, .closeIfDone]
    }

    package mutating func drain() -> Steps {
        if input == .open { input = .draining }
        return [.frame, .submit, .closeIfDone]
    }

    /// The client went away. What it sent is committed all the same: nobody reads the
    /// answers, but the app may rely on "written is queued".
    package mutating func inactive() -> Steps {
        input = .ended
        active = false
        needsMoreData = false
        return [.frame, .submit]
    }

    /// The handler leaves the pipeline: the read reserved for will not come.
    package mutating func removed() -> Steps {
        defer { burstReserved = false }
        return burstReserved ? .releaseBurst : []
    }
}

/// What one line connection may read, hold and have in flight.
package struct LineLimits: Sendable {
    package var maxLineBytes: Int = TrackAPI.maxRequestBytes
    /// The largest buffer one read fills (NIO's adaptive allocator sizes it up to this).
    package var readBytes: Int = 16 << 10
    /// Reads in one go when the budget has room for them; 1 otherwise.
    package var readsPerBurst: UInt = 16
    /// Submissions awaiting their commit, at most.
    package var maxOutstanding: Int = 16
    package var maxSubmissionLines: Int = 1024
    package var maxSubmissionBytes: Int = 1 << 20

    /// The room a burst of reads needs beyond one read.
    package var burstBytes: Int { Int(readsPerBurst - 1) * readBytes }

    /// Creates a value with every property given (or its default).
    package init(
        maxLineBytes: Int = TrackAPI.maxRequestBytes, readBytes: Int = 16 << 10, readsPerBurst: UInt = 16, maxOutstanding: Int = 16,
        maxSubmissionLines: Int = 1024, maxSubmissionBytes: Int = 1 << 20
    ) {
        self.maxLineBytes = maxLineBytes
        self.readBytes = readBytes
        self.readsPerBurst = readsPerBurst
        self.maxOutstanding = maxOutstanding
        self.maxSubmissionLines = maxSubmissionLines
        self.maxSubmissionBytes = maxSubmissionBytes
    }
}
