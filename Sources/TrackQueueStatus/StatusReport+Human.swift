import TrackQueueEvent

extension StatusReport {
    /// The human summary for an operator at a glance: is data flowing, how far behind, why not.
    ///
    /// A verdict line (`trackq 0.1.0: OK — delivering`, `WARNING — backing off …`,
    /// `CRITICAL — auth alert …`, `CRITICAL — daemon not running …`), then aligned
    /// `label: value` lines; lines with nothing to say are left out. No trailing newline.
    public func human(nowMillis: Int64) -> String {
        var lines = ["trackq \(Self.oneLine(version)): \(verdict)"]
        func add(_ label: String, _ value: String) {
            let pad = String(repeating: " ", count: max(1, Self.labelWidth - label.count))
            lines.append(label + pad + value)
        }
        func ago(_ millis: Int64) -> String { Self.formatAge(since: millis, now: nowMillis) }

        // Daemon.
        if daemon.running {
            var text = "running"
            if let pid = daemon.pid { text += ", pid \(pid)" }
            if let started = daemon.startedAtMillis {
                text += ", up for \(Self.formatDuration(millis: nowMillis &- started))"
            }
            add("daemon:", text)
        } else {
            add("daemon:", "not running — nothing is being delivered; start it: systemctl start trackq")
        }
        if let endpoint {
            add("endpoint:", Self.oneLine(endpoint))
        }

        // Queue: how much is waiting, how far behind.
        if queue.pending == 0 {
            add("queue:", "empty")
        } else {
            var text = "\(Self.formatCount(queue.pending)) pending (\(Self.formatBytes(queue.pendingBytes)))"
            if let oldest = queue.oldestPendingAtMillis {
                text += ", oldest \(ago(oldest))"
            }
            add("queue:", text)
        }

        // Delivery: state, last success, last error, next attempt.
        var state = delivery.state.words
        if delivery.consecutiveFailures > 0 {
            let n = delivery.consecutiveFailures
            state += ", \(n) consecutive failure\(n == 1 ? "" : "s")"
        }
        if !daemon.running { state += " (as the daemon left it)" }
        add("delivery:", state)
        add("last success:", delivery.lastSuccessAtMillis.map(ago) ?? "never")
        if let error = lastErrorText {
            var text = error
            if let attempt = delivery.lastAttemptAtMillis { text += " (\(ago(attempt)))" }
            add("last error:", text)
        }
        if daemon.running, let next = delivery.nextAttemptAtMillis {
            add("next attempt:", Self.formatUntil(next, now: nowMillis))
        }

        // Alert and its fix.
        if let alert {
            let since = Self.formatDuration(millis: nowMillis &- alert.sinceMillis)
            var text = "\(alert.kind.rawValue), HTTP \(alert.status) for \(since)"
            let message = Self.oneLine(alert.message)
            if !message.isEmpty { text += ": \(message)" }
            add("ALERT:", text)
            add("fix:", Self.alertFix(kind: alert.kind))
        } else if delivery.state == .alert {
            add("ALERT:", "delivery paused (no details recorded)")
        }

        // Dead letters, totals, database.
        if deadLetters > 0 {
            add(
                "dead letters:",
                "\(Self.formatCount(deadLetters)) — inspect: trackq dead list"
                    + (totals.deadLettersDropped > 0
                        ? " (\(Self.formatCount(totals.deadLettersDropped)) older ones dropped, past --max-dead-letters)" : ""))
        } else {
            add("dead letters:", "none")
        }
        add(
            "totals:",
            "accepted \(Self.formatCount(totals.accepted)) · delivered \(Self.formatCount(totals.delivered))"
                + " · dead-lettered \(Self.formatCount(totals.deadLettered))"
                + " · rejected \(Self.formatCount(totals.rejected))"
        )
        add("database:", "\(Self.oneLine(database.path)) (\(Self.formatBytes(database.sizeBytes)))")
        if let clock { add("clock:", Self.clockText(clock)) }
        if storage.state != .ok {
            add("STORAGE:", Self.storageText(storage, ago: ago))
            add("fix:", Self.storageFix(storage))
        }
        return lines.joined(separator: "\n")
    }

    // MARK: - Pieces

    /// The `STORAGE:` line: what was found, what was kept, what was lost.
    package static func storageText(_ storage: StorageInfo, ago: (Int64) -> String) -> String {
        var text = storage.state == .recovered ? "recovered from a damaged queue file" : "the queue file is damaged"
        if let since = storage.sinceMillis { text += " (\(ago(since)))" }
        if let reason = storage.reason { text += ": \(oneLine(reason))" }
        if storage.state == .recovered || storage.salvaged > 0 {
            text += "; \(formatCount(storage.salvaged)) events salvaged"
            if storage.damagedEvents > 0 {
                text += ", \(formatCount(storage.damagedEvents)) kept as dead letters (reason damaged)"
            }
            text += storage.lost.map { ", \(formatCount($0)) lost" } ?? ", an unknown number lost"
        }
        return text
    }

    /// What the operator should do about damaged or recovered storage.
    package static func storageFix(_ storage: StorageInfo) -> String {
        guard let file = storage.damagedFile.map(oneLine) else {
            return "inspect the damaged events (trackq dead list), then requeue or purge them to clear this"
        }
        if storage.state == .damaged && storage.sinceMillis == nil {
            return "restart the daemon (systemctl restart trackq): it moves the file aside and keeps what it can read; "
                + "trackq check says where the damage is"
        }
        return "the damaged file is kept as \(file) (trackq check --database \(file) says where); "
            + "archive or remove it to clear this (and its -wal)"
    }

    /// The `clock:` line: its state, and what that means for the events stamped now.
    package static func clockText(_ clock: ClockInfo) -> String {
        var text: String
        switch clock.state {
        case .synced:
            text = "synced"
        case .unknown:
            text = "unknown (the kernel does not say it is synchronized; times are used as they are)"
        case .wrong:
            text =
                "WRONG — it read \(RFC3339.format(millis: clock.readAtMillis)), before \(RFC3339.format(millis: clock.floorMillis)),"
                + " a time known to have passed; events stamped now carry its time. Fix: start NTP (timedatectl set-ntp true)"
        }
        if !clock.bootIDKnown { text += "; the boot id cannot be read: event ages across restarts use the wall clock" }
        return text
    }

    /// Width of the label column ("last success: " and friends).
    package static let labelWidth = 14

    /// The first line's verdict: severity, then every reason, most serious first.
    package var verdict: String {
        var reasons: [String] = []
        if !daemon.running { reasons.append("daemon not running") }
        if let alert {
            reasons.append("\(alert.kind.rawValue) alert (HTTP \(alert.status))")
        } else if delivery.state == .alert {
            reasons.append("alert")
        }
        if delivery.state == .backoff && daemon.running {
            let n = delivery.consecutiveFailures
            reasons.append(n > 0 ? "backing off after \(n) failure\(n == 1 ? "" : "s")" : "backing off")
        }
        if deadLetters > 0 {
            reasons.append("\(Self.formatCount(deadLetters)) dead letter\(deadLetters == 1 ? "" : "s")")
        }
        if clock?.state == .wrong { reasons.append("the clock is wrong") }
        switch storage.state {
        case .ok: break
        case .damaged: reasons.append("storage damaged")
        case .recovered: reasons.append("storage recovered from damage")
        }
        switch health {
        case .critical:
            return "CRITICAL — " + reasons.joined(separator: ", ")
        case .warning:
            return "WARNING — " + reasons.joined(separator: ", ")
        case .ok:
            switch delivery.state {
            case .sending: return "OK — delivering"
            case .idle where queue.pending == 0: return "OK — idle, all delivered"
            case .idle: return "OK — delivering"
            case .backoff, .alert, .window: return "OK — \(delivery.state.words)"
            }
        }
    }

    /// The last failure as "HTTP 503: message", "connection refused", or nil when the last
    /// attempt did not fail.
    package var lastErrorText: String? {
        let message = delivery.lastError.map { Self.oneLine($0) }.flatMap { $0.isEmpty ? nil : $0 }
        switch (delivery.lastStatus, message) {
        case (let status?, let message?): return "HTTP \(status): \(message)"
        case (let status?, nil): return (200..<300).contains(status) ? nil : "HTTP \(status)"
        case (nil, let message?): return message
        case (nil, nil): return nil
        }
    }

    /// What the operator should try for an alert of `kind`.
    package static func alertFix(kind: AlertKind) -> String {
        switch kind {
        case .auth:
            return "check the token (/etc/trackq/token for the system service, else TRACKQ_TOKEN or the token file), "
                + "then: systemctl restart trackq"
        case .endpoint:
            return "check --endpoint (TRACKQ_ENDPOINT), then: systemctl restart trackq"
        case .storage:
            return "see the daemon's log: journalctl -u trackq"
        case .tls:
            return "check --ca-file, --client-cert and --client-key (or the API's certificate), then: systemctl reload trackq"
        }
    }

    /// `text` on one line, for a terminal: control characters become spaces (runs collapsed),
    /// surrounding whitespace trimmed, and anything over 160 characters cut with "…".
    package static func oneLine(_ text: String) -> String {
        var result = ""
        var pendingSpace = false
        for scalar in text.unicodeScalars {
            let isSpace =
                scalar.properties.generalCategory == .control || scalar == " "
                || scalar == "\u{2028}" || scalar == "\u{2029}"
            if isSpace {
                pendingSpace = !result.isEmpty
                continue
            }
            if pendingSpace {
                result.unicodeScalars.append(" ")
                pendingSpace = false
            }
            result.unicodeScalars.append(scalar)
        }
        let limit = 160
        if result.count > limit {
            result = String(result.prefix(limit - 1)) + "…"
        }
        return result
    }

    /// A duration, compactly, with its two largest units: "45s", "3m 12s", "2h 5m", "3d 4h".
    /// Negative durations (clock skew) count as zero.
    package static func formatDuration(millis: Int64) -> String {
        let seconds = max(0, millis) / 1000
        let (m, s) = (seconds / 60, seconds % 60)
        let (h, mm) = (m / 60, m % 60)
        let (d, hh) = (h / 24, h % 24)
        if d > 0 { return hh > 0 ? "\(d)d \(hh)h" : "\(d)d" }
        if h > 0 { return mm > 0 ? "\(h)h \(mm)m" : "\(h)h" }
        if m > 0 { return s > 0 ? "\(m)m \(s)s" : "\(m)m" }
        return "\(s)s"
    }

    /// "3m 12s ago"; an instant in the future (clock skew) reads "just now".
    package static func formatAge(since millis: Int64, now: Int64) -> String {
        let age = now &- millis
        return age < 1000 ? "just now" : "\(formatDuration(millis: age)) ago"
    }

    /// "in 12s", or "now" when the instant is not in the future. Rounded up, so an attempt
    /// 300 ms ahead reads "in 1s", not "in 0s".
    package static func formatUntil(_ millis: Int64, now: Int64) -> String {
        let ahead = millis &- now
        guard ahead > 0 else { return "now" }
        let roundedUp = ahead > Int64.max - 999 ? ahead : (ahead + 999) / 1000 * 1000
        return "in \(formatDuration(millis: roundedUp))"
    }

    /// A byte count in IEC units: "512 B", "1.2 KiB", "1.2 MiB", "3.0 GiB".
    package static func formatBytes(_ bytes: Int64) -> String {
        let magnitude = bytes.magnitude
        let sign = bytes < 0 ? "-" : ""
        if magnitude < 1024 { return "\(sign)\(magnitude) B" }
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var unit = 0
        var divisor: UInt64 = 1024
        while unit < units.count - 1, magnitude / divisor >= 1024 {
            divisor *= 1024
            unit += 1
        }
        // Tenths, rounded half up, in integers (no overflow: divisor ≤ 2^60).
        var whole = magnitude / divisor
        var tenths = ((magnitude % divisor) / (divisor / 1024) * 10 + 512) / 1024
        if tenths == 10 {
            whole += 1
            tenths = 0
        }
        if whole == 1024, unit < units.count - 1 {
            whole = 1
            unit += 1
        }
        return "\(sign)\(whole).\(tenths) \(units[unit])"
    }

    /// A count with thousands separators: "1,234,567".
    package static func formatCount(_ value: Int64) -> String {
        let digits = String(value.magnitude)
        var result = ""
        for (i, digit) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { result.append(",") }
            result.append(digit)
        }
        return value < 0 ? "-" + result : result
    }
}
