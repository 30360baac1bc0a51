import Foundation
import TrackQueue

/// One HTTP response read off a connection.
struct HTTPReply {
    var status: Int
    /// Header names lower-cased.
    var headers: [String: String]
    var body: String

    /// The body as a JSON object (empty if it is not one).
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:]
    }
}

/// An HTTP/1.1 request as raw text, with its `Content-Length`.
func httpRequest(
    _ method: String, _ path: String, body: String? = nil, headers: [(String, String)] = [],
    keepAlive: Bool = true
) -> String {
    var text = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\n"
    for (name, value) in headers { text += "\(name): \(value)\r\n" }
    if !keepAlive { text += "Connection: close\r\n" }
    if let body {
        text += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
    } else {
        text += "\r\n"
    }
    return text
}

extension UnixLineConnection {
    /// Reads one response: status line, headers, and a `Content-Length` body.
    func readReply(timeout: Duration = .seconds(20)) throws -> HTTPReply {
        var statusLine = try readLine(timeout: timeout)
        if statusLine.hasSuffix("\r") { statusLine.removeLast() }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw EndOfStream(partial: statusLine)
        }
        var headers: [String: String] = [:]
        while true {
            var line = try readLine(timeout: timeout)
            if line.hasSuffix("\r") { line.removeLast() }
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = headers["content-length"].flatMap(Int.init) ?? 0
        guard let bytes = try nextBytes(length, timeout: timeout) else { throw EndOfStream(partial: unreadText) }
        return HTTPReply(status: status, headers: headers, body: String(decoding: bytes, as: UTF8.self))
    }

    /// Sends `request` and reads its response.
    func exchange(_ request: String, timeout: Duration = .seconds(20)) throws -> HTTPReply {
        try write(request)
        return try readReply(timeout: timeout)
    }
}
