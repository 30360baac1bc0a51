/// What ingest hands the store, and what it gets back: the contract between the two, so
/// neither knows the other's types.

/// What one request line amounts to once parsed, before the commit.
package enum LineEntry: Sendable {
    /// The line's events are the next `count` events of the submission's batch.
    case events(count: Int)
    /// The line was refused at parsing; it is answered with this error.
    case refused(IngestError)
}

/// The answer owed to one request line.
package enum LineAnswer: Sendable, Equatable {
    case accepted(count: Int, firstID: Int64, lastID: Int64)
    case refused(IngestError)
}

/// The lines one connection read in one go, handed to the writer as a unit.
package struct IngestSubmission: Sendable {
    package var batch: EventBatch
    package var lines: [LineEntry]
    /// When the lines were read: wall clock and `CLOCK_BOOTTIME`, in milliseconds.
    package var readAtMillis: Int64
    package var readAtBoottimeMillis: Int64
    /// Called on the writer thread with one answer per line, in order, after the commit.
    package var completion: @Sendable ([LineAnswer]) -> Void

    /// Every line refused: its own parse error, or `error` for lines that held events.
    package func refusingEvents(with error: IngestError) -> [LineAnswer] {
        lines.map { line in
            switch line {
            case .refused(let own): return .refused(own)
            case .events: return .refused(error)
            }
        }
    }

    /// Creates a value with every property given (or its default).
    package init(
        batch: EventBatch, lines: [LineEntry], readAtMillis: Int64, readAtBoottimeMillis: Int64,
        completion: @escaping @Sendable ([LineAnswer]) -> Void
    ) {
        self.batch = batch
        self.lines = lines
        self.readAtMillis = readAtMillis
        self.readAtBoottimeMillis = readAtBoottimeMillis
        self.completion = completion
    }
}

/// Where submissions go: the store's writer thread in the daemon; in a connection's tests, a
/// stand-in that answers when the test says.
package protocol IngestWriter: AnyObject, Sendable {
    /// Takes `submission`, and calls its completion once, with one answer per line, in order.
    /// Submissions from one connection are answered in the order they were made.
    func submit(_ submission: IngestSubmission)
}
