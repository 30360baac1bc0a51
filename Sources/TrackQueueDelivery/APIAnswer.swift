import Foundation

/// What trackq reads in the API's answer bodies.
package enum APIAnswer {
    /// The number of entries in a top-level `"warnings"` array, 0 when there is none.
    /// (Off the hot path: only 2xx bodies that mention warnings are parsed.)
    package static func warningCount(_ body: String) -> Int {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
            let warnings = object["warnings"] as? [Any]
        else { return 0 }
        return warnings.count
    }
}
