import Foundation
import Logging
import NIOConcurrencyHelpers

/// The one writer of the database, on a thread of its own: **group commit**.
///
/// Connections hand it submissions; it takes every submission waiting, writes them all in
/// one transaction, commits (with an fsync under `synchronous=FULL`), and only then
/// completes them, so the acks go out after the data is durable while the cost of a commit
/// is shared by all the lines that arrived during the previous one.
///
/// Delivery's writes (delivered events, dead letters, the state record) go through the
/// typed methods below, between two group commits, so there is never more than one writer
/// and no connection waits on a lock. The store's connection lives and dies on this thread.
final class StoreWriter: @unchecked Sendable {
    // @unchecked: `jobs` and `state` are guarded by `condition`; `store` and `failing` are
    // touched only on the writer thread.

    /// What the writer needs to open the database.
    struct Options: Sendable {
        var path: String
        var durability: Durability
        var bootID: String
        var maxQueueBytes: Int
        /// The most dead letters kept; the oldest beyond it are dropped and counted.
        var maxDeadLetters = 10_000
    }

    /// What the database held when it was opened.
    struct Opened: Sendable {
        /// This boot's row in `boots`, if it could be written at the start.
        var bootRow: Int64?
        var pendingEvents: Int64
    }

    private enum Job {
        case ingest(IngestSubmission)
        /// `run` on the writer thread, or `cancel` if the writer has stopped.
        case work(run: (QueueStore) -> Void, cancel: () -> Void)
    }

    private enum State {
        case running
        case stopping
        case finished
    }

    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var state = State.running
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []

    private var store: QueueStore!
    private let maxQueueBytes: Int64
    private let maxDeadLetters: Int
    private let logger: Logger
    private let metrics: DaemonMetrics?
    /// Called on the writer thread after a commit that queued new events.
    private let onAccepted: @Sendable () -> Void
    private var failing = false

    private init(
        maxQueueBytes: Int, maxDeadLetters: Int, logger: Logger, metrics: DaemonMetrics?,
        onAccepted: @escaping @Sendable () -> Void
    ) {
        self.maxQueueBytes = Int64(maxQueueBytes)
        self.maxDeadLetters = maxDeadLetters
        self.logger = logger
        self.metrics = metrics
        self.onAccepted = onAccepted
    }

    /// Starts the writer thread, which opens (creating and migrating) the database and
    /// records this process as its owner.
    static func start(
        _ options: Options, logger: Logger, metrics: DaemonMetrics? = nil,
        onAccepted: @escaping @Sendable () -> Void = {}
    ) async throws -> (StoreWriter, Opened) {
        let writer = StoreWriter(
            maxQueueBytes: options.maxQueueBytes, maxDeadLetters: options.maxDeadLetters, logger: logger, metrics: metrics,
            onAccepted: onAccepted)
        let opened = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Opened, any Error>) in
            let thread = Thread {
                BlockingThreads.markCurrentThread()
                do {
                    let store = try QueueStore(path: options.path, durability: options.durability, bootID: options.bootID)
                    store.db.confinedToBlockingThreads = true
                    do {
                        try store.recordStart(pid: getpid(), version: TrackQueue.version, atMillis: SystemClock.wallMillis())
                    } catch {
                        // A full disk: start all the same; lines are answered `unavailable`
                        // until delivery or the operator makes room.
                        logger.warning(
                            "cannot record the start in the database; starting anyway", metadata: ["error": "\(error)"])
                    }
                    writer.store = store
                    continuation.resume(returning: Opened(bootRow: store.bootRow, pendingEvents: store.counters.pendingEvents))
                } catch {
                    writer.finish()
                    continuation.resume(throwing: StoreError(error))
                    return
                }
                writer.loop()
            }
            thread.name = "trackq-writer"
            thread.start()
        }
        return (writer, opened)
    }

    /// Queues lines for the next group commit. After ``stop()`` they are answered
    /// `unavailable` at once.
    func submit(_ submission: IngestSubmission) {
        enqueue(.ingest(submission))
    }

    /// Records a clean stop, checkpoints the WAL, finishes every job already queued, and
    /// ends the thread. Later work fails fast instead of waiting.
    func stop() async {
        enqueue(
            .work(
                run: { store in
                    try? store.recordStop(atMillis: SystemClock.wallMillis())
                    store.checkpoint()
                }, cancel: {}))
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            if state == .finished {
                condition.unlock()
                continuation.resume()
                return
            }
            state = .stopping
            stopWaiters.append(continuation)
            condition.signal()
            condition.unlock()
        }
    }

    /// Queues a no-op between two group commits; its `answered` turns true once the writer
    /// thread got to it. The watchdog pings systemd only while the writer answers, so a
    /// writer hung in a write that never returns gets the daemon restarted.
    func ping() -> Ping {
        let ping = Ping()
        enqueue(.work(run: { _ in ping.markAnswered() }, cancel: {}))
        return ping
    }

    /// See ``ping()``.
    final class Ping: Sendable {
        private let state = NIOLockedValueBox(false)
        var answered: Bool { state.withLockedValue { $0 } }
        fileprivate func markAnswered() { state.withLockedValue { $0 = true } }
    }

    // MARK: Delivery's writes

    /// The delivery columns of the state record, as last saved.
    func loadDeliveryRecord() async throws -> DeliveryRecord {
        try await perform { try $0.loadDeliveryRecord() }
    }

    /// Writes the delivery columns of the state record.
    func saveDeliveryRecord(_ record: DeliveryRecord) async throws {
        try await perform { try $0.saveDeliveryRecord(record) }
    }

    /// Records one answer of the API in one transaction: delivered events leave the queue,
    /// refused ones move to the dead letters, and the state record is saved with them.
    func recordAnswer(
        delivered: [OutgoingBatch.Event], refused: [RefusedEvent], record: DeliveryRecord, atMillis: Int64
    ) async throws {
        let limit = maxDeadLetters
        try await perform { store in
            try store.transaction { delta in
                try store.removeDelivered(delivered, delta: &delta)
                for refusal in refused {
                    try store.moveToDeadLetters(
                        refusal.event, reason: .rejected, status: refusal.status, response: refusal.response,
                        failedAtMillis: atMillis, delta: &delta)
                }
                if !refused.isEmpty { try store.trimDeadLetters(keeping: limit, delta: &delta) }
                try store.saveDeliveryRecord(record)
            }
            // A long backlog drained: give the free pages back, a bounded step at a time. Not
            // while a backlog is still draining: its free pages are reused by new events.
            if !delivered.isEmpty && store.counters.pendingEvents < 1000 { self.reclaimSpace(store) }
        }
    }

    /// Moves events older than `--max-event-age` to the dead letters, in one transaction.
    func deadLetterExpired(_ events: [OutgoingBatch.Event], atMillis: Int64) async throws {
        let limit = maxDeadLetters
        try await perform { store in
            try store.transaction { delta in
                for event in events {
                    try store.moveToDeadLetters(
                        event, reason: .expired, status: nil, response: nil, failedAtMillis: atMillis, delta: &delta)
                }
                try store.trimDeadLetters(keeping: limit, delta: &delta)
            }
        }
    }

    // MARK: The thread

    /// One step of giving space back; the next is queued behind whatever came meanwhile, so
    /// group commits never wait for more than one step.
    private func reclaimSpace(_ store: QueueStore) {
        if store.reclaimSpace() {
            enqueue(.work(run: { [self] store in reclaimSpace(store) }, cancel: {}))
        }
    }

    /// Runs `body` on the writer thread, with the store, between two group commits.
    private func perform<T: Sendable>(_ body: @escaping @Sendable (QueueStore) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(
                .work(
                    run: { store in continuation.resume(with: Result { try body(store) }) },
                    cancel: { continuation.resume(throwing: StoreError.io("the store is closed")) }))
        }
    }

    private func enqueue(_ job: Job) {
        condition.lock()
        guard state != .finished else {
            condition.unlock()
            Self.cancel(job)
            return
        }
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private static func cancel(_ job: Job) {
        switch job {
        case .ingest(let submission): submission.completion(submission.refusingEvents(with: .stopped))
        case .work(_, let cancel): cancel()
        }
    }

    /// Marks the thread finished, fails what is still queued, and wakes ``stop()``.
    private func finish() {
        condition.lock()
        state = .finished
        let left = jobs
        jobs.removeAll()
        let waiters = stopWaiters
        stopWaiters.removeAll()
        condition.unlock()
        for job in left { Self.cancel(job) }
        for waiter in waiters { waiter.resume() }
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && state == .running { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                store = nil  // closes the connection on this thread
                finish()
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
                case .work(let run, _):
                    // Keep order: commit the ingest group gathered so far first.
                    commit(group)
                    group.removeAll(keepingCapacity: true)
                    run(store)
                }
            }
            commit(group)
        }
    }

    /// Writes a group of submissions in one transaction and completes them.
    private func commit(_ group: [IngestSubmission]) {
        guard !group.isEmpty else { return }
        var answers: [[LineAnswer]]
        do {
            let acceptedBefore = store.counters.accepted
            answers = try store.append(group, maxQueueBytes: maxQueueBytes)
            if store.counters.accepted > acceptedBefore { onAccepted() }
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
            answers = group.map { $0.refusingEvents(with: unavailable) }
        }
        for (submission, lineAnswers) in zip(group, answers) {
            if let metrics {
                for case .refused(let error) in lineAnswers { metrics.rejected(error.code) }
            }
            submission.completion(lineAnswers)
        }
    }
}

/// An event the API refused on its own, with its answer, for the dead letters.
struct RefusedEvent: Sendable {
    var event: OutgoingBatch.Event
    var status: Int
    var response: String
}
