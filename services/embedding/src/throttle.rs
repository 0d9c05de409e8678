//! Pacing the calls to a remote embeddings provider: token buckets for requests and input
//! tokens per second, and the pause before a retry (the server's `Retry-After`, in either of
//! its forms, never longer than the configured cap).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// A token bucket: `rate` per second, bursts up to one second's worth.
pub struct Bucket {
    rate: f64,
    state: tokio::sync::Mutex<(f64, Instant)>,
}

impl Bucket {
    pub fn new(rate: f64) -> Self {
        Self {
            rate,
            state: tokio::sync::Mutex::new((rate.max(1.0), Instant::now())),
        }
    }

    /// Waits until `amount` tokens are available and takes them (at most one burst's worth:
    /// a request bigger than the burst waits for a full bucket, not forever).
    pub async fn acquire(&self, amount: f64) {
        if self.rate <= 0.0 {
            return;
        }
        let burst = self.rate.max(1.0);
        let amount = amount.min(burst);
        let mut state = self.state.lock().await;
        loop {
            let now = Instant::now();
            let (tokens, last) = &mut *state;
            *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(burst);
            *last = now;
            if *tokens >= amount {
                *tokens -= amount;
                return;
            }
            let wait = (amount - *tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// The server's `Retry-After`: delay-seconds (`120`, or `0.5` as some APIs send) or an
/// HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, counted from `now`; a date in the past means
/// "now").
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        // Negative, NaN, infinite or absurdly large: ignored.
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The pause before the next attempt: our own backoff, or longer when the server asked for
/// it, but never longer than `cap` for the server's part (a hostile or broken `Retry-After:
/// 86400` must not park a call for a day).
pub fn retry_delay(backoff: Duration, retry_after: Option<Duration>, cap: Duration) -> Duration {
    retry_after.map_or(backoff, |asked| asked.min(cap).max(backoff))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", value.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_seconds_are_parsed() {
        let now = SystemTime::now();
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new(), now), None);
        assert_eq!(
            retry_after(&headers("2"), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(" 0.5 "), now),
            Some(Duration::from_millis(500))
        );
        for bad in ["-1", "NaN", "inf", "1e300", "soon"] {
            assert_eq!(retry_after(&headers(bad), now), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_http_dates_are_parsed() {
        // 2015-10-21T07:28:00Z.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:28:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        // The obsolete forms HTTP still allows.
        assert_eq!(
            retry_after(&headers("Wednesday, 21-Oct-15 07:29:00 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after(&headers("Wed Oct 21 07:28:05 2015"), now),
            Some(Duration::from_secs(5))
        );
        // In the past: retry now.
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&headers("Wed, 32 Oct 2015 07:28:30 GMT"), now),
            None
        );
    }

    #[test]
    fn the_server_may_lengthen_the_pause_up_to_the_cap_only() {
        let s = Duration::from_secs;
        let cap = s(30);
        assert_eq!(retry_delay(s(1), None, cap), s(1));
        assert_eq!(retry_delay(s(1), Some(s(5)), cap), s(5));
        // Shorter than our own backoff: ours wins.
        assert_eq!(retry_delay(s(4), Some(s(2)), cap), s(4));
        // A day: capped.
        assert_eq!(retry_delay(s(1), Some(s(86_400)), cap), cap);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_spaces_requests_at_its_rate() {
        let bucket = Bucket::new(100.0);
        let started = Instant::now();
        for _ in 0..100 {
            bucket.acquire(1.0).await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "a full burst is free");
        for _ in 0..50 {
            bucket.acquire(1.0).await;
        }
        // 50 more at 100/s: half a second of (paused, exact) time.
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(490)..=Duration::from_millis(510)).contains(&waited),
            "{waited:?}"
        );
        // An amount above the burst waits for a full bucket, not forever.
        let started = Instant::now();
        bucket.acquire(1e9).await;
        assert!(started.elapsed() <= Duration::from_millis(1_010));
        let started = Instant::now();
        Bucket::new(0.0).acquire(1e9).await; // unlimited never waits
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
