import Testing

@testable import TrackQueue

@Suite struct ResponseClassifierTests {
    /// The README's delivery rules, written independently of the classifier.
    private func expected(_ status: Int) -> ResponseClass {
        if (200..<300).contains(status) { return .success }
        if [400, 413, 422].contains(status) { return .rejected }
        if [401, 403].contains(status) { return .credentials }
        if [408, 429].contains(status) { return .retryable }
        if (400..<500).contains(status) { return .endpoint }
        return .retryable
    }

    @Test func everyStatusFrom100To599FollowsTheRules() {
        for status in 100...599 {
            #expect(ResponseClassifier.classify(status: status) == expected(status), "status \(status)")
        }
    }

    @Test(arguments: [
        (200, ResponseClass.success), (204, .success), (299, .success),
        (400, .rejected), (413, .rejected), (422, .rejected),
        (401, .credentials), (403, .credentials),
        (404, .endpoint), (405, .endpoint), (410, .endpoint), (418, .endpoint), (499, .endpoint),
        (408, .retryable), (429, .retryable), (500, .retryable), (503, .retryable), (599, .retryable),
        (100, .retryable), (302, .retryable), (304, .retryable), (0, .retryable), (600, .retryable), (-1, .retryable),
    ])
    func namedStatuses(status: Int, expected: ResponseClass) {
        #expect(ResponseClassifier.classify(status: status) == expected)
    }
}
