import NIOCore
import NIOHTTP1
import TrackQueueEvent
import TrackQueueSupport

/// One HTTP/1.1 connection of the HTTP face as a value: its state in one place, events in,
/// actions out. ``HTTPIngestHandler`` tells it what happened and performs what it returns,
/// in order; nothing here touches a channel, the budget or the writer
/// (`HTTPConnectionTests`).
///
/// A request is served one at a time (NIO's pipelining handler holds the next one back). A
/// body is read only once the ``IngestBudget`` has room for it, so many clients posting at
/// once wait on their sockets; a request waiting holds nothing. One timer closes a connection
/// whose request stalls or that sits idle.
///
/// **A lingering close.** A request refused before its body is read (413, or an answer that
/// closes, given on the head) is answered at once; then the rest of its body is read and
/// dropped, up to ``Options/lingerBytes`` and ``Options/lingerTime``, before the close.
/// Closed at once, the connection would reset a client still sending, and most (Python's
/// `http.client`, so `requests` and `urllib`) would report the reset, not the answer.
package struct HTTPConnection: Sendable {
    package struct Options: Sendable {
        package var maxBodyBytes: Int = TrackAPI.maxRequestBytes
        /// From a request's head to its last byte.
        package var requestTimeout: TimeAmount = TimeAmount(Defaults.httpRequestTimeout)
        /// How long a keep-alive connection may wait for its next request (or its first).
        package var idleTimeout: TimeAmount = TimeAmount(Defaults.httpIdleTimeout)
        /// After an early answer that closes: how long the rest of the request is read.
        package var lingerTime: TimeAmount = .seconds(5)
        /// After an early answer that closes: how much of the rest of the request is read.
        package var lingerBytes: Int = 16 << 20

        /// Creates a value with every property given (or its default).
        package init(
            maxBodyBytes: Int = TrackAPI.maxRequestBytes, requestTimeout: TimeAmount = TimeAmount(Defaults.httpRequestTimeout),
            idleTimeout: TimeAmount = TimeAmount(Defaults.httpIdleTimeout), lingerTime: TimeAmount = .seconds(5),
            lingerBytes: Int = 16 << 20
        ) {
            self.maxBodyBytes = maxBodyBytes
            self.requestTimeout = requestTimeout
            self.idleTimeout = idleTimeout
            self.lingerTime = lingerTime
            self.lingerBytes = lingerBytes
        }
    }

    /// What a request asks for, decided from its head (``HTTPFace/Options/route(_:)``).
    package enum Route: Equatable, Sendable {
        /// Events: its body is read once the budget has room for `reserve` bytes.
        case track(reserve: Int)
        case status
        case metrics
        /// An answer made from the head alone (401, 404, 405, 413).
        case answer(HTTPAnswer)
    }

    package enum Action: Equatable, Sendable {
        /// (Re)start the one timer; ``HTTPConnection/timedOut()`` when it fires.
        case arm(TimeAmount)
        case cancelTimer
        /// Take this much room in the budget for the body, then ``HTTPConnection/budgetGranted(_:)``.
        case reserve(Int)
        /// Give room back to the budget.
        case release(Int)
        /// `100 Continue`: the client may send its body now.
        case sendContinue(HTTPVersion)
        /// Keep this body part (the only action of a part that is kept).
        case keepBody
        /// Parse and commit the body kept; answer with ``HTTPConnection/answerReady(_:)``.
        case submit
        /// Read the status or the metrics; answer with ``HTTPConnection/answerReady(_:)``.
        case serve(Route)
        /// On a fresh stack (writing an answer's end hands over the next pipelined request):
        /// ``HTTPConnection/answerReady(_:)``.
        case answerNextTick(HTTPAnswer)
        case write(HTTPAnswer, version: HTTPVersion, closes: Bool)
        /// Pass on a read that was held.
        case read
        /// After a write: pass on a held read if ``HTTPConnection/readsAfterWrite()`` says so.
        /// Decided then, not before the write: writing an answer's end hands over the next
        /// pipelined request, which may wait for the budget, and may leave the peer unwritable.
        case readIfAllowed
        /// Close once what was written has gone out.
        case close
    }

    private struct Request: Sendable {
        package var head: HTTPRequestHead
        package var route: Route
        /// Budget bytes it holds.
        package var reserved = 0
        package var waitingForBudget = false
        package var bodyBytes = 0
        /// Its last part was read.
        package var ended = false
    }

    private enum State: Sendable {
        /// Waiting for a request head.
        case idle
        /// Reading a request (its body, or waiting for room to read it).
        case receiving(Request)
        /// The request is whole; its answer is being made (a commit, a status read).
        case answering(Request)
        /// An answer waiting for the peer to read earlier ones (the channel is not writable).
        case parked(Request, HTTPAnswer)
        /// An early answer that closes was written: the rest of the request is read and dropped.
        case lingering(discarded: Int)
        /// The connection closes.
        case closing
    }

    package let options: Options
    private var state = State.idle
    private var draining = false
    private var writable = true
    private var active = true
    private var readPending = false

    package init(options: Options) { self.options = options }

    /// Whether the connection is between requests (for tests and the drain).
    package var isIdle: Bool { if case .idle = state { true } else { false } }
    package var isLingering: Bool { if case .lingering = state { true } else { false } }

    // MARK: Events

    package mutating func opened() -> [Action] { [.arm(options.idleTimeout)] }

    package mutating func head(_ head: HTTPRequestHead, route: Route) -> [Action] {
        guard case .idle = state else { return [] }
        var request = Request(head: head, route: route)
        switch route {
        case .track(let size):
            request.waitingForBudget = true
            state = .receiving(request)
            return [.arm(options.requestTimeout), .reserve(size)]
        case .answer(let answer) where answer.closes:
            state = .receiving(request)
            return [.arm(options.requestTimeout)] + respond(answer, linger: true)
        case .answer, .status, .metrics:
            state = .receiving(request)
            return [.arm(options.requestTimeout)]
        }
    }

    package mutating func budgetGranted(_ bytes: Int) -> [Action] {
        guard case .receiving(var request) = state, request.waitingForBudget else { return [.release(bytes)] }
        request.waitingForBudget = false
        request.reserved = bytes
        if request.ended {
            state = .answering(request)
            return [.submit]
        }
        state = .receiving(request)
        var actions: [Action] = []
        if request.head.headers.first(name: "expect")?.lowercased() == "100-continue" {
            actions.append(.sendContinue(request.head.version))
        }
        return actions + takePendingRead()
    }

    package mutating func bodyPart(bytes: Int) -> [Action] {
        switch state {
        case .receiving(var request):
            guard case .track = request.route else { return [] }  // other bodies are dropped
            guard bytes <= options.maxBodyBytes - request.bodyBytes else {
                return respond(.bodyTooLarge(limit: options.maxBodyBytes), linger: true)
            }
            request.bodyBytes += bytes
            state = .receiving(request)
            return [.keepBody]
        case .lingering(let discarded):
            let total = discarded.addingReportingOverflow(bytes)
            guard !total.overflow, total.partialValue <= options.lingerBytes else { return closeNow() }
            state = .lingering(discarded: total.partialValue)
            return []
        case .idle, .answering, .parked, .closing:
            return []
        }
    }

    package mutating func end() -> [Action] {
        switch state {
        case .receiving(var request):
            request.ended = true
            switch request.route {
            case .track where request.waitingForBudget:
                state = .receiving(request)
                return [.cancelTimer]
            case .track:
                state = .answering(request)
                return [.cancelTimer, .submit]
            case .status, .metrics:
                state = .answering(request)
                return [.cancelTimer, .serve(request.route)]
            case .answer(let answer):
                state = .answering(request)
                return [.cancelTimer, .answerNextTick(answer)]
            }
        case .lingering:
            return closeNow()  // the client has sent everything: it reads the answer, then our close
        case .idle, .answering, .parked, .closing:
            return []
        }
    }

    /// The answer to the request under way is made (committed, read, or refused).
    package mutating func answerReady(_ answer: HTTPAnswer) -> [Action] { respond(answer, linger: true) }

    package mutating func timedOut() -> [Action] {
        switch state {
        case .idle, .parked, .lingering: return closeNow()
        case .receiving: return respond(.requestTimeout, linger: false)  // it stalled: no use waiting
        case .answering, .closing: return []  // the answer is on its way
        }
    }

    package mutating func writabilityChanged(to writable: Bool) -> [Action] {
        self.writable = writable
        guard writable else { return [] }
        if case .parked(let request, let answer) = state {
            state = .answering(request)
            return respond(answer, linger: true)
        }
        return takePendingRead()
    }

    /// The bytes do not parse as HTTP/1.1 (or end mid-request). A request with no answer yet is
    /// answered 400 and closed; after an answer (lingering, or closing) the connection just
    /// closes, since a second answer would confuse the client; an answer being made goes out
    /// with `Connection: close`.
    package mutating func malformed() -> [Action] {
        switch state {
        case .idle:
            state = .closing
            return [.cancelTimer, .write(.badRequest, version: .http1_1, closes: true), .close]
        case .receiving:
            return respond(.badRequest, linger: false)
        case .answering, .parked:
            draining = true
            return []
        case .lingering, .closing:
            return closeNow()
        }
    }

    /// The client closed its side, or the daemon drains: answer what is under way, then close.
    package mutating func inputEnded() -> [Action] {
        draining = true
        switch state {
        case .idle, .lingering: return closeNow()
        case .receiving, .answering, .parked, .closing: return []
        }
    }

    package mutating func inactive() -> [Action] {
        active = false
        // A request still reading or waiting gives its room back; one being committed gives it
        // back when its answer comes.
        if case .receiving(let request) = state {
            state = .closing
            return request.reserved > 0 ? [.cancelTimer, .release(request.reserved)] : [.cancelTimer]
        }
        if case .answering = state { return [.cancelTimer] }
        state = .closing
        return [.cancelTimer]
    }

    /// Reading waits while the budget has no room for the body, and while the peer does not
    /// read its answers (so a client that pipelines without reading stalls on its own socket).
    package mutating func readRequested() -> [Action] {
        readPending = true
        return takePendingRead()
    }

    /// A write went out: a read held while the answer was made may go now, if the state the
    /// write left allows it.
    package mutating func readsAfterWrite() -> [Action] { takePendingRead() }

    // MARK: Answering

    private mutating func takePendingRead() -> [Action] {
        let mayRead: Bool
        switch state {
        case .lingering: mayRead = true
        case .receiving(let request): mayRead = !request.waitingForBudget && writable
        case .idle, .answering, .parked: mayRead = writable
        case .closing: mayRead = false
        }
        guard readPending, mayRead else { return [] }
        readPending = false
        return [.read]
    }

    private mutating func closeNow() -> [Action] {
        state = .closing
        return [.cancelTimer, .close]
    }

    /// Writes `answer`; then waits for the next request, lingers, or closes.
    ///
    /// - Parameter linger: an answer given before the request's end may linger (read the rest
    ///   of the request) before it closes.
    private mutating func respond(_ answer: HTTPAnswer, linger: Bool) -> [Action] {
        let request: Request
        switch state {
        case .receiving(let r), .answering(let r), .parked(let r, _): request = r
        case .idle, .lingering, .closing: return []
        }
        let actions: [Action] = request.reserved > 0 ? [.release(request.reserved)] : []
        var released = request
        released.reserved = 0
        guard active else {
            state = .closing
            return actions + [.cancelTimer]
        }
        if !writable && !answer.closes {
            // The peer is not reading its answers: this one waits (and with it the next
            // pipelined request), for at most the idle timeout.
            state = .parked(released, answer)
            return actions + [.arm(options.idleTimeout)]
        }
        let version = request.head.version
        let closes = answer.closes || draining || !request.head.isKeepAlive
        guard closes else {
            state = .idle
            return actions + [.arm(options.idleTimeout), .write(answer, version: version, closes: false), .readIfAllowed]
        }
        if linger && !request.ended && !draining {
            state = .lingering(discarded: 0)
            return actions + [.arm(options.lingerTime), .write(answer, version: version, closes: true), .readIfAllowed]
        }
        state = .closing
        return actions + [.cancelTimer, .write(answer, version: version, closes: true), .close]
    }
}
