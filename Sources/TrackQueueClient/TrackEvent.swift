import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An event with the Track API's fields, ready for `TrackQueueClient.send(_:)`.
///
/// ```swift
/// let event = TrackEvent(eventName: "checkout_completed", userID: "u42", timestamp: Date(),
///                        properties: ["total": 59.90, "items": ["sku-1", "sku-2"], "coupon": nil],
///                        context: ["app_version": "3.1.0"])
/// ```
/// Encodes as `{"event_name":…,"user_id":…,"timestamp":"2026-11-27T05:00:00.123Z",
/// "properties":{…},"context":{…}}`; `timestamp` is omitted when `nil` (the daemon then stamps
/// the time it read the event).
public struct TrackEvent: Encodable, Sendable, Equatable {
    /// Non-empty.
    public var eventName: String
    /// Non-empty.
    public var userID: String
    /// When the event happened; `nil` for "when the daemon reads it". Sent in UTC, with
    /// milliseconds (finer digits are dropped).
    public var timestamp: Date?
    public var properties: [String: JSONValue]
    public var context: [String: JSONValue]

    public init(
        eventName: String, userID: String, timestamp: Date? = nil,
        properties: [String: JSONValue] = [:], context: [String: JSONValue] = [:]
    ) {
        self.eventName = eventName
        self.userID = userID
        self.timestamp = timestamp
        self.properties = properties
        self.context = context
    }

    enum CodingKeys: String, CodingKey {
        case eventName = "event_name"
        case userID = "user_id"
        case timestamp
        case properties
        case context
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(eventName, forKey: .eventName)
        try container.encode(userID, forKey: .userID)
        // A string whatever the encoder's date strategy.
        if let timestamp { try container.encode(RFC3339.string(from: timestamp), forKey: .timestamp) }
        try container.encode(properties, forKey: .properties)
        try container.encode(context, forKey: .context)
    }
}

/// Any JSON value, for `TrackEvent.properties` and `context`; literals convert to it:
/// `["plan": "pro", "seats": 3, "trial": false, "tags": ["a", "b"], "coupon": nil]`.
///
/// Numbers are `Double`s: integers beyond ±2^53 lose precision, so send such ids as strings.
public enum JSONValue: Codable, Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral, ExpressibleByNilLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    case string(String)
    case number(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([String: JSONValue])

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .number(let value):
            // Whole numbers as integers (`3`, not `3.0`), exactly as they were written.
            if value.rounded() == value, abs(value) <= 9_007_199_254_740_992 {
                try container.encode(Int64(value))
            } else {
                try container.encode(value)  // NaN and infinities: the encoder throws
            }
        case .bool(let value): try container.encode(value)
        case .null: try container.encodeNil()
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

/// RFC 3339 in UTC with milliseconds, as the daemon stamps events: `2026-11-27T05:00:00.123Z`.
enum RFC3339 {
    static func string(from date: Date) -> String {
        let raw = (date.timeIntervalSince1970 * 1000).rounded(.down)
        let milliseconds = raw.isNaN ? 0 : raw
        let clamped = Int64(max(-62_135_596_800_000, min(253_402_300_799_999, milliseconds)))  // years 1...9999
        var seconds = time_t(clamped.floorDividing(by: 1000))
        let millis = Int(clamped - Int64(seconds) * 1000)
        var parts = tm()
        _ = gmtime_r(&seconds, &parts)
        return pad(Int(parts.tm_year) + 1900, 4) + "-" + pad(Int(parts.tm_mon) + 1, 2) + "-" + pad(Int(parts.tm_mday), 2)
            + "T" + pad(Int(parts.tm_hour), 2) + ":" + pad(Int(parts.tm_min), 2) + ":" + pad(Int(parts.tm_sec), 2)
            + "." + pad(millis, 3) + "Z"
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}

extension Int64 {
    fileprivate func floorDividing(by divisor: Int64) -> Int64 {
        let (quotient, remainder) = quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? quotient - 1 : quotient
    }
}
