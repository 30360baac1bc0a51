// The layers, for the executable and the tests: `import TrackQueue` brings them all.
@_exported import TrackQueueClock
@_exported import TrackQueueConfig
@_exported import TrackQueueDelivery
@_exported import TrackQueueEvent
@_exported import TrackQueueIngest
@_exported import TrackQueueMetrics
@_exported import TrackQueueStatus
@_exported import TrackQueueStore
@_exported import TrackQueueSupport
@_exported import TrackQueueSystem
