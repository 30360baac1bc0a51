import TrackQueueEvent
import TrackQueueSupport

extension StatusReport {
    /// One compact JSON object (no trailing newline), keys in the order of the README's status JSON, then
    /// the extensions (`"endpoint"`, only when known). Times are RFC 3339 UTC with milliseconds,
    /// or `null`; every documented key is always present.
    public func json() -> String {
        var out = JSONWriter()
        out.beginObject()
        out.key("version")
        out.string(version)

        out.key("daemon")
        out.beginObject()
        out.key("running")
        out.bool(daemon.running)
        out.key("pid")
        out.integer(daemon.pid.map(Int64.init))
        out.key("started_at")
        out.time(daemon.startedAtMillis)
        out.endObject()

        out.key("queue")
        out.beginObject()
        out.key("pending")
        out.integer(queue.pending)
        out.key("pending_bytes")
        out.integer(queue.pendingBytes)
        out.key("oldest_pending_at")
        out.time(queue.oldestPendingAtMillis)
        out.endObject()

        out.key("delivery")
        out.beginObject()
        out.key("state")
        out.string(delivery.state.rawValue)
        out.key("last_attempt_at")
        out.time(delivery.lastAttemptAtMillis)
        out.key("last_success_at")
        out.time(delivery.lastSuccessAtMillis)
        out.key("last_status")
        out.integer(delivery.lastStatus.map(Int64.init))
        out.key("last_error")
        out.string(delivery.lastError)
        out.key("next_attempt_at")
        out.time(delivery.nextAttemptAtMillis)
        out.key("consecutive_failures")
        out.integer(Int64(delivery.consecutiveFailures))
        out.endObject()

        out.key("totals")
        out.beginObject()
        out.key("accepted")
        out.integer(totals.accepted)
        out.key("delivered")
        out.integer(totals.delivered)
        out.key("dead_lettered")
        out.integer(totals.deadLettered)
        out.key("rejected")
        out.integer(totals.rejected)
        out.key("dead_letters_dropped")
        out.integer(totals.deadLettersDropped)
        out.endObject()

        out.key("dead_letters")
        out.integer(deadLetters)

        out.key("alert")
        if let alert {
            out.beginObject()
            out.key("kind")
            out.string(alert.kind.rawValue)
            out.key("status")
            out.integer(Int64(alert.status))
            out.key("since")
            out.time(alert.sinceMillis)
            out.key("message")
            out.string(alert.message)
            out.endObject()
        } else {
            out.null()
        }

        out.key("database")
        out.beginObject()
        out.key("path")
        out.string(database.path)
        out.key("size_bytes")
        out.integer(database.sizeBytes)
        out.endObject()

        out.key("storage")
        out.beginObject()
        out.key("state")
        out.string(storage.state.rawValue)
        out.key("salvaged")
        out.integer(storage.salvaged)
        out.key("lost")
        out.integer(storage.lost)
        out.key("damaged_file")
        out.string(storage.damagedFile)
        // Extensions (after the documented keys).
        out.key("damaged_events")
        out.integer(storage.damagedEvents)
        out.key("since")
        out.time(storage.sinceMillis)
        out.key("reason")
        out.string(storage.reason)
        out.endObject()

        // Extensions (after the documented keys).
        if let endpoint {
            out.key("endpoint")
            out.string(endpoint)
        }
        if let clock {
            out.key("clock")
            out.beginObject()
            out.key("state")
            out.string(clock.state.rawValue)
            out.key("read_at")
            out.time(clock.readAtMillis)
            out.key("floor")
            out.time(clock.floorMillis)
            out.key("boot_id_known")
            out.bool(clock.bootIDKnown)
            out.endObject()
        }
        out.endObject()
        return out.text
    }
}

extension StatusReport {
    /// A minimal JSON text builder: commas are placed by `key`, values are appended as written.
    package struct JSONWriter {
        package private(set) var text = ""
        /// Whether the innermost open object still has no member (so no comma is due).
        private var firstMember: [Bool] = []

        package mutating func beginObject() {
            text.append("{")
            firstMember.append(true)
        }

        package mutating func endObject() {
            firstMember.removeLast()
            text.append("}")
        }

        package mutating func key(_ name: String) {
            if firstMember.last == false { text.append(",") }
            if !firstMember.isEmpty { firstMember[firstMember.count - 1] = false }
            appendQuoted(name)
            text.append(":")
        }

        package mutating func null() { text.append("null") }

        package mutating func bool(_ value: Bool) { text.append(value ? "true" : "false") }

        package mutating func integer(_ value: Int64?) {
            if let value { text.append(String(value)) } else { null() }
        }

        package mutating func string(_ value: String?) {
            if let value { appendQuoted(value) } else { null() }
        }

        package mutating func time(_ millis: Int64?) {
            if let millis { appendQuoted(RFC3339.format(millis: millis)) } else { null() }
        }

        private mutating func appendQuoted(_ value: String) {
            text.append("\"")
            text.append(JSONText.escaped(value))
            text.append("\"")
        }
    }
}
