import NIOConcurrencyHelpers

@testable import TrackQueue

/// An ``IngestWriter`` for a connection's tests without a database: it keeps each submission
/// until the test answers it, so a test decides when (and how) a commit ends.
final class ScriptedWriter: IngestWriter, Sendable {
    private let held = NIOLockedValueBox<[IngestSubmission]>([])

    func submit(_ submission: IngestSubmission) { held.withLockedValue { $0.append(submission) } }

    /// Submissions not answered yet, oldest first.
    var waiting: Int { held.withLockedValue { $0.count } }

    /// The lines of the oldest submission waiting.
    var oldestLines: [LineEntry]? { held.withLockedValue { $0.first?.lines } }

    /// Answers the oldest submission as a commit would: ids from `firstID`, refusals kept.
    @discardableResult
    func commitOldest(firstID: Int64 = 1) -> [LineAnswer] {
        guard let submission = held.withLockedValue({ $0.isEmpty ? nil : $0.removeFirst() }) else { return [] }
        var next = firstID
        let answers = submission.lines.map { line -> LineAnswer in
            switch line {
            case .refused(let error): return .refused(error)
            case .events(let count):
                defer { next += Int64(count) }
                return .accepted(count: count, firstID: next, lastID: next + Int64(count) - 1)
            }
        }
        submission.completion(answers)
        return answers
    }

    /// Answers every submission waiting.
    func commitAll() { while waiting > 0 { commitOldest() } }
}
