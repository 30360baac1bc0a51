import CSQLite
import NIOCore
import TrackQueueClock
import TrackQueueEvent

extension QueueStore {
    /// Appends a group of submissions in one transaction: the group commit.
    ///
    /// - Parameter clock: the state of the clock each submission was read at.
    /// - Returns: one answer per line of each submission, in order; lines that would take
    ///   the queue past `maxQueueBytes` are refused with `queue_full`.
    /// - Throws: when the transaction failed; nothing of the group was stored.
    package func append(
        _ group: [IngestSubmission], maxQueueBytes limit: Int64, clock: (IngestSubmission) -> ClockState = { _ in .unknown }
    ) throws -> [[LineAnswer]] {
        try transaction { delta in try append(group, maxQueueBytes: limit, clock: clock, delta: &delta) }
    }

    /// ``append(_:maxQueueBytes:clock:)`` inside a transaction already open.
    package func append(
        _ group: [IngestSubmission], maxQueueBytes limit: Int64, clock: (IngestSubmission) -> ClockState,
        delta: inout QueueCounters
    ) throws -> [[LineAnswer]] {
        var answers: [[LineAnswer]] = []
        answers.reserveCapacity(group.count)
        let boot = try ensureBootRow()
        // Bytes queued as of this line: the counters, this transaction's earlier parts, and
        // what this group accepted so far (counted in `delta` as each segment is inserted).
        var pendingBytes = counters.pendingBytes + delta.pendingBytes
        var accepted: [Range<Int>] = []
        for submission in group {
            // 1. Which lines fit: answered with the ordinals of their events among the
            //    submission's accepted ones, turned into ids once they are inserted.
            var lineAnswers: [LineAnswer] = []
            lineAnswers.reserveCapacity(submission.lines.count)
            accepted.removeAll(keepingCapacity: true)
            var next = 0  // index of the line's first event in the batch
            var ordinal: Int64 = 0
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
                    let bytes = Int64(submission.batch.byteCount(of: range))
                    if pendingBytes + bytes > limit {
                        lineAnswers.append(.refused(.queueFull(limit: limit)))
                        delta.rejected += 1
                        continue
                    }
                    accepted.append(range)
                    lineAnswers.append(.accepted(count: count, firstID: ordinal, lastID: ordinal + Int64(count) - 1))
                    ordinal += Int64(count)
                    pendingBytes += bytes
                }
            }
            // 2. Insert them, a segment at a time; their ids are consecutive.
            if let firstID = try insertEvents(
                of: submission, ranges: accepted, boot: boot, clockState: clock(submission), delta: &delta)
            {
                for (i, answer) in lineAnswers.enumerated() {
                    if case .accepted(let count, let first, let last) = answer, count > 0 {
                        lineAnswers[i] = .accepted(count: count, firstID: firstID &+ first, lastID: firstID &+ last)
                    }
                }
            }
            answers.append(lineAnswers)
        }
        return answers
    }

    /// Inserts the events of `ranges` of the submission's batch, in order, as segments of
    /// at most ``SegmentBuilder/maxEvents`` events.
    /// - Returns: the id of the first; the others follow it one by one. Nil if none.
    private func insertEvents(
        of submission: IngestSubmission, ranges: [Range<Int>], boot: Int64, clockState: ClockState,
        delta: inout QueueCounters
    ) throws(SQLiteError) -> Int64? {
        guard ranges.contains(where: { !$0.isEmpty }) else { return nil }
        let batch = submission.batch
        let (wall, boottime) = (submission.readAtMillis, submission.readAtBoottimeMillis)
        var firstID: Int64?
        var failure: SQLiteError?
        /// Inserts the segment built so far and starts the next.
        func flush() throws(SQLiteError) {
            let id = try insertSegment(
                acceptedAtMillis: wall, boottimeMillis: boottime, boot: boot, clockState: clockState, delta: &delta)
            firstID = firstID ?? id
            segment.reset()
        }
        batch.bytes.withUnsafeBytes { all in
            do throws(SQLiteError) {
                segment.reset()
                for range in ranges {
                    for i in range {
                        let start = i == 0 ? 0 : batch.ends[i - 1]
                        segment.append(
                            UnsafeRawBufferPointer(rebasing: all[start..<batch.ends[i]]), stamped: batch.stamped[i], acceptedAtMillis: wall)
                        if segment.isFull { try flush() }
                    }
                }
                if segment.count > 0 { try flush() }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return firstID
    }
}

extension IngestError {
    package static func queueFull(limit: Int64) -> IngestError {
        IngestError(.queueFull, "the queue is full: max-queue-bytes (\(limit)) reached; retry later")
    }

    package static func unavailable(_ error: any Error) -> IngestError {
        let reason: String
        if let sqlite = error as? SQLiteError, sqlite.isFull {
            reason = "the disk is full"
        } else {
            reason = "the database cannot be written (\(error))"
        }
        return IngestError(.unavailable, "\(reason); nothing from this line was stored, retry later")
    }

    package static let stopped = IngestError(.unavailable, "the daemon is stopping; nothing from this line was stored, retry later")
}

extension EventBatch {
    /// Total bytes of the events in `range`.
    package func byteCount(of range: Range<Int>) -> Int {
        guard let first = range.first, let last = range.last else { return 0 }
        let start = first == 0 ? 0 : ends[first - 1]
        return ends[last] - start
    }
}
