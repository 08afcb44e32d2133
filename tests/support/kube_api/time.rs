//! Timestamps in the formats objects carry, and ages as `kubectl get` prints them.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, as `metadata.creationTimestamp` and other `Time` fields carry it.
pub(super) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// How long ago `timestamp` was, in kubectl's compact style (`45s`, `3m20s`, `2d4h`); `<unknown>`
/// if unreadable.
pub(super) fn age(timestamp: Option<&str>) -> String {
    let Some(then) = timestamp.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let seconds = (Utc::now() - then.with_timezone(&Utc)).num_seconds().max(0);
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    let (days, years) = (hours / 24, hours / (24 * 365));
    let with_remainder = |major: i64, major_unit: &str, minor: i64, minor_unit: &str| {
        if minor == 0 { format!("{major}{major_unit}") } else { format!("{major}{major_unit}{minor}{minor_unit}") }
    };
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        with_remainder(minutes, "m", seconds % 60, "s")
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        with_remainder(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        with_remainder(days, "d", hours % 24, "h")
    } else if years < 2 {
        format!("{days}d")
    } else if years < 8 {
        with_remainder(years, "y", days % 365, "d")
    } else {
        format!("{years}y")
    }
}
