/// What one request line amounts to once parsed, before the commit.
enum LineEntry: Sendable {
    /// The line's events are the next `count` events of the submission's batch.
    case events(count: Int)
    /// The line was refused at parsing; it is answered with this error.
    case refused(IngestError)
}

/// The answer owed to one request line.
enum LineAnswer: Sendable, Equatable {
    case accepted(count: Int, firstID: Int64, lastID: Int64)
    case refused(IngestError)
}

/// The lines one connection read in one go, handed to the writer as a unit.
struct IngestSubmission: Sendable {
    var batch: EventBatch
    var lines: [LineEntry]
    /// When the lines were read: wall clock and `CLOCK_BOOTTIME`, in milliseconds.
    var readAtMillis: Int64
    var readAtBoottimeMillis: Int64
    /// Called on the writer thread with one answer per line, in order, after the commit.
    var completion: @Sendable ([LineAnswer]) -> Void

    /// Every line refused: its own parse error, or `error` for lines that held events.
    func refusingEvents(with error: IngestError) -> [LineAnswer] {
        lines.map { line in
            switch line {
            case .refused(let own): return .refused(own)
            case .events: return .refused(error)
            }
        }
    }
}

extension QueueStore {
    /// Appends a group of submissions in one transaction: the group commit.
    ///
    /// - Returns: one answer per line of each submission, in order; lines that would take
    ///   the queue past `maxQueueBytes` are refused with `queue_full`.
    /// - Throws: when the transaction failed; nothing of the group was stored.
    func append(_ group: [IngestSubmission], maxQueueBytes limit: Int64) throws -> [[LineAnswer]] {
        var answers: [[LineAnswer]] = []
        answers.reserveCapacity(group.count)
        try transaction { delta in
            _ = try ensureBootRow()
            let pendingBefore = counters.pendingBytes
            for submission in group {
                var lineAnswers: [LineAnswer] = []
                lineAnswers.reserveCapacity(submission.lines.count)
                var next = 0  // index of the line's first event in the batch
                for line in submission.lines {
                    switch line {
                    case .refused(let error):
                        lineAnswers.append(.refused(error))
                        delta.rejected += 1
                    case .events(let count):
                        let range = next..<(next + count)
                        next += count
                        guard count > 0 else {
                            lineAnswers.append(.accepted(count: 0, firstID: 0, lastID: 0))
                            continue
                        }
                        let bytes = submission.batch.byteCount(of: range)
                        if pendingBefore + delta.pendingBytes + Int64(bytes) > limit {
                            lineAnswers.append(.refused(.queueFull(limit: limit)))
                            delta.rejected += 1
                            continue
                        }
                        var first: Int64 = 0
                        var last: Int64 = 0
                        for i in range {
                            last = try submission.batch.withEventBytes(i) { body in
                                try insertEvent(
                                    body,
                                    acceptedAtMillis: submission.readAtMillis,
                                    boottimeMillis: submission.readAtBoottimeMillis)
                            }
                            if i == range.lowerBound { first = last }
                        }
                        delta.accepted += Int64(count)
                        delta.pendingEvents += Int64(count)
                        delta.pendingBytes += Int64(bytes)
                        lineAnswers.append(.accepted(count: count, firstID: first, lastID: last))
                    }
                }
                answers.append(lineAnswers)
            }
        }
        return answers
    }
}

extension IngestError {
    static func queueFull(limit: Int64) -> IngestError {
        IngestError(.queueFull, "the queue is full: max-queue-bytes (\(limit)) reached; retry later")
    }

    static func unavailable(_ error: any Error) -> IngestError {
        let reason: String
        if let sqlite = error as? SQLiteError, sqlite.isFull {
            reason = "the disk is full"
        } else {
            reason = "the database cannot be written (\(error))"
        }
        return IngestError(.unavailable, "\(reason); nothing from this line was stored, retry later")
    }

    static let stopped = IngestError(.unavailable, "the daemon is stopping; nothing from this line was stored, retry later")
}

extension EventBatch {
    /// Total bytes of the events in `range`.
    func byteCount(of range: Range<Int>) -> Int {
        guard let first = range.first, let last = range.last else { return 0 }
        let start = first == 0 ? 0 : ends[first - 1]
        return ends[last] - start
    }

    /// Hands event `i`'s bytes to `body` without copying them.
    func withEventBytes<T>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        let start = i == 0 ? 0 : ends[i - 1]
        return try bytes.withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[start..<ends[i]]))
        }
    }
}
