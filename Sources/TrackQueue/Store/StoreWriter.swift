import Foundation
import Logging

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
}

/// The one writer of the database, on a thread of its own: **group commit**.
///
/// Connections hand it submissions; it takes every submission waiting, writes them all in
/// one transaction, commits (with an fsync under `synchronous=FULL`), and only then
/// completes them, so the acks go out after the data is durable while the cost of a commit
/// is shared by all the lines that arrived during the previous one.
///
/// Other writes (delivery results, dead letters, state) go through ``perform(_:)`` so that
/// there is never more than one writer and no connection waits on a lock.
final class GroupCommitWriter: @unchecked Sendable {
    // @unchecked: `jobs`, `stopping` and `finished` are guarded by `condition`; `store`
    // and `failing` are touched only on the writer thread after `start()`.

    private enum Job {
        case ingest(IngestSubmission)
        case work((QueueStore) -> Void)
    }

    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var stopping = false
    private var finished = false
    private let store: QueueStore
    private let maxQueueBytes: Int64
    private let logger: Logger
    private var failing = false
    /// Called on the writer thread after a commit that queued new events.
    private let onAccepted: @Sendable () -> Void

    private let metrics: DaemonMetrics?

    init(
        store: QueueStore, maxQueueBytes: Int, logger: Logger, metrics: DaemonMetrics? = nil,
        onAccepted: @escaping @Sendable () -> Void = {}
    ) {
        self.store = store
        self.metrics = metrics
        self.maxQueueBytes = Int64(maxQueueBytes)
        self.logger = logger
        self.onAccepted = onAccepted
    }

    /// Starts the writer thread.
    func start() {
        let thread = Thread { [self] in self.loop() }
        thread.name = "trackq-writer"
        thread.start()
    }

    /// Queues lines for the next group commit.
    func submit(_ submission: IngestSubmission) {
        enqueue(.ingest(submission))
    }

    /// Runs `body` on the writer thread, with the store, between two group commits.
    func perform<T: Sendable>(_ body: @escaping @Sendable (QueueStore) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(.work { store in
                continuation.resume(with: Result { try body(store) })
            })
        }
    }

    /// Finishes every job already queued, then stops the thread and returns.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func enqueue(_ job: Job) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty {
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let taken = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()

            var group: [IngestSubmission] = []
            for job in taken {
                switch job {
                case .ingest(let submission):
                    group.append(submission)
                case .work(let body):
                    // Keep order: commit the ingest group gathered so far first.
                    commit(group)
                    group.removeAll(keepingCapacity: true)
                    body(store)
                }
            }
            commit(group)
        }
    }

    /// Writes a group of submissions in one transaction and completes them.
    private func commit(_ group: [IngestSubmission]) {
        guard !group.isEmpty else { return }
        var answers: [[LineAnswer]] = []
        answers.reserveCapacity(group.count)
        var acceptedAny = false
        do {
            try store.transaction { delta in
                defer { acceptedAny = delta.accepted > 0 }
                let limit = maxQueueBytes
                let pendingBefore = store.counters.pendingBytes
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
                                    try store.insertEvent(
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
            if acceptedAny { onAccepted() }
            if failing {
                failing = false
                logger.notice("database writable again; accepting events")
            }
        } catch {
            if !failing {
                failing = true
                logger.error("cannot commit events; answering 'unavailable' until this clears", metadata: ["error": "\(error)"])
            }
            let unavailable = IngestError.unavailable(error)
            answers = group.map { submission in
                submission.lines.map { line in
                    switch line {
                    case .refused(let error): return .refused(error)
                    case .events: return .refused(unavailable)
                    }
                }
            }
        }
        for (submission, lineAnswers) in zip(group, answers) {
            if let metrics {
                for case .refused(let error) in lineAnswers { metrics.rejected(error.code) }
            }
            submission.completion(lineAnswers)
        }
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
