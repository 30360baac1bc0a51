import CoreMetrics
import TrackQueueEvent

/// The metrics the daemon records as it works, through swift-metrics.
///
/// Lifetime totals, queue size, oldest age, dead letters and alert state live in the
/// database and are exported from a ``StatusReport`` at scrape time; these are the ones only
/// the running process knows: refusals by code, HTTP answers by class, request durations and
/// the current backoff.
package final class DaemonMetrics: Sendable {
    private let rejected: [String: Counter]
    private let responses: [String: Counter]
    package let requestDuration: Timer
    package let backoff: Gauge
    package let apiWarnings: Counter
    /// Events accepted with a `timestamp` that is not RFC 3339, forwarded unchanged.
    package let uncheckedTimestamps: Counter

    /// - Parameter factory: where the metrics go; a no-op factory when metrics are off.
    package init(factory: any MetricsFactory) {
        let codes = IngestError.Code.allCases.map(\.rawValue)
        rejected = Dictionary(
            uniqueKeysWithValues: codes.map {
                ($0, Counter(label: "trackq_lines_rejected_total", dimensions: [("code", $0)], factory: factory))
            })
        let classes = ["2xx", "3xx", "4xx", "5xx", "error"]
        responses = Dictionary(
            uniqueKeysWithValues: classes.map {
                ($0, Counter(label: "trackq_http_responses_total", dimensions: [("class", $0)], factory: factory))
            })
        requestDuration = Timer(label: "trackq_http_request_duration_seconds", factory: factory)
        backoff = Gauge(label: "trackq_delivery_backoff_seconds", factory: factory)
        apiWarnings = Counter(label: "trackq_api_warnings_total", factory: factory)
        uncheckedTimestamps = Counter(label: "trackq_timestamps_unchecked_total", factory: factory)
    }

    /// A refused line, by its wire code.
    package func rejected(_ code: IngestError.Code) {
        rejected[code.description]?.increment()
    }

    /// One HTTP answer (status nil: no answer, a transport error).
    package func response(status: Int?) {
        let key = status.map { (200..<600).contains($0) ? "\($0 / 100)xx" : "error" } ?? "error"
        responses[key]?.increment()
    }
}
