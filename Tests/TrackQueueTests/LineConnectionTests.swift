import NIOCore
import NIOEmbedded
import Testing

@testable import TrackQueue

/// The line connection's decisions as a plain value: events in, steps out.
@Suite struct LineConnectionTests {
    private func connection(maxOutstanding: Int = 2, burst: UInt = 4) -> LineConnection {
        LineConnection(maxOutstanding: maxOutstanding, readsPerBurst: burst)
    }

    @Test func aReadIsPassedOnOnlyOnceEveryByteReadIsFramed() {
        var c = connection()
        #expect(c.readRequested() == .read)
        #expect(c.mayRead)
        c.readPassed()
        #expect(!c.mayRead)
        #expect(c.bytesRead(filledBuffer: false) == .frame)
        _ = c.readRequested()
        #expect(!c.mayRead, "bytes are waiting to be framed")
        #expect(c.mayFrame)
        c.framerNeedsMoreData()
        #expect(c.mayRead)
    }

    @Test func framingAndReadingStopAtTheOutstandingLimitAndAnAnswerResumesThem() {
        var c = connection(maxOutstanding: 2)
        _ = c.bytesRead(filledBuffer: false)
        c.lineTaken()
        c.submitted()
        c.lineTaken()
        c.submitted()
        #expect(!c.mayFrame && !c.hasRoom)
        _ = c.readRequested()
        #expect(!c.mayRead)
        #expect(c.answered() == .resume)
        #expect(c.mayFrame)
    }

    @Test func aPeerThatDoesNotReadItsAnswersStopsFramingUnlessItIsGone() {
        var c = connection()
        _ = c.bytesRead(filledBuffer: false)
        _ = c.writabilityChanged(to: false)
        #expect(!c.mayFrame)
        #expect(c.writabilityChanged(to: true) == .resume)
        #expect(c.mayFrame)
        _ = c.writabilityChanged(to: false)
        // Gone: its lines are committed all the same, at the same pace.
        #expect(c.inactive() == [.frame, .submit])
        #expect(c.mayFrame)
        #expect(c.lastLineNeedsNoNewline)
    }

    @Test func aHalfCloseAnswersTheLastLineAndClosesOnlyWhenEverythingIsAnswered() {
        var c = connection()
        _ = c.bytesRead(filledBuffer: false)
        c.framerNeedsMoreData()  // a line without its newline is held
        #expect(!c.isDone)
        #expect(c.inputEnded() == [.frame, .submit, .closeIfDone])
        #expect(c.lastLineNeedsNoNewline && c.mayFrame)
        c.lineTaken()
        c.framerNeedsMoreData()
        #expect(!c.isDone, "a line is framed and not submitted")
        c.submitted()
        #expect(!c.isDone, "a submission awaits its answer")
        _ = c.answered()
        #expect(c.isDone)
    }

    @Test func aDrainReadsNothingMoreAndClosesOnceAnswered() {
        var c = connection()
        _ = c.readRequested()
        #expect(c.drain() == [.frame, .submit, .closeIfDone])
        #expect(!c.mayRead)
        #expect(!c.lastLineNeedsNoNewline, "a drain does not end the client's last line")
        #expect(c.isDone)
    }

    @Test func aSpentBudgetHoldsTheReadUntilItIsGranted() {
        var c = connection()
        _ = c.readRequested()
        c.budgetSpent()
        #expect(!c.mayRead)
        #expect(c.budgetGranted() == .resume)
        #expect(c.mayRead)
    }

    @Test func aBurstIsReservedOnlyAfterAFilledReadAndReleasedWhenTheReadsEnd() {
        var c = connection(burst: 4)
        #expect(!c.wantsBurst, "no read has filled a buffer yet")
        _ = c.bytesRead(filledBuffer: true)
        #expect(c.wantsBurst)
        c.burst(reserved: true)
        #expect(c.readsPerRead == 4)
        #expect(c.readComplete() == [.releaseBurst, .submit])
        #expect(c.readsPerRead == 1)
        #expect(c.readComplete() == .submit)
        _ = c.bytesRead(filledBuffer: false)
        #expect(!c.wantsBurst, "a client gone quiet reserves nothing")
        c.burst(reserved: true)
        #expect(c.removed() == .releaseBurst)
        #expect(c.removed() == [])
    }
}

/// ``IngestHandler`` in an `EmbeddedChannel`: the paths the process tests cover, without a
/// socket or a database (a ``ScriptedWriter`` answers when the test says).
@Suite struct IngestHandlerTests {
    private static let event = #"{"event_name":"e","user_id":"u"}"#

    private func channel(
        _ writer: ScriptedWriter, limits: LineLimits = LineLimits(), budget: IngestBudget? = nil
    ) throws -> EmbeddedChannel {
        let handler = IngestHandler(
            writer: writer, parser: EventParser(maxEventBytes: 65536), limits: limits, budget: budget)
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    private func send(_ text: String, _ channel: EmbeddedChannel) throws {
        try channel.writeInbound(channel.allocator.buffer(string: text))  // a read, then its end
    }

    private func answers(_ channel: EmbeddedChannel) throws -> [String] {
        channel.embeddedEventLoop.run()
        var lines: [String] = []
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            lines += (buffer.readString(length: buffer.readableBytes) ?? "").split(separator: "\n").map(String.init)
        }
        return lines
    }

    @Test func linesAreAnsweredInOrderOnlyAfterTheirCommitOnePerNonBlankLine() throws {
        let writer = ScriptedWriter()
        let channel = try channel(writer)
        try send("\(Self.event)\n\n{bad\n\(Self.event)\n", channel)
        #expect(writer.waiting == 1)
        #expect(try answers(channel).isEmpty, "nothing is acknowledged before the commit")
        writer.commitOldest(firstID: 7)
        let lines = try answers(channel)
        #expect(lines.count == 3)
        #expect(lines[0] == #"{"ok":true,"accepted":1,"first_id":7,"last_id":7}"#)
        #expect(lines[1].contains(#""error":"invalid_json""#))
        #expect(lines[2] == #"{"ok":true,"accepted":1,"first_id":8,"last_id":8}"#)
        _ = try channel.finish()
    }

    @Test func aLineTooLongIsRefusedAndTheNextOneIsTaken() throws {
        let writer = ScriptedWriter()
        var limits = LineLimits()
        limits.maxLineBytes = 64
        let channel = try channel(writer, limits: limits)
        try send(String(repeating: "x", count: 200) + "\n" + Self.event + "\n", channel)
        writer.commitAll()
        let lines = try answers(channel)
        #expect(lines.count == 2)
        #expect(lines[0].contains(#""error":"too_large""#))
        #expect(lines[1].hasPrefix(#"{"ok":true,"accepted":1"#))
        _ = try channel.finish()
    }

    @Test func aHalfCloseAnswersALastLineWithoutNewlineThenCloses() throws {
        let writer = ScriptedWriter()
        let channel = try channel(writer)
        try send(Self.event, channel)
        #expect(writer.waiting == 0, "a line without its newline waits for more")
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(writer.waiting == 1)
        #expect(channel.isActive, "open until its answer is written")
        writer.commitAll()
        #expect(try answers(channel).count == 1)
        #expect(!channel.isActive)
    }

    @Test func aDrainAnswersWhatWasReadAndCloses() throws {
        let writer = ScriptedWriter()
        let channel = try channel(writer)
        try send("\(Self.event)\n\(Self.event)\n", channel)
        channel.pipeline.fireUserInboundEventTriggered(IngestHandler.Drain())
        #expect(channel.isActive)
        writer.commitAll()
        #expect(try answers(channel).count == 2)
        #expect(!channel.isActive)
    }

    @Test func aClientThatGoesAwayHasItsLinesCommittedAllTheSame() throws {
        let writer = ScriptedWriter()
        let channel = try channel(writer)
        try channel.writeInbound(channel.allocator.buffer(string: "\(Self.event)\n\(Self.event)"))
        channel.pipeline.fireChannelInactive()
        // The first line went at the end of the read; the last counts without its newline.
        #expect(writer.waiting == 2)
        writer.commitOldest()
        #expect(writer.oldestLines?.count == 1)
        writer.commitAll()
    }

    @Test func atTheOutstandingLimitFramingStopsAndAnAnswerResumesIt() throws {
        let writer = ScriptedWriter()
        var limits = LineLimits()
        limits.maxOutstanding = 2
        limits.maxSubmissionLines = 1
        let channel = try channel(writer, limits: limits)
        try send(String(repeating: Self.event + "\n", count: 5), channel)
        #expect(writer.waiting == 2, "two submissions in flight, the rest waits unframed")
        writer.commitOldest()
        channel.embeddedEventLoop.run()
        #expect(writer.waiting == 2)
        writer.commitAll()
        channel.embeddedEventLoop.run()
        writer.commitAll()
        channel.embeddedEventLoop.run()
        writer.commitAll()
        #expect(try answers(channel).count == 5)
        _ = try channel.finish()
    }

    @Test func aSpentBudgetHoldsReadsUntilAnswersGiveItsRoomBack() throws {
        let writer = ScriptedWriter()
        let budget = IngestBudget(limit: 16)
        let channel = try channel(writer, budget: budget)
        let reads = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(reads, position: .first)
        try send("\(Self.event)\n", channel)  // framed: the budget is spent
        let before = reads.count
        channel.read()
        #expect(reads.count == before, "no read while the budget is spent")
        writer.commitAll()
        channel.embeddedEventLoop.run()
        #expect(reads.count == before + 1, "the answer gave the room back, and the read went on")
        _ = try channel.finish()
    }
}

/// Counts the reads that reach the channel.
private final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = Never
    private(set) var count = 0
    func read(context: ChannelHandlerContext) {
        count += 1
        context.read()
    }
}
