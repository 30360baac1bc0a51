import CClock
import TrackQueueSystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The host's clocks as the daemon reads them: the one seam for time that comes from the
/// machine. ``system`` reads the kernel; tests pass their own readings and never touch the
/// machine's real clock.
public struct HostClock: Sendable {
    /// Milliseconds since the Unix epoch on the wall clock (`CLOCK_REALTIME`).
    public var wallMillis: @Sendable () -> Int64
    /// Milliseconds since boot, suspend included (`CLOCK_BOOTTIME`): never jumps.
    public var boottimeMillis: @Sendable () -> Int64
    /// Whether the kernel says the wall clock is synchronized; nil when it cannot be asked.
    public var kernelSynced: @Sendable () -> Bool?
    /// This boot's id (`/proc/sys/kernel/random/boot_id`); nil when it cannot be read.
    public var bootID: String?

    public init(
        wallMillis: @escaping @Sendable () -> Int64, boottimeMillis: @escaping @Sendable () -> Int64,
        kernelSynced: @escaping @Sendable () -> Bool?, bootID: String?
    ) {
        self.wallMillis = wallMillis
        self.boottimeMillis = boottimeMillis
        self.kernelSynced = kernelSynced
        self.bootID = bootID
    }

    /// The machine's clocks.
    public static let system = HostClock(
        wallMillis: SystemClock.wallMillis, boottimeMillis: SystemClock.boottimeMillis,
        kernelSynced: SystemClock.kernelSynced, bootID: SystemClock.readBootID())

    /// Both clocks and the kernel's word, read now.
    public func read() -> ClockReading {
        ClockReading(wallMillis: wallMillis(), boottimeMillis: boottimeMillis(), kernelSynced: kernelSynced())
    }

    /// The id this boot's events are stored under: ``bootID``, or `"unknown"`.
    package var storedBootID: String { bootID ?? SystemClock.unknownBootID }
}

/// One reading of the host's clocks.
public struct ClockReading: Sendable, Equatable {
    public var wallMillis: Int64
    public var boottimeMillis: Int64
    public var kernelSynced: Bool?

    public init(wallMillis: Int64, boottimeMillis: Int64, kernelSynced: Bool?) {
        self.wallMillis = wallMillis
        self.boottimeMillis = boottimeMillis
        self.kernelSynced = kernelSynced
    }

    /// The wall clock's time at boot, as this reading has it: it changes only when the
    /// wall clock is set (a step), never as time passes.
    public var offsetMillis: Int64 { wallMillis.saturatingSubtract(boottimeMillis) }
}

/// Whether the wall clock tells the true time.
public enum ClockState: String, Sendable, CaseIterable {
    /// The kernel says the clock is synchronized (NTP, timesyncd, chrony).
    case synced
    /// Neither synced nor certainly wrong: typical of virtual machines whose hypervisor keeps
    /// good time while the kernel reports it unsynchronized. Delays and alters nothing.
    case unknown
    /// Certainly wrong: behind a time trackq knows has passed.
    case wrong

    /// Its code in the `queue.clock_state` column (an integer costs a byte a row).
    package var code: Int64 {
        switch self {
        case .synced: 1
        case .unknown: 2
        case .wrong: 3
        }
    }

    package init?(code: Int64) {
        guard let state = Self.allCases.first(where: { $0.code == code }) else { return nil }
        self = state
    }
}

/// Decides a reading's ``ClockState``: a pure value.
///
/// A clock is `wrong` when it is behind a floor no true clock can be behind: the day this
/// version of trackq was made, or the latest wall time this database recorded while the
/// kernel said the clock was synchronized, in an earlier boot, less ``driftAllowanceMillis``.
/// (A time recorded while nobody vouched for the clock is no floor: a clock once set years
/// ahead would make every true clock after it look wrong. The allowance keeps a real-time
/// clock a few seconds slow, rebooted at once, from being called wrong and holding stamps.)
public struct ClockJudge: Sendable, Equatable {
    /// No true clock reads less than this, in ms since the Unix epoch.
    public var floorMillis: Int64

    public init(floorMillis: Int64) {
        self.floorMillis = floorMillis
    }

    /// The judge for a database whose earlier boots last saw a synchronized clock at
    /// `latestSyncedWallMillis` (nil: never).
    public init(latestSyncedWallMillis: Int64?) {
        floorMillis = max(Self.releaseFloorMillis, (latestSyncedWallMillis ?? .min).saturatingSubtract(Self.driftAllowanceMillis))
    }

    /// How far behind an earlier boot's last synchronized time a clock may be and still not
    /// count as wrong: a minute.
    public static let driftAllowanceMillis: Int64 = 60_000

    /// 2026-11-01T00:00:00Z: no clock that runs this version can truly be earlier.
    public static let releaseFloorMillis: Int64 = 1_793_491_200_000

    public func state(wallMillis: Int64, kernelSynced: Bool?) -> ClockState {
        if kernelSynced == true { return .synced }
        return wallMillis < floorMillis ? .wrong : .unknown
    }

    public func state(of reading: ClockReading) -> ClockState {
        state(wallMillis: reading.wallMillis, kernelSynced: reading.kernelSynced)
    }
}
