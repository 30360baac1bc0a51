import Foundation
import NIOConcurrencyHelpers

/// A misbehaving HTTP/1.1 server on 127.0.0.1, written on plain sockets so it can do what a
/// well-made server library will not: stall after the head, trickle a body a byte a second,
/// reset mid-body, close without answering. One thread per connection; every connection
/// is closed after one exchange.
final class HostileHTTPServer: Sendable {
    /// What to do with one request, once it has been read whole.
    enum Behavior: Sendable {
        /// Answer with these bytes (a complete response, head and body), then close.
        case raw(String)
        /// Send a head announcing `bodyBytes`, then nothing, until the client gives up.
        case headThenStall(bodyBytes: Int)
        /// Send a head announcing `bodyBytes`, then one byte a second.
        case trickle(bodyBytes: Int)
        /// Send a head and half the announced body, then reset the connection.
        case resetMidBody
        /// Close without a byte.
        case closeWithoutAnswer

        /// A complete response with `status`, optional headers and body.
        static func status(_ status: Int, headers: [(String, String)] = [], body: String = "") -> Behavior {
            var head = "HTTP/1.1 \(status) Scripted\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
            for (name, value) in headers { head += "\(name): \(value)\r\n" }
            return .raw(head + "\r\n" + body)
        }
    }

    let port: Int
    private let listener: Int32
    private let decide: @Sendable (_ body: [UInt8], _ index: Int) -> Behavior
    private let state = NIOLockedValueBox<(bodies: [[UInt8]], stopped: Bool)>(([], false))

    var url: String { "http://127.0.0.1:\(port)/api/track" }
    /// The request bodies received, in order.
    var bodies: [[UInt8]] { state.withLockedValue { $0.bodies } }
    var requestCount: Int { state.withLockedValue { $0.bodies.count } }

    init(decide: @escaping @Sendable (_ body: [UInt8], _ index: Int) -> Behavior) throws {
        self.decide = decide
        (listener, port) = try listenOnLoopback(backlog: 64)
        Thread { [self] in acceptLoop() }.start()
    }

    func stop() {
        state.withLockedValue { $0.stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private var stopped: Bool { state.withLockedValue { $0.stopped } }

    private func acceptLoop() {
        while !stopped {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                if errno == EINTR { continue }
                return
            }
            Thread { [self] in serve(connection) }.start()
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        guard let body = readRequest(fd) else { return }
        let index = state.withLockedValue { state -> Int in
            state.bodies.append(body)
            return state.bodies.count - 1
        }
        switch decide(body, index) {
        case .raw(let text):
            write(fd, text)
        case .headThenStall(let bytes):
            write(fd, "HTTP/1.1 200 OK\r\nContent-Length: \(bytes)\r\n\r\n")
            waitForClose(fd, maximum: .seconds(120))
        case .trickle(let bytes):
            write(fd, "HTTP/1.1 200 OK\r\nContent-Length: \(bytes)\r\n\r\n")
            for _ in 0..<bytes where !stopped {
                guard write(fd, "x") else { return }
                if waitForClose(fd, maximum: .seconds(1)) { return }
            }
        case .resetMidBody:
            write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + String(repeating: "y", count: 50))
            var linger = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        case .closeWithoutAnswer:
            break
        }
    }

    /// Reads a request's head and its `Content-Length` body; nil if the client went away.
    private func readRequest(_ fd: Int32) -> [UInt8]? {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var bodyStart: Int?
        var length = 0
        while true {
            if bodyStart == nil, let end = data.firstRange(of: Array("\r\n\r\n".utf8)) {
                bodyStart = end.upperBound
                let head = String(decoding: data[..<end.lowerBound], as: UTF8.self).lowercased()
                if let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }) {
                    length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
            if let start = bodyStart, data.count - start >= length {
                return Array(data[start..<(start + length)])
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            data += chunk[..<n]
        }
    }

    @discardableResult
    private func write(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Waits until the client closes (true) or `maximum` passes (false).
    @discardableResult
    private func waitForClose(_ fd: Int32, maximum: Duration) -> Bool {
        let deadline = ContinuousClock.now + maximum
        var scratch = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline && !stopped {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, 100) > 0 {
                let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return true }
            }
        }
        return false
    }
}
