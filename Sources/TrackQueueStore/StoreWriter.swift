import Foundation
import Logging
import NIOConcurrencyHelpers
import TrackQueueClock
import TrackQueueConfig
import TrackQueueEvent
import TrackQueueMetrics
import TrackQueueSupport
import TrackQueueSystem

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
package final class StoreWriter: IngestWriter, @unchecked Sendable {
    // @unchecked: `jobs` and `state` are guarded by `condition`; `store` and `failing` are
    // touched only on the writer thread.

    /// What the writer needs to open the database.
    package struct Options: Sendable {
        package var path: String
        package var durability: Durability
        package var maxQueueBytes: Int
        /// The most dead letters kept; the oldest beyond it are dropped and counted.
        package var maxDeadLetters: Int = Defaults.maxDeadLetters
        /// When delivery's writes join a group commit, and space is given back.
        package var pacing: WriterPacing = WriterPacing()
        /// The host's clocks: this boot's id, and the kernel's word on each group's clock.
        package var clock: HostClock = .system

        /// Creates a value with every property given (or its default).
        package init(
            path: String, durability: Durability, maxQueueBytes: Int, maxDeadLetters: Int = Defaults.maxDeadLetters,
            pacing: WriterPacing = WriterPacing(), clock: HostClock = .system
        ) {
            self.path = path
            self.durability = durability
            self.maxQueueBytes = maxQueueBytes
            self.maxDeadLetters = maxDeadLetters
            self.pacing = pacing
            self.clock = clock
        }
    }

    /// What the database held when it was opened.
    package struct Opened: Sendable {
        package var pendingEvents: Int64
        /// The clock as earlier boots left it, and as it read at the start.
        package var clockHistory: ClockHistory
        package var clockReading: ClockReading
        package var clockState: ClockState
        /// The file was found damaged and a new queue started with what it held.
        package var recovery: StorageRecovery.Record?
    }

    private enum Job {
        case ingest(IngestSubmission)
        /// `run` on the writer thread, or `cancel` if the writer has stopped.
        case work(run: (QueueStore) -> Void, cancel: () -> Void)
        /// Delivery's writes: a part of the next transaction, shared with an ingest group.
        case part(Part)
    }

    /// A write that may share a transaction with a group commit (``QueueStore/part(_:_:)``):
    /// `body` runs inside it, `done` gets its result once the transaction committed (or
    /// the error that undid it).
    private struct Part {
        package var body: (QueueStore, inout QueueCounters) throws -> Void
        package var done: (Result<Void, any Error>) -> Void
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
    private let clock: HostClock
    /// Judges the clock of each group; set when the store opens.
    private var judge = ClockJudge(floorMillis: ClockJudge.releaseFloorMillis)
    private let maxQueueBytes: Int64
    private let maxDeadLetters: Int
    private let logger: Logger
    private let metrics: DaemonMetrics?
    /// Called on the writer thread after a commit that queued new events.
    private let onAccepted: @Sendable () -> Void
    private var failing = false
    /// To open the database again after a recovery; writer thread only.
    private var options: Options?
    /// When the last recovery while running began (monotonic ns); writer thread only.
    private var lastRecoveryNanos: Int64?
    /// Bumped by each recovery: readers holding a connection to an older file open anew.
    private let generationBox = NIOLockedValueBox(0)
    package var generation: Int { generationBox.withLockedValue { $0 } }
    private let recoveryHandler = NIOLockedValueBox<(@Sendable (StorageRecovery.Record) -> Void)?>(nil)

    /// Called (on the writer thread) after each recovery of a damaged file while running.
    package func onRecovery(_ handler: @escaping @Sendable (StorageRecovery.Record) -> Void) {
        recoveryHandler.withLockedValue { $0 = handler }
    }
    /// When parts wait for an ingest group, and when space is given back; writer thread only.
    private var pacing: WriterPacing
    /// Parts held back for the next ingest group; writer thread only.
    private var held: [Part] = [] {
        didSet { counts.withLockedValue { $0.held = held.count } }
    }
    /// For tests: transactions committed (parts that joined a group commit add none), and
    /// parts held back for the next group.
    private let counts = NIOLockedValueBox((committed: 0, held: 0))
    package var transactionsCommitted: Int { counts.withLockedValue { $0.committed } }
    package var partsHeld: Int { counts.withLockedValue { $0.held } }

    private init(
        maxQueueBytes: Int, maxDeadLetters: Int, pacing: WriterPacing, clock: HostClock, logger: Logger,
        metrics: DaemonMetrics?, onAccepted: @escaping @Sendable () -> Void
    ) {
        self.clock = clock
        self.maxQueueBytes = Int64(maxQueueBytes)
        self.pacing = pacing
        self.maxDeadLetters = maxDeadLetters
        self.logger = logger
        self.metrics = metrics
        self.onAccepted = onAccepted
    }

    /// Starts the writer thread, which opens (creating and migrating) the database and
    /// records this process as its owner.
    package static func start(
        _ options: Options, logger: Logger, metrics: DaemonMetrics? = nil,
        onAccepted: @escaping @Sendable () -> Void = {}
    ) async throws -> (StoreWriter, Opened) {
        let writer = StoreWriter(
            maxQueueBytes: options.maxQueueBytes, maxDeadLetters: options.maxDeadLetters, pacing: options.pacing,
            clock: options.clock, logger: logger, metrics: metrics, onAccepted: onAccepted)
        let opened = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Opened, any Error>) in
            let thread = Thread {
                BlockingThreads.markCurrentThread()
                // Foundation's `name` does not reach the kernel on Linux: without this the
                // thread shows in `top -H`, `perf` and `/proc` under its creator's name.
                nameCurrentThread("trackq-writer")
                do {
                    writer.options = options
                    let (store, recovery) = try StorageRecovery.openStore(
                        path: options.path, durability: options.durability, bootID: options.clock.storedBootID,
                        nowMillis: options.clock.wallMillis())
                    if let recovery { logger.critical("\(StorageRecovery.describe(recovery))") }
                    store.db.confinedToBlockingThreads = true
                    let history = try store.clockHistory()
                    writer.judge = history.judge
                    let reading = options.clock.read()
                    let clockState = history.judge.state(of: reading)
                    do {
                        try store.recordStart(pid: getpid(), version: TrackQueue.version, atMillis: reading.wallMillis)
                        try store.recordClock(reading, state: clockState)
                    } catch {
                        // A full disk: start all the same; lines are answered `unavailable`
                        // until delivery or the operator makes room.
                        logger.warning(
                            "cannot record the start in the database; starting anyway", metadata: ["error": "\(error)"])
                    }
                    writer.store = store
                    writer.checkInBackground()
                    continuation.resume(
                        returning: Opened(
                            pendingEvents: store.counters.pendingEvents, clockHistory: history,
                            clockReading: reading, clockState: clockState, recovery: recovery))
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
    package func submit(_ submission: IngestSubmission) {
        enqueue(.ingest(submission))
    }

    /// Records a clean stop, checkpoints the WAL, finishes every job already queued, and
    /// ends the thread. Later work fails fast instead of waiting.
    package func stop() async {
        enqueue(
            .work(
                run: { store in
                    try? store.recordStop(atMillis: self.clock.wallMillis())
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
    package func ping() -> Ping {
        let ping = Ping()
        enqueue(.work(run: { _ in ping.markAnswered() }, cancel: {}))
        return ping
    }

    /// A reader found the file damaged while reading the queue (a page SQLite calls
    /// corrupt, a segment whose columns do not agree): the writer recovers it, unless the
    /// reader read a file an earlier recovery already replaced (`generation`).
    package func reportDamage(_ error: any Error, generation seen: Int) {
        enqueue(
            .work(
                run: { [weak self] _ in
                    guard let self, seen == self.generation else { return }
                    _ = self.recoverWhileRunning("\(error)")
                }, cancel: {}))
    }

    /// SQLite's `quick_check` of the file, at most ``StorageRecovery/quickCheckBudgetNanos``
    /// of it, on a read-only connection of its own beside the running daemon; damage it finds
    /// is recovered as a read's would be. Started once the store is open: a start does not
    /// wait for it.
    package func checkInBackground() {
        let generation = self.generation
        guard let path = options?.path else { return }
        let logger = self.logger
        let thread = Thread { [weak self] in
            BlockingThreads.markCurrentThread()
            let started = SystemClock.monotonicNanos()
            let outcome: (problem: String?, finished: Bool)
            do {
                outcome = StorageRecovery.quickCheck(try Database.open(path, .readOnly))
            } catch {
                outcome = (StorageRecovery.isDamage(error) ? "\(error)" : nil, false)
            }
            let millis = (SystemClock.monotonicNanos() - started) / 1_000_000
            guard let problem = outcome.problem else {
                logger.info(
                    outcome.finished ? "storage check: sound" : "storage check: sound as far as it read in its time",
                    metadata: ["check.ms": "\(millis)"])
                return
            }
            logger.error("storage check: damage found", metadata: ["error": "\(Printable.oneLine(problem, limit: 300))"])
            self?.reportDamage(StoreError.io(problem), generation: generation)
        }
        thread.name = "trackq-check"
        thread.start()
    }

    /// For tests: the writer thread waits for `gate` before its next job, so submissions
    /// queue up behind it as they would behind a slow disk.
    package func pause(until gate: DispatchSemaphore) {
        enqueue(.work(run: { _ in gate.wait() }, cancel: {}))
    }

    /// See ``ping()``.
    package final class Ping: Sendable {
        private let state = NIOLockedValueBox(false)
        package var answered: Bool { state.withLockedValue { $0 } }
        fileprivate func markAnswered() { state.withLockedValue { $0 = true } }
    }

    // MARK: Delivery's writes

    /// The delivery columns of the state record, as last saved.
    package func loadDeliveryRecord() async throws -> DeliveryRecord {
        try await perform { try $0.loadDeliveryRecord() }
    }

    /// Writes the delivery columns of the state record.
    package func saveDeliveryRecord(_ record: DeliveryRecord) async throws {
        try await perform { try $0.saveDeliveryRecord(record) }
    }

    /// Records one answer of the API in one transaction: delivered events (runs of a batch,
    /// see ``QueueStore/removeDelivered(_:delta:)``) leave the queue,
    /// refused ones move to the dead letters, and the state record is saved with them.
    package func recordAnswer(
        delivered: [ArraySlice<OutgoingBatch.Event>], refused: [RefusedEvent], record: DeliveryRecord, atMillis: Int64
    ) async throws {
        let limit = maxDeadLetters
        try await performPart { store, delta in
            try store.removeDelivered(delivered, delta: &delta)
            for refusal in refused {
                try store.moveToDeadLetters(
                    refusal.event, reason: .rejected, status: refusal.status, response: refusal.response,
                    failedAtMillis: atMillis, delta: &delta)
            }
            if !refused.isEmpty { try store.trimDeadLetters(keeping: limit, delta: &delta) }
            try store.saveDeliveryRecord(record)
        }
    }

    /// Records a reading of the clock as this boot's latest (see ``ClockWatch``).
    package func recordClock(_ reading: ClockReading, state: ClockState) async throws {
        try await performPart { store, _ in try store.recordClock(reading, state: state) }
    }

    /// Moves events older than `--max-event-age` to the dead letters, in one transaction.
    package func deadLetterExpired(_ events: [OutgoingBatch.Event], atMillis: Int64) async throws {
        let limit = maxDeadLetters
        try await performPart { store, delta in
            for event in events {
                try store.moveToDeadLetters(
                    event, reason: .expired, status: nil, response: nil, failedAtMillis: atMillis, delta: &delta)
            }
            try store.trimDeadLetters(keeping: limit, delta: &delta)
        }
    }

    // MARK: The thread

    /// Runs `body` on the writer thread, with the store, between two group commits.
    private func perform<T: Sendable>(_ body: @escaping @Sendable (QueueStore) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(
                .work(
                    run: { store in continuation.resume(with: Result { try body(store) }) },
                    cancel: { continuation.resume(throwing: StoreError.closed) }))
        }
    }

    /// Runs `body` as a part of the writer's next transaction: with the next ingest group
    /// if one is due soon (see ``WriterPacing``), so it costs no commit of its own.
    private func performPart(_ body: @escaping @Sendable (QueueStore, inout QueueCounters) throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            enqueue(.part(Part(body: body, done: { continuation.resume(with: $0) })))
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
        case .part(let part): part.done(.failure(StoreError.closed))
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
            while jobs.isEmpty && state == .running {
                // Nothing to do: wait for work, or until held parts or a step of giving
                // space back are due.
                let now = SystemClock.monotonicNanos()
                var due = held.isEmpty ? nil : pacing.holdPartsUntil(now: now)
                if !held.isEmpty && due == nil { break }
                if pacing.reclaimWanted {
                    guard let next = pacing.nextReclaim(now: now) else { break }
                    due = min(due ?? next, next)
                }
                if let due {
                    _ = condition.wait(until: Date(timeIntervalSinceNow: Double(due - now) / 1e9))
                } else {
                    condition.wait()
                }
            }
            if jobs.isEmpty && state != .running && held.isEmpty {
                condition.unlock()
                store = nil  // closes the connection on this thread
                finish()
                return
            }
            if store == nil {  // a recovery could not open a database again
                condition.unlock()
                finish()
                return
            }
            let taken = jobs
            jobs.removeAll(keepingCapacity: true)
            let stopping = state != .running
            condition.unlock()

            var group: [IngestSubmission] = []
            var parts = held
            if !held.isEmpty { held = [] }  // its didSet takes a lock: not on every pass
            for job in taken {
                guard store != nil else {  // a recovery could not open a database again
                    Self.cancel(job)
                    continue
                }
                switch job {
                case .ingest(let submission):
                    group.append(submission)
                case .part(let part):
                    parts.append(part)
                case .work(let run, _):
                    // Keep order: commit what was gathered so far first.
                    commit(group, parts)
                    group.removeAll(keepingCapacity: true)
                    parts.removeAll()
                    run(store)
                }
            }
            if group.isEmpty && !parts.isEmpty && !stopping
                && pacing.holdPartsUntil(now: SystemClock.monotonicNanos()) != nil
            {
                held = parts  // an ingest group is likely soon: share its commit
            } else {
                commit(group, parts)
            }
            if taken.isEmpty && held.isEmpty && pacing.reclaimWanted
                && pacing.nextReclaim(now: SystemClock.monotonicNanos()) == nil
            {
                reclaimStep()
            }
        }
    }

    /// The most often a damaged file is recovered while running: a disk that damages every
    /// new file too is not rewritten in a loop (lines are answered `unavailable` meanwhile).
    package static let recoveryInterval: Int64 = 30_000_000_000

    /// Closes the damaged database, recovers it (``StorageRecovery``) and opens the new one.
    /// - Returns: whether the writer has a sound store again.
    private func recoverWhileRunning(_ reason: String) -> Bool {
        guard let options else { return false }
        let now = SystemClock.monotonicNanos()
        if let last = lastRecoveryNanos, now - last < Self.recoveryInterval { return false }
        lastRecoveryNanos = now
        logger.critical(
            "the queue file is damaged; moving it aside and starting a new queue with what it holds",
            metadata: ["error": "\(Printable.oneLine(reason, limit: 300))"])
        store = nil  // closes the connection
        let record: StorageRecovery.Record
        do {
            record = try StorageRecovery.recover(options.path, reason: reason, nowMillis: clock.wallMillis())
        } catch {
            logger.critical("cannot recover the queue file", metadata: ["error": "\(error)"])
            reopen(options)
            return false
        }
        generationBox.withLockedValue { $0 += 1 }
        reopen(options)
        guard store != nil else { return false }
        try? store.recordStart(pid: getpid(), version: TrackQueue.version, atMillis: clock.wallMillis())
        logger.critical("\(StorageRecovery.describe(record))")
        recoveryHandler.withLockedValue { $0 }?(record)
        return true
    }

    /// Opens the database again; leaves ``store`` nil if it cannot (the writer then stops).
    private func reopen(_ options: Options) {
        do {
            store = try QueueStore(path: options.path, durability: options.durability, bootID: options.clock.storedBootID)
            store.db.confinedToBlockingThreads = true
        } catch {
            logger.critical("cannot open the queue file again; the writer stops", metadata: ["error": "\(error)"])
        }
    }

    /// One step of giving space back, once a long backlog has drained.
    private func reclaimStep() {
        let more = store.reclaimSpace()
        pacing.reclaimed(at: SystemClock.monotonicNanos(), more: more)
    }

    /// Writes a group of submissions and delivery's parts in one transaction and completes
    /// them. A part that fails is undone alone; a group that fails is answered `unavailable`
    /// while the parts still commit (they may be what frees the disk).
    private func commit(_ group: [IngestSubmission], _ parts: [Part], afterRecovery: Bool = false) {
        guard !group.isEmpty || !parts.isEmpty else { return }
        guard store != nil else {
            for part in parts { Self.cancel(.part(part)) }
            for submission in group { Self.cancel(.ingest(submission)) }
            return
        }
        var answers: [[LineAnswer]]?
        var appendError: (any Error)?
        var results: [Result<Void, any Error>] = []
        do {
            let acceptedBefore = store.counters.accepted
            let deliveredBefore = store.counters.delivered + store.counters.deadLettered
            try store.transaction { delta in
                for part in parts {
                    results.append(try store.part(&delta) { own in try part.body(store, &own) })
                }
                if !group.isEmpty {
                    // The kernel's word, once a group; each line's own wall clock reading.
                    let (store, judge, synced, limit) = (store!, judge, clock.kernelSynced(), maxQueueBytes)
                    let appending = { (own: inout QueueCounters) in
                        try store.append(
                            group, maxQueueBytes: limit,
                            clock: { judge.state(wallMillis: $0.readAtMillis, kernelSynced: synced) }, delta: &own)
                    }
                    if parts.isEmpty {
                        // Alone in its transaction, the group needs no savepoint: if it
                        // fails, the rollback undoes all there is.
                        answers = try appending(&delta)
                    } else {
                        switch try store.part(&delta, appending) {
                        case .success(let appended): answers = appended
                        case .failure(let error): appendError = error
                        }
                    }
                }
            }
            counts.withLockedValue { $0.committed += 1 }
            if !group.isEmpty { pacing.ingestCommitted(at: SystemClock.monotonicNanos()) }
            if store.counters.accepted > acceptedBefore { onAccepted() }
            // A long backlog drained: give the free pages back, a bounded step at a time, when
            // ingest leaves room (``WriterPacing``). Not while a backlog is still draining: its
            // free pages are reused by new events.
            if store.counters.delivered + store.counters.deadLettered > deliveredBefore && store.counters.pendingEvents < 1000 {
                pacing.reclaimWanted = true
            }
        } catch {
            // A damaged file: move it aside, start anew with what it held, and write this
            // group there (every id it had is kept, so delivery's parts still apply).
            if StorageRecovery.isDamage(error), !afterRecovery, recoverWhileRunning("\(error)") {
                return commit(group, parts, afterRecovery: true)
            }
            results = parts.map { _ in .failure(error) }
            appendError = error
        }
        for (part, result) in zip(parts, results) { part.done(result) }
        guard !group.isEmpty else { return }
        if let appendError {
            if !failing {
                failing = true
                logger.error("cannot commit events; answering 'unavailable' until this clears", metadata: ["error": "\(appendError)"])
            }
            let unavailable = IngestError.unavailable(appendError)
            answers = group.map { $0.refusingEvents(with: unavailable) }
        } else if failing {
            failing = false
            logger.notice("database writable again; accepting events")
        }
        for (submission, lineAnswers) in zip(group, answers ?? []) {
            if let metrics {
                for case .refused(let error) in lineAnswers { metrics.rejected(error.code) }
            }
            submission.completion(lineAnswers)
        }
    }
}

/// Names the calling thread for the kernel (at most 15 bytes): what `top -H`, `perf` and
/// `/proc/PID/task/*/comm` show. Best effort.
private func nameCurrentThread(_ name: String) {
    let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return }
    defer { close(fd) }
    _ = name.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
}

/// An event the API refused on its own, with its answer, for the dead letters.
package struct RefusedEvent: Sendable {
    package var event: OutgoingBatch.Event
    package var status: Int
    package var response: String

    /// Creates a value with every property given (or its default).
    package init(event: OutgoingBatch.Event, status: Int, response: String) {
        self.event = event
        self.status = status
        self.response = response
    }
}
