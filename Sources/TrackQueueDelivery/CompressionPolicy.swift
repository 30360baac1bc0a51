/// Whether request bodies go gzip-compressed, learned from the API's answers.
///
/// With `--compression gzip`, bodies are compressed until the API says it cannot take them:
/// a 415 to a compressed body always; a 400 to one before any compressed body was taken, if
/// the same body sent plain is then taken (a 400 for plain too means an event is bad, and the
/// batch is split as usual). Either way the body is sent again plain at once, and every body
/// after it goes plain (said once in the log). A 2xx to a compressed body proves gzip: later
/// 400s are about the events and are not tried plain.
package struct CompressionPolicy: Sendable, Equatable {
    package enum State: Sendable, Equatable {
        /// `--compression none`.
        case off
        /// Compressing; no compressed body taken yet.
        case unproven
        /// Compressing; the API took a compressed body.
        case works
        /// The API refused compressed bodies: plain from now on.
        case refused
    }

    package private(set) var state: State

    package init(compressing: Bool) {
        state = compressing ? .unproven : .off
    }

    /// Whether the next body is compressed.
    package var compresses: Bool { state == .unproven || state == .works }

    /// What to do after the API answered `status` to a compressed body.
    package enum Next: Sendable, Equatable {
        /// The answer stands.
        case done
        /// Send the same body plain now; `fellBack`: compression is off from now on.
        case resendPlain(fellBack: Bool)
    }

    package mutating func compressedAnswered(_ status: Int) -> Next {
        if ResponseClassifier.classify(status: status) == .success {
            if state == .unproven { state = .works }
            return .done
        }
        switch status {
        case 415:
            state = .refused
            return .resendPlain(fellBack: true)
        case 400 where state == .unproven:
            return .resendPlain(fellBack: false)
        default:
            return .done
        }
    }

    /// After a 400 to a compressed body, the same body sent plain was answered `status`;
    /// whether compression is off from now on (the API took it plain).
    package mutating func plainAnswered(_ status: Int) -> Bool {
        guard state == .unproven, ResponseClassifier.classify(status: status) == .success else { return false }
        state = .refused
        return true
    }
}
