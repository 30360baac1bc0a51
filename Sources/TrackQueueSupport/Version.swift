public enum TrackQueue { public static let version = "0.1.0" }
