import TrackQueueClock

/// What `trackq status` knows, read from the database (the reading is someone else's job).
///
/// Three renderings live in extensions: `json()` (the README's status JSON), `human(nowMillis:)` (the
/// operator's summary) and `prometheus(nowMillis:)` (node_exporter's textfile collector).
/// All times are milliseconds since the Unix epoch.
public struct StatusReport: Sendable, Equatable {
    public struct DaemonInfo: Sendable, Equatable {
        public var running: Bool
        public var pid: Int32?
        public var startedAtMillis: Int64?

        public init(running: Bool, pid: Int32? = nil, startedAtMillis: Int64? = nil) {
            self.running = running
            self.pid = pid
            self.startedAtMillis = startedAtMillis
        }
    }

    public struct QueueInfo: Sendable, Equatable {
        public var pending: Int64
        public var pendingBytes: Int64
        public var oldestPendingAtMillis: Int64?

        public init(pending: Int64, pendingBytes: Int64, oldestPendingAtMillis: Int64? = nil) {
            self.pending = pending
            self.pendingBytes = pendingBytes
            self.oldestPendingAtMillis = oldestPendingAtMillis
        }
    }

    public struct DeliveryInfo: Sendable, Equatable {
        public var state: DeliveryState
        public var lastAttemptAtMillis: Int64?
        public var lastSuccessAtMillis: Int64?
        public var lastStatus: Int?
        public var lastError: String?
        public var nextAttemptAtMillis: Int64?
        public var consecutiveFailures: Int

        public init(
            state: DeliveryState, lastAttemptAtMillis: Int64? = nil, lastSuccessAtMillis: Int64? = nil,
            lastStatus: Int? = nil, lastError: String? = nil, nextAttemptAtMillis: Int64? = nil,
            consecutiveFailures: Int = 0
        ) {
            self.state = state
            self.lastAttemptAtMillis = lastAttemptAtMillis
            self.lastSuccessAtMillis = lastSuccessAtMillis
            self.lastStatus = lastStatus
            self.lastError = lastError
            self.nextAttemptAtMillis = nextAttemptAtMillis
            self.consecutiveFailures = consecutiveFailures
        }
    }

    /// Lifetime counts kept in the database.
    public struct Totals: Sendable, Equatable {
        public var accepted: Int64
        public var delivered: Int64
        public var deadLettered: Int64
        public var rejected: Int64
        /// Dead letters dropped, oldest first, to keep within `--max-dead-letters`.
        public var deadLettersDropped: Int64

        public init(
            accepted: Int64 = 0, delivered: Int64 = 0, deadLettered: Int64 = 0, rejected: Int64 = 0,
            deadLettersDropped: Int64 = 0
        ) {
            self.accepted = accepted
            self.delivered = delivered
            self.deadLettered = deadLettered
            self.rejected = rejected
            self.deadLettersDropped = deadLettersDropped
        }
    }

    public struct AlertInfo: Sendable, Equatable {
        public var kind: AlertKind
        public var status: Int
        public var sinceMillis: Int64
        public var message: String

        public init(kind: AlertKind, status: Int, sinceMillis: Int64, message: String) {
            self.kind = kind
            self.status = status
            self.sinceMillis = sinceMillis
            self.message = message
        }
    }

    public struct DatabaseInfo: Sendable, Equatable {
        public var path: String
        public var sizeBytes: Int64

        public init(path: String, sizeBytes: Int64) {
            self.path = path
            self.sizeBytes = sizeBytes
        }
    }

    /// The host's clock, as the daemon last recorded it in this boot (or as read now, when
    /// it has recorded nothing in this boot yet).
    public struct ClockInfo: Sendable, Equatable {
        public var state: ClockState
        /// The wall clock of that reading: as the clock said, right or wrong.
        public var readAtMillis: Int64
        /// No true clock reads less (see ``ClockJudge``).
        public var floorMillis: Int64
        /// False when the boot id cannot be read: ages across restarts are then the wall clock's.
        public var bootIDKnown: Bool

        public init(state: ClockState, readAtMillis: Int64, floorMillis: Int64, bootIDKnown: Bool) {
            self.state = state
            self.readAtMillis = readAtMillis
            self.floorMillis = floorMillis
            self.bootIDKnown = bootIDKnown
        }
    }

    /// Whether the queue file can be trusted (see ``StorageRecovery``).
    public struct StorageInfo: Sendable, Equatable {
        public enum State: String, Sendable {
            /// Sound, or the operator has cleared the last recovery.
            case ok
            /// The file is damaged now, or a recovery could salvage nothing from it.
            case damaged
            /// A damaged file was moved aside and a new queue holds what it could read.
            case recovered
        }

        public var state: State
        public var salvaged: Int64
        /// Events that could not be read; nil when unknown.
        public var lost: Int64?
        /// Where the damaged file is (moved aside, or the database itself when it is damaged now).
        public var damagedFile: String?
        /// Events kept as dead letters with reason `damaged`.
        public var damagedEvents: Int64
        public var sinceMillis: Int64?
        /// What was found.
        public var reason: String?

        public init(
            state: State = .ok, salvaged: Int64 = 0, lost: Int64? = 0, damagedFile: String? = nil, damagedEvents: Int64 = 0,
            sinceMillis: Int64? = nil, reason: String? = nil
        ) {
            self.state = state
            self.salvaged = salvaged
            self.lost = lost
            self.damagedFile = damagedFile
            self.damagedEvents = damagedEvents
            self.sinceMillis = sinceMillis
            self.reason = reason
        }

        public static let ok = StorageInfo()
    }

    public var version: String
    public var daemon: DaemonInfo
    public var queue: QueueInfo
    public var delivery: DeliveryInfo
    public var totals: Totals
    /// Events currently in the dead letters (`trackq dead list`).
    public var deadLetters: Int64
    /// The active alert, or nil.
    public var alert: AlertInfo?
    public var database: DatabaseInfo
    /// Beyond the documented keys: the configured endpoint when known (human text, and `"endpoint"` in
    /// JSON, omitted when nil).
    public var endpoint: String?
    /// Beyond the documented keys: the clock (`"clock"` in JSON), nil for a database older
    /// than the clock's record.
    public var clock: ClockInfo?
    /// The queue file's trust (`"storage"` in JSON).
    public var storage: StorageInfo

    public init(
        version: String, daemon: DaemonInfo, queue: QueueInfo, delivery: DeliveryInfo,
        totals: Totals, deadLetters: Int64, alert: AlertInfo?, database: DatabaseInfo,
        endpoint: String? = nil, clock: ClockInfo? = nil, storage: StorageInfo = .ok
    ) {
        self.storage = storage
        self.clock = clock
        self.version = version
        self.daemon = daemon
        self.queue = queue
        self.delivery = delivery
        self.totals = totals
        self.deadLetters = deadLetters
        self.alert = alert
        self.database = database
        self.endpoint = endpoint
    }

    /// Monitoring-plugin convention (README, "Operating trackq"): 0 healthy; 1 warning (delivery backing off,
    /// dead letters present, a clock that is certainly wrong, or storage damaged or recovered); 2 critical (alert active, or daemon not running).
    /// 3 (database unreadable) is decided by the caller, which then has no report.
    public var exitCode: Int32 {
        switch health {
        case .ok: return 0
        case .warning: return 1
        case .critical: return 2
        }
    }

    // MARK: - Shared by the renderings

    package enum Health: Comparable {
        case ok, warning, critical
    }

    /// An alert is active when the record has one, or when the delivery state says so
    /// (a state record written without the alert's details is still an alert).
    package var alertActive: Bool { alert != nil || delivery.state == .alert }

    package var health: Health {
        if !daemon.running || alertActive { return .critical }
        if delivery.state == .backoff || deadLetters > 0 || clock?.state == .wrong || storage.state != .ok { return .warning }
        return .ok
    }
}
