import TrackQueueClock

extension StatusReport {
    /// The delivery states `trackq_delivery_state` has a line for: every one.
    package static let deliveryStates = DeliveryState.allCases
    /// The alert kinds `trackq_alert_active` has a line for (a damaged file has its own metric,
    /// `trackq_storage_state`).
    package static let alertKinds: [AlertKind] = [.auth, .endpoint, .tls]

    /// The report in the Prometheus text exposition format (0.0.4), for node_exporter's
    /// textfile collector: `# HELP` and `# TYPE` before each metric family, no timestamps,
    /// ends with a newline. Seconds are decimals with up to three places, never an exponent.
    public func prometheus(nowMillis: Int64) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            let metric = "trackq_" + name
            out += "# HELP \(metric) \(help)\n"
            out += "# TYPE \(metric) \(type)\n"
            for sample in samples {
                out += metric + sample.labels + " " + sample.value + "\n"
            }
        }
        func single(_ name: String, _ type: String, _ help: String, _ value: String) {
            family(name, type, help, [("", value)])
        }
        func flag(_ on: Bool) -> String { on ? "1" : "0" }

        family(
            "info", "gauge", "trackq version (always 1).",
            [("{version=\"\(Self.labelValue(version))\"}", "1")])
        single("daemon_running", "gauge", "Whether the trackq daemon is running (1) or not (0).", flag(daemon.running))

        single("events_accepted_total", "counter", "Events accepted from apps, lifetime.", String(totals.accepted))
        single("events_delivered_total", "counter", "Events delivered to the Track API, lifetime.", String(totals.delivered))
        single(
            "events_dead_lettered_total", "counter", "Events moved to the dead letters, lifetime.",
            String(totals.deadLettered))
        single(
            "events_rejected_total", "counter", "Events refused at the socket (invalid, too large, queue full), lifetime.",
            String(totals.rejected))
        single(
            "dead_letters_dropped_total", "counter", "Dead letters dropped, oldest first, past --max-dead-letters, lifetime.",
            String(totals.deadLettersDropped))

        single("queue_pending_events", "gauge", "Events waiting to be delivered.", String(queue.pending))
        single("queue_pending_bytes", "gauge", "Bytes of events waiting to be delivered.", String(queue.pendingBytes))
        let oldestAge = queue.oldestPendingAtMillis.map { max(0, nowMillis &- $0) } ?? 0
        single(
            "queue_oldest_age_seconds", "gauge", "Age of the oldest pending event in seconds (0 when the queue is empty).",
            Self.seconds(millis: oldestAge))
        single("dead_letters", "gauge", "Events currently in the dead letters (trackq dead list).", String(deadLetters))

        family(
            "delivery_state", "gauge", "Delivery state: 1 for the current state, 0 for the others.",
            Self.deliveryStates.map { ("{state=\"\($0.rawValue)\"}", flag($0 == delivery.state)) })
        single(
            "delivery_consecutive_failures", "gauge", "Delivery attempts failed in a row since the last success.",
            String(delivery.consecutiveFailures))
        if let success = delivery.lastSuccessAtMillis {
            single(
                "delivery_last_success_timestamp_seconds", "gauge",
                "Unix time of the last successful delivery.", Self.seconds(millis: success))
        }

        family(
            "alert_active", "gauge", "Whether an alert of this kind is active (1) or not (0).",
            Self.alertKinds.map { ("{kind=\"\($0.rawValue)\"}", flag(alert?.kind == $0)) })

        single("database_size_bytes", "gauge", "Size of the queue database in bytes.", String(database.sizeBytes))
        if let clock {
            family(
                "clock_state", "gauge", "The host clock's state (synced, unknown, wrong): 1 for the current one, 0 for the others.",
                ClockState.allCases.map { ("{state=\"\($0.rawValue)\"}", flag($0 == clock.state)) })
        }
        family(
            "storage_state", "gauge",
            "The queue file (ok, damaged, recovered: moved aside, what it held salvaged): 1 for the current state.",
            [StorageInfo.State.ok, .damaged, .recovered].map { ("{state=\"\($0.rawValue)\"}", flag($0 == storage.state)) })
        if storage.state != .ok, let lost = storage.lost {
            single("storage_lost_events", "gauge", "Events the damaged queue file held that could not be read.", String(lost))
        }
        return out
    }

    /// Milliseconds as decimal seconds without an exponent: 192500 → "192.5", 12000 → "12".
    package static func seconds(millis: Int64) -> String {
        let sign = millis < 0 ? "-" : ""
        let magnitude = millis.magnitude
        let whole = magnitude / 1000
        var fraction = magnitude % 1000
        guard fraction != 0 else { return sign + String(whole) }
        var places = 3
        while fraction % 10 == 0 {
            fraction /= 10
            places -= 1
        }
        let digits = String(fraction)
        return sign + String(whole) + "." + String(repeating: "0", count: places - digits.count) + digits
    }

    /// A label value escaped for the text format: backslash, double quote and line feed.
    package static func labelValue(_ value: String) -> String {
        var result = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
