//! The deadline of the request being served, so every downstream call can be given what is
//! left of it instead of a fixed timeout. [`super::AdmissionLayer`] sets it (the caller's
//! `grpc-timeout`, capped by the server's request timeout) for the whole handling of a
//! request; handlers read it with [`remaining`].

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `future` with `deadline` as the current request's deadline.
pub fn scope<F: Future>(deadline: Instant, future: F) -> impl Future<Output = F::Output> {
    DEADLINE.scope(deadline, future)
}

/// The current request's deadline, when one is set.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Time left before the current request's deadline (zero once passed); `None` outside a
/// request.
pub fn remaining() -> Option<Duration> {
    current().map(|d| d.saturating_duration_since(Instant::now()))
}

/// Parses a `grpc-timeout` header value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("10u"), Some(Duration::from_micros(10)));
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("-1S"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down_inside_the_scope() {
        assert_eq!(remaining(), None);
        let deadline = Instant::now() + Duration::from_millis(500);
        scope(deadline, async {
            assert_eq!(remaining(), Some(Duration::from_millis(500)));
            tokio::time::advance(Duration::from_millis(200)).await;
            assert_eq!(remaining(), Some(Duration::from_millis(300)));
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(remaining(), Some(Duration::ZERO));
        })
        .await;
    }
}
