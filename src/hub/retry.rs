//! Retry policy for Hub requests: exponential backoff with jitter, honouring `Retry-After` (and
//! the `ratelimit` header's `t=`), within a bound on attempts and on any single wait. Pure.

use std::time::{Duration, SystemTime};

/// How many times, and how long between, a failed request is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles after each failure.
    pub base_delay: Duration,
    /// Longest backoff of our own choosing.
    pub max_delay: Duration,
    /// Longest wait we accept when the server asks for one; beyond this we give up at once.
    pub max_server_wait: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts over about a minute of backoff (0.5, 1, 2, 4, 8 s plus jitter); a server may ask
    /// for waits of up to 2 minutes.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_server_wait: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed + 1` after `failed` attempts have failed, or `None` to
    /// give up. `server_wait` is what the server asked for (`Retry-After`); `jitter` in [0, 1)
    /// spreads clients apart (callers pass a random number; tests pass a fixed one).
    pub fn next_delay(
        &self,
        failed: u32,
        server_wait: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if failed >= self.max_attempts {
            return None;
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << failed.saturating_sub(1).min(20));
        let backoff = exp
            .min(self.max_delay)
            .mul_f64(1.0 + jitter.clamp(0.0, 1.0) * 0.5);
        match server_wait {
            Some(w) if w > self.max_server_wait => None,
            Some(w) => Some(w.max(backoff.min(self.max_delay))),
            None => Some(backoff),
        }
    }
}

/// Parses a `Retry-After` value: delay seconds, or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses the `t=<seconds>` parameter of a `ratelimit` header (`"api";r=0;t=55`).
pub fn parse_ratelimit_reset(value: &str) -> Option<Duration> {
    value
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("t="))
        .find_map(|t| t.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_exponentially_then_gives_up() {
        let p = RetryPolicy::default();
        let d: Vec<_> = (1..=5)
            .map(|n| p.next_delay(n, None, 0.0).unwrap())
            .collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 8000].map(Duration::from_millis));
        assert_eq!(p.next_delay(6, None, 0.0), None);
        let jittered = p.next_delay(1, None, 0.999).unwrap();
        assert!(jittered > Duration::from_millis(500) && jittered < Duration::from_millis(751));
    }

    #[test]
    fn honours_retry_after_within_the_bound() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(7)), 0.0),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            p.next_delay(3, Some(Duration::ZERO), 0.0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(3600)), 0.0),
            None,
            "too long a wait: give up"
        );
    }

    #[test]
    fn parses_retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after(" 12 ", now),
            Some(Duration::from_secs(12))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_ratelimit_reset("\"api\";r=0;t=55"),
            Some(Duration::from_secs(55))
        );
    }
}
