import Foundation
import NIOHTTP1
import TrackQueueEvent
import TrackQueueSupport

/// One response of the HTTP face: its status, headers that matter and JSON (or text) body.
///
/// Answers to `POST /api/track` use the Track API's own shapes, so an app that spoke to the
/// API needs no change to read them:
/// `{"success":true,"message":"Event(s) tracked successfully","response_id":…,"accepted":N}`
/// and `{"success":false,"message":…,"error":CODE}`.
package struct HTTPAnswer: Equatable, Sendable {
    package var status: HTTPResponseStatus
    package var body: String
    package var contentType = "application/json"
    /// Seconds, for 503s: when the app may try again.
    package var retryAfter: Int?
    /// For 405s: the methods the path takes.
    package var allow: String?
    /// Whether the connection closes after this answer (its request could not be read whole).
    package var closes = false

    /// The events were committed.
    package static func accepted(count: Int, warnings: ParseWarnings, responseID: String) -> HTTPAnswer {
        var body = #"{"success":true,"message":"Event(s) tracked successfully","response_id":"#
        body += JSONText.quoted(responseID)
        body += #","accepted":"# + String(count)
        if !warnings.isEmpty {
            body += #","warnings":"# + JSONText.array(warnings.messages)
        }
        return HTTPAnswer(status: .ok, body: body + "}")
    }

    /// The answer to a `POST` whose body went through the writer: its one line's answer.
    package static func committed(_ answer: LineAnswer?, warnings: ParseWarnings) -> HTTPAnswer {
        switch answer {
        case .accepted(let count, _, _):
            return .accepted(count: count, warnings: warnings, responseID: UUID().uuidString.lowercased())
        case .refused(let error):
            return .refused(error)
        case nil:
            return .refused(IngestError(.unavailable, "no answer from the writer"))
        }
    }

    /// The answer to `GET /status` or `GET /metrics`: the text read, or why it could not be.
    package static func served(_ result: Result<String, any Error>, contentType: String) -> HTTPAnswer {
        switch result {
        case .success(let text):
            return HTTPAnswer(status: .ok, body: text, contentType: contentType)
        case .failure(let error):
            return .failure(.serviceUnavailable, code: "unavailable", message: "cannot read the status: \(error)", retryAfter: 1)
        }
    }

    /// The events were refused: the line protocol's codes, as HTTP statuses.
    package static func refused(_ error: IngestError) -> HTTPAnswer {
        let (status, retryAfter): (HTTPResponseStatus, Int?) =
            switch error.code {
            case .tooLarge: (.payloadTooLarge, nil)
            case .queueFull: (.serviceUnavailable, 5)
            case .unavailable: (.serviceUnavailable, 1)
            case .invalidJSON, .invalidEvent: (.badRequest, nil)
            }
        return failure(status, code: error.code.description, message: error.message, retryAfter: retryAfter)
    }

    /// An error in the API's shape; `code` is trackq's.
    package static func failure(_ status: HTTPResponseStatus, code: String, message: String, retryAfter: Int? = nil) -> HTTPAnswer {
        HTTPAnswer(
            status: status,
            body: #"{"success":false,"message":"# + JSONText.quoted(message) + #","error":"# + JSONText.quoted(code) + "}",
            retryAfter: retryAfter)
    }

    /// The response head: status and headers, `Connection` as `closes` says.
    package func head(version: HTTPVersion, closes: Bool) -> HTTPResponseHead {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if let retryAfter { headers.add(name: "Retry-After", value: String(retryAfter)) }
        if let allow { headers.add(name: "Allow", value: allow) }
        headers.add(name: "Connection", value: closes ? "close" : "keep-alive")
        return HTTPResponseHead(version: version, status: status, headers: headers)
    }

    package static func notFound(path: String) -> HTTPAnswer {
        // The path came from the client: bounded before it is echoed (JSONText escapes it).
        let shown = path.count > 200 ? String(path.prefix(200)) + "…" : path
        return failure(
            .notFound, code: "not_found",
            message: "no such path: \(shown); events go to POST /api/track (or /track), status to GET /status, metrics to GET /metrics")
    }

    package static func methodNotAllowed(allow: String) -> HTTPAnswer {
        var answer = failure(.methodNotAllowed, code: "method_not_allowed", message: "this path takes \(allow)")
        answer.allow = allow
        return answer
    }

    package static let unauthorized = failure(
        .unauthorized, code: "unauthorized", message: "missing or wrong bearer token (Authorization: Bearer <token>)")

    package static func bodyTooLarge(limit: Int) -> HTTPAnswer {
        var answer = failure(.payloadTooLarge, code: "too_large", message: "request body exceeds \(limit) bytes")
        answer.closes = true
        return answer
    }

    /// The bytes are not an HTTP/1.1 request.
    package static let badRequest: HTTPAnswer = {
        var answer = failure(.badRequest, code: "bad_request", message: "the request is not valid HTTP/1.1")
        answer.closes = true
        return answer
    }()

    package static let requestTimeout: HTTPAnswer = {
        var answer = failure(.requestTimeout, code: "timeout", message: "the request did not arrive whole in time")
        answer.closes = true
        return answer
    }()
}
