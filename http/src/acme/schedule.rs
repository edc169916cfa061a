//! When to renew a certificate and when to try again after a failure:
//! pure functions of the certificate's dates, the CA's advice and a random
//! number, so they are tested without a clock.

use std::time::Duration;

use time::OffsetDateTime;

/// The first retry after a failure waits this long by default; each
/// further failure doubles it.
pub const RETRY_BASE: Duration = Duration::from_secs(60);
/// Retries never wait longer than this: a certificate that is still valid
/// for weeks is tried again several times a day, and a site that has
/// none yet (serving the self-signed one) is not left waiting for days.
pub const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);

/// When to renew a certificate valid from `not_before` to `not_after`:
///
/// - in the CA's suggested window (ACME ARI, RFC 9773 §4.2: "a uniform
///   random time within the window"), when it gave one;
/// - else two thirds into the lifetime (Let's Encrypt's advice: 30 days
///   before the end of a 90-day certificate), spread by up to 1% of the
///   lifetime so that many certificates issued at once do not come back
///   to the CA at once;
/// - `renew_after` past `not_before` when set (`--acme-renew-after`, for
///   drills and tests), never later than the two-thirds point.
pub fn renewal_time(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    ari_window: Option<(OffsetDateTime, OffsetDateTime)>,
    renew_after: Option<Duration>,
    unit_random: f64,
) -> OffsetDateTime {
    let lifetime = (not_after - not_before).max(time::Duration::ZERO);
    let two_thirds = not_before + lifetime * 2 / 3;
    if let Some(after) = renew_after {
        let after = time::Duration::try_from(after).unwrap_or(time::Duration::MAX);
        return (not_before + after).min(two_thirds);
    }
    if let Some((start, end)) = ari_window.filter(|(s, e)| s <= e) {
        return start + (end - start) * unit_random.clamp(0.0, 1.0);
    }
    two_thirds - lifetime * (0.01 * unit_random.clamp(0.0, 1.0))
}

/// How long to wait after the `failures`-th failure in a row (1 for the
/// first): `base` doubled for each earlier failure, at most [`RETRY_MAX`],
/// less up to a fifth at random (jitter, so that many servers that failed
/// together do not retry together), and never sooner than the CA's
/// `Retry-After`.
pub fn retry_delay(
    failures: u32,
    base: Duration,
    retry_after: Option<Duration>,
    unit_random: f64,
) -> Duration {
    let doubled = base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = doubled.min(RETRY_MAX.max(base));
    let jittered = capped.mul_f64(1.0 - 0.2 * unit_random.clamp(0.0, 1.0));
    jittered.max(retry_after.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    const DAY: i64 = 86_400;

    #[test]
    fn two_thirds_into_the_lifetime_spread_by_one_percent() {
        let (from, until) = (t(0), t(90 * DAY));
        assert_eq!(renewal_time(from, until, None, None, 0.0), t(60 * DAY));
        let latest_spread = renewal_time(from, until, None, None, 1.0);
        assert_eq!(
            latest_spread,
            t(60 * DAY) - time::Duration::seconds(90 * DAY / 100)
        );
    }

    #[test]
    fn the_ca_window_wins() {
        let (from, until) = (t(0), t(90 * DAY));
        let window = Some((t(70 * DAY), t(72 * DAY)));
        assert_eq!(renewal_time(from, until, window, None, 0.0), t(70 * DAY));
        assert_eq!(renewal_time(from, until, window, None, 0.5), t(71 * DAY));
        assert_eq!(renewal_time(from, until, window, None, 1.0), t(72 * DAY));
        // A window that ends before it starts is ignored.
        let bad = Some((t(72 * DAY), t(70 * DAY)));
        assert_eq!(renewal_time(from, until, bad, None, 0.0), t(60 * DAY));
    }

    #[test]
    fn renew_after_shortens_but_never_lengthens() {
        let (from, until) = (t(1000), t(1000 + 90 * DAY));
        let soon = Some(Duration::from_secs(20));
        assert_eq!(renewal_time(from, until, None, soon, 0.7), t(1020));
        let late = Some(Duration::from_secs(89 * DAY as u64));
        assert_eq!(
            renewal_time(from, until, None, late, 0.7),
            t(1000 + 60 * DAY)
        );
    }

    #[test]
    fn retries_double_up_to_the_cap_with_jitter_and_retry_after() {
        let base = RETRY_BASE;
        assert_eq!(retry_delay(1, base, None, 0.0), Duration::from_secs(60));
        assert_eq!(retry_delay(2, base, None, 0.0), Duration::from_secs(120));
        assert_eq!(retry_delay(5, base, None, 0.0), Duration::from_secs(960));
        assert_eq!(retry_delay(30, base, None, 0.0), RETRY_MAX);
        assert_eq!(retry_delay(1, base, None, 1.0), Duration::from_secs(48));
        let hour = Duration::from_secs(3600);
        assert_eq!(retry_delay(1, base, Some(hour), 0.0), hour);
        // A short base (tests) still doubles.
        let short = Duration::from_secs(2);
        assert_eq!(retry_delay(3, short, None, 0.0), Duration::from_secs(8));
    }
}
