//! When a job whose command never started is tried again.

use std::time::Duration;

/// The wait before retry number `attempt` (1 for the first retry) after an
/// infrastructure failure: exponential from `base`, capped at one hour, plus
/// up to 25% jitter so that jobs failed by one outage don't return in a herd.
/// `jitter` is a number in [0, 1) supplied by the caller, which keeps this
/// function pure and testable.
pub fn retry_delay(base: Duration, attempt: u32, jitter: f64) -> Duration {
    const CAP: Duration = Duration::from_secs(3600);
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    let delay = base.saturating_mul(factor).min(CAP);
    delay + delay.mul_f64(0.25 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base() {
        let base = Duration::from_secs(30);
        assert_eq!(retry_delay(base, 1, 0.0), Duration::from_secs(30));
        assert_eq!(retry_delay(base, 2, 0.0), Duration::from_secs(60));
        assert_eq!(retry_delay(base, 3, 0.0), Duration::from_secs(120));
        assert_eq!(retry_delay(base, 40, 0.0), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        let base = Duration::from_secs(40);
        assert_eq!(retry_delay(base, 1, 0.999_999).as_secs(), 49);
        assert!(retry_delay(base, 1, 0.5) > base);
    }
}
