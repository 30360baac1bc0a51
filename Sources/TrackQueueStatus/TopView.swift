/// `trackq top`: what a live view in the terminal shows, from successive status reads (one a
/// second): ingest and delivery rates, the queue and its trend, the time to drain it or to
/// fill the disk, the last answers seen, alerts. A plain value: the command reads and draws,
/// this decides what the lines say, tested with made-up reads.
public struct TopView: Sendable {
    /// One read of the status.
    public struct Sample: Sendable, Equatable {
        /// When it was read: wall clock, ms (only differences between reads are used).
        public var atMillis: Int64
        public var report: StatusReport
        /// Free bytes on the database's file system, if known.
        public var freeDiskBytes: Int64?

        public init(atMillis: Int64, report: StatusReport, freeDiskBytes: Int64? = nil) {
            self.atMillis = atMillis
            self.report = report
            self.freeDiskBytes = freeDiskBytes
        }
    }

    /// An answer seen: when it was tried and what came back.
    public struct Answer: Sendable, Equatable {
        public var atMillis: Int64
        public var text: String
    }

    /// The reads kept: a minute's.
    public private(set) var samples: [Sample] = []
    /// The last answers seen while watching, newest first.
    public private(set) var answers: [Answer] = []

    public static let keptSamples = 61
    public static let keptAnswers = 5
    /// The window of the averaged rates, in seconds.
    public static let window: Int64 = 10

    public init() {}

    public mutating func add(_ sample: Sample) {
        // A clock stepped back: the rates start over rather than go negative.
        if let last = samples.last, sample.atMillis <= last.atMillis { samples.removeAll() }
        samples.append(sample)
        if samples.count > Self.keptSamples { samples.removeFirst(samples.count - Self.keptSamples) }
        let delivery = sample.report.delivery
        if let at = delivery.lastAttemptAtMillis, answers.first?.atMillis != at {
            // The status's own words for a failure; a success is its status.
            let text = sample.report.lastErrorText ?? delivery.lastStatus.map { "HTTP \($0)" } ?? "sent"
            answers.insert(Answer(atMillis: at, text: StatusReport.oneLine(text)), at: 0)
            if answers.count > Self.keptAnswers { answers.removeLast() }
        }
    }

    /// Rates per second between the newest read and the one `seconds` before it (or the
    /// oldest kept); nil until there are two reads.
    public struct Rates: Sendable, Equatable {
        public var ingest: Double
        public var delivery: Double
        /// The queue's growth (negative: it shrinks), events and bytes a second.
        public var queueEvents: Double
        public var queueBytes: Double

        public init(ingest: Double, delivery: Double, queueEvents: Double, queueBytes: Double) {
            self.ingest = ingest
            self.delivery = delivery
            self.queueEvents = queueEvents
            self.queueBytes = queueBytes
        }
    }

    public func rates(over seconds: Int64) -> Rates? {
        guard let newest = samples.last, samples.count >= 2 else { return nil }
        let cutoff = newest.atMillis &- seconds &* 1000
        let oldest = samples.last { $0.atMillis <= cutoff } ?? samples[0]
        let elapsed = Double(newest.atMillis &- oldest.atMillis) / 1000
        guard elapsed > 0 else { return nil }
        func rate(_ value: (Sample) -> Int64) -> Double { Double(value(newest) &- value(oldest)) / elapsed }
        return Rates(
            ingest: max(0, rate { $0.report.totals.accepted }), delivery: max(0, rate { $0.report.totals.delivered }),
            queueEvents: rate { $0.report.queue.pending }, queueBytes: rate { $0.report.queue.pendingBytes })
    }

    /// The lines, each at most `width` columns (80 over ssh), the newest read's.
    public func lines(width: Int = 80) -> [String] {
        guard let newest = samples.last else { return ["trackq top: reading the status…"] }
        let report = newest.report
        let now = newest.atMillis
        var out: [String] = []
        func add(_ label: String, _ text: String) {
            out.append(label + String(repeating: " ", count: max(1, 9 - label.count)) + text)
        }
        var head = "trackq top — \(report.version) — "
        if report.daemon.running {
            head += "running" + (report.daemon.pid.map { ", pid \($0)" } ?? "")
            if let started = report.daemon.startedAtMillis { head += ", up \(StatusReport.formatDuration(millis: now &- started))" }
        } else {
            head += "the daemon is not running"
        }
        out.append(head)
        add("status", report.verdict)
        let now1 = rates(over: 1)
        let averaged = rates(over: Self.window)
        func rate(_ value: Double?) -> String {
            guard let value, let count = Self.whole(value) else { return "—" }
            return StatusReport.formatCount(count)
        }
        add("ingest", "\(rate(now1?.ingest)) events/s  (last \(Self.window) s: \(rate(averaged?.ingest)))")
        add("deliver", "\(rate(now1?.delivery)) events/s  (last \(Self.window) s: \(rate(averaged?.delivery)))")
        var queue =
            "\(StatusReport.formatCount(report.queue.pending)) events, \(StatusReport.formatBytes(report.queue.pendingBytes))"
        if let oldest = report.queue.oldestPendingAtMillis { queue += ", oldest \(StatusReport.formatAge(since: oldest, now: now))" }
        add("queue", queue)
        add("trend", trend(averaged, report: report, freeDisk: newest.freeDiskBytes))
        var delivery = report.delivery.state.words
        if let next = report.delivery.nextAttemptAtMillis, report.daemon.running {
            delivery += ", next try \(StatusReport.formatUntil(next, now: now))"
        }
        delivery += "; last success " + (report.delivery.lastSuccessAtMillis.map { StatusReport.formatAge(since: $0, now: now) } ?? "never")
        add("delivery", delivery)
        if answers.isEmpty {
            add("answers", "none seen yet")
        } else {
            for (index, answer) in answers.enumerated() {
                add(index == 0 ? "answers" : "", "\(StatusReport.formatAge(since: answer.atMillis, now: now)): \(answer.text)")
            }
        }
        if let alert = report.alert {
            add("ALERT", "\(alert.kind.rawValue): \(StatusReport.oneLine(alert.message))")
        } else {
            add("alert", "none")
        }
        if report.deadLetters > 0 { add("dead", "\(StatusReport.formatCount(report.deadLetters)) dead letters: trackq dead list") }
        out.append("")
        out.append("q quits · refreshed every second · \(StatusReport.oneLine(report.database.path))")
        return out.map { Self.fit($0, width: width) }
    }

    /// The queue's trend and what it leads to: drained in, or the disk full in.
    private func trend(_ rates: Rates?, report: StatusReport, freeDisk: Int64?) -> String {
        guard let rates else { return "—" }
        let events = rates.queueEvents
        guard let magnitude = Self.whole(abs(events)) else { return "—" }
        var text = (events >= 0 ? "+" : "−") + StatusReport.formatCount(magnitude) + " events/s"
        if events < -0.5, report.queue.pending > 0 {
            if let time = Self.duration(Double(report.queue.pending) / -events) { text += "; drained in about \(time)" }
        } else if rates.queueBytes > 0.5, let freeDisk {
            if let time = Self.duration(Double(freeDisk) / rates.queueBytes) {
                text += "; the disk (\(StatusReport.formatBytes(freeDisk)) free) full in about \(time)"
            }
        } else if report.queue.pending == 0 {
            text += "; all delivered"
        } else {
            text += "; steady"
        }
        return text
    }

    /// `value` rounded, when it is a number an Int64 holds: rates come from counters in a
    /// file, which may be anything.
    static func whole(_ value: Double) -> Int64? {
        Int64(exactly: value.rounded())
    }

    /// nil for what no clock would reach (counters from a damaged file).
    private static func duration(_ seconds: Double) -> String? {
        guard seconds.isFinite, seconds >= 0, seconds < 1e12 else { return nil }
        return StatusReport.formatDuration(millis: Int64(seconds * 1000))
    }

    /// `line` cut to `width` columns (characters: the view writes no wide ones), with "…".
    static func fit(_ line: String, width: Int) -> String {
        guard width > 1, line.count > width else { return line }
        return String(line.prefix(width - 1)) + "…"
    }
}
