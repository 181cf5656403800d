//! The copy's bandwidth limit: the donor paces the stream it sends, so that the limit
//! holds for every byte of the copy (`mariadb-backup --throttle` would limit only the
//! InnoDB data files, in its own I/O units).

use std::time::Duration;

/// Bytes per second of `spec.clone.maxMiBPerSecond` (0: no limit).
pub fn bytes_per_second(max_mib_per_second: u32) -> u64 {
    u64::from(max_mib_per_second) * 1024 * 1024
}

/// How long a stream that has sent `sent` bytes in `elapsed` must pause so that its
/// average stays at most `limit` bytes per second (0: no limit, no pause).
pub fn pause(sent: u64, elapsed: Duration, limit: u64) -> Duration {
    if limit == 0 {
        return Duration::ZERO;
    }
    let due = Duration::from_secs_f64(sent as f64 / limit as f64);
    due.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_pauses_until_its_average_is_within_the_limit() {
        let mib = bytes_per_second(1);
        let ms = Duration::from_millis;
        let table = [
            // (sent, elapsed, limit, pause)
            (0, ms(0), mib, ms(0)),
            (mib, ms(0), mib, ms(1000)),
            (mib, ms(400), mib, ms(600)),
            (mib, ms(1000), mib, ms(0)),
            (mib, ms(5000), mib, ms(0)),
            (10 * mib, ms(2000), 4 * mib, ms(500)),
            (mib / 2, ms(0), mib, ms(500)),
            (u64::MAX / 2, ms(0), 0, ms(0)),
        ];
        for (sent, elapsed, limit, expected) in table {
            let got = pause(sent, elapsed, limit);
            assert!(
                got.abs_diff(expected) < Duration::from_micros(1),
                "{sent} B in {elapsed:?} at {limit} B/s: {got:?}, not {expected:?}"
            );
        }
        assert_eq!(bytes_per_second(0), 0);
        assert_eq!(bytes_per_second(100), 104_857_600);
    }
}
