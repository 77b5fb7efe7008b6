//! Retry backoff: exponential delay capped at a maximum, shortened by a jitter that is a pure
//! function of (key, attempt, seed), so a test or a replay sees the same delays every time.

use std::fmt;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX1: u64 = 0xBF58_476D_1CE4_E5B9;
const MIX2: u64 = 0x94D0_49BB_1331_11EB;

/// A number in [0, 1) determined by `(key, attempt, seed)` alone (one splitmix64 step).
pub fn jitter_fraction(key: u64, attempt: u64, seed: u64) -> f64 {
    let x = key ^ attempt.wrapping_mul(GOLDEN) ^ seed.wrapping_mul(MIX1);
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(MIX1);
    z = (z ^ (z >> 27)).wrapping_mul(MIX2);
    z ^= z >> 31;
    // 53 random bits scaled into [0, 1): exact in f64.
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// An argument of [`backoff_delay`] outside its domain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BackoffError {
    /// `attempt` was below 1.
    Attempt(i64),
    /// `base` was negative (or NaN).
    Base(f64),
    /// `max_delay` was negative (or NaN).
    MaxDelay(f64),
    /// `jitter` was outside [0, 1] (or NaN).
    Jitter(f64),
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackoffError::Attempt(v) => write!(f, "attempt must be >= 1, got {v}"),
            BackoffError::Base(v) => write!(f, "base must be >= 0, got {v}"),
            BackoffError::MaxDelay(v) => write!(f, "max_delay must be >= 0, got {v}"),
            BackoffError::Jitter(v) => write!(f, "jitter must be within [0, 1], got {v}"),
        }
    }
}

impl std::error::Error for BackoffError {}

/// The inputs of one backoff computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failed attempt, in seconds.
    pub base: f64,
    /// Upper bound of the exponential delay, in seconds.
    pub max_delay: f64,
    /// Largest fraction of the delay the jitter may take off, in [0, 1].
    pub jitter: f64,
    /// Mixed into the jitter so that different deployments spread differently.
    pub seed: u64,
}

/// Seconds to wait after failed attempt number `attempt` (1-based) of the step keyed `key`.
///
/// The arguments are checked first. `retry_after` (from the handler) wins when given, as
/// `max(retry_after, 0.0)`. Otherwise `d = min(base * 2^(attempt - 1), max_delay)`, where an
/// exponent past 1023 counts as infinite and a zero base always gives 0, and the result is
/// `d * (1 - jitter * jitter_fraction(key, attempt, seed))`.
pub fn backoff_delay(
    attempt: i64,
    policy: &Backoff,
    key: u64,
    retry_after: Option<f64>,
) -> Result<f64, BackoffError> {
    if attempt < 1 {
        return Err(BackoffError::Attempt(attempt));
    }
    if policy.base.is_nan() || policy.base < 0.0 {
        return Err(BackoffError::Base(policy.base));
    }
    if policy.max_delay.is_nan() || policy.max_delay < 0.0 {
        return Err(BackoffError::MaxDelay(policy.max_delay));
    }
    if !(0.0..=1.0).contains(&policy.jitter) {
        return Err(BackoffError::Jitter(policy.jitter));
    }
    if let Some(after) = retry_after {
        return Ok(if after > 0.0 { after } else { 0.0 });
    }
    if policy.base == 0.0 {
        return Ok(0.0);
    }
    let exponent = attempt - 1;
    let delay = if exponent > 1023 {
        policy.max_delay
    } else {
        let scale = 2f64.powi(i32::try_from(exponent).expect("exponent is at most 1023"));
        (policy.base * scale).min(policy.max_delay)
    };
    let attempt = u64::try_from(attempt).expect("attempt is positive");
    Ok(delay * (1.0 - policy.jitter * jitter_fraction(key, attempt, policy.seed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base: f64, max_delay: f64, jitter: f64) -> Backoff {
        Backoff {
            base,
            max_delay,
            jitter,
            seed: 0,
        }
    }

    #[test]
    fn first_splitmix_output_for_a_zero_state() {
        // splitmix64's well-known first output from state 0 is 0xE220A8397B1DCDAF.
        let want = (0xE220_A839_7B1D_CDAFu64 >> 11) as f64 / (1u64 << 53) as f64;
        assert_eq!(jitter_fraction(0, 0, 0), want);
    }

    #[test]
    fn fractions_stay_in_the_unit_interval() {
        for key in [0, 1, u64::MAX, 1 << 63] {
            for attempt in [0, 1, 2, 1000, u64::MAX] {
                let f = jitter_fraction(key, attempt, 17);
                assert!((0.0..1.0).contains(&f), "{key} {attempt} {f}");
            }
        }
    }

    #[test]
    fn delay_doubles_then_caps() {
        let p = policy(1.0, 60.0, 0.0);
        let delays: Vec<f64> = (1..=8)
            .map(|a| backoff_delay(a, &p, 0, None).unwrap())
            .collect();
        assert_eq!(delays, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]);
        assert_eq!(backoff_delay(i64::MAX, &p, 0, None).unwrap(), 60.0);
    }

    #[test]
    fn jitter_only_shortens() {
        let p = policy(2.0, 600.0, 1.0);
        for key in 0..200 {
            let d = backoff_delay(3, &p, key, None).unwrap();
            assert!(d > 0.0 && d <= 8.0, "{d}");
        }
    }

    #[test]
    fn retry_after_wins_and_is_clamped_at_zero() {
        let p = policy(1.0, 10.0, 1.0);
        assert_eq!(backoff_delay(5, &p, 3, Some(42.5)).unwrap(), 42.5);
        assert_eq!(backoff_delay(5, &p, 3, Some(-1.0)).unwrap(), 0.0);
    }

    #[test]
    fn invalid_arguments_are_named() {
        let ok = policy(1.0, 1.0, 0.5);
        assert_eq!(
            backoff_delay(0, &ok, 0, Some(1.0)).unwrap_err().to_string(),
            "attempt must be >= 1, got 0"
        );
        let err = backoff_delay(1, &policy(f64::NAN, 1.0, 0.0), 0, None).unwrap_err();
        assert!(matches!(err, BackoffError::Base(_)));
        let err = backoff_delay(1, &policy(1.0, -1.0, 0.0), 0, None).unwrap_err();
        assert_eq!(err, BackoffError::MaxDelay(-1.0));
        let err = backoff_delay(1, &policy(1.0, 1.0, 1.01), 0, None).unwrap_err();
        assert_eq!(err.to_string(), "jitter must be within [0, 1], got 1.01");
    }
}
