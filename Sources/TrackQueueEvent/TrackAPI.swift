/// The Track API's own bounds (README, "Delivery"): trackq's limits and defaults follow them,
/// and refer here.
package enum TrackAPI {
    /// The largest request body the API takes: 2 MB. Also the largest line or HTTP body
    /// trackq takes, and the largest event.
    package static let maxRequestBytes = 2_000_000
    /// The most events in one request.
    package static let maxEventsPerRequest = 1000
}
