//! Wall-clock time as job records (and the OpenAI-style responses) store it.

/// Seconds since the Unix epoch (0 on a clock set before 1970).
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the Unix epoch (0 on a clock set before 1970).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
