//! Retransmission timeout computation (RFC 6298).
//!
//! [`RttEstimator`] keeps the smoothed round-trip time (SRTT), its variation
//! (RTTVAR) and the resulting retransmission timeout (RTO), plus the
//! exponential backoff applied while the retransmission timer keeps expiring.
//! It is pure arithmetic on [`Duration`]s: measuring a round trip is the
//! caller's business, and so are two rules about *which* measurements count:
//!
//! - Karn's algorithm (RFC 6298 §3): a segment that was retransmitted gives no
//!   RTT sample, because its ACK cannot tell which transmission it answers —
//!   unless timestamps (RFC 7323 §4) say which one was echoed.
//! - With timestamps, RFC 7323 Appendix G notes that the RFC 6298 gains assume
//!   one sample per round trip; a sender that takes a sample on every ACK
//!   shrinks the memory of the filter. Feed at most one sample per window of
//!   data (or scale the gains yourself) to keep the RFC's behaviour.

use std::time::Duration;

/// Clock granularity G of RFC 6298 §2: the engine's timers tick in
/// microseconds, but the wheel that fires them is coarser; 1 ms bounds both.
pub const CLOCK_GRANULARITY: Duration = Duration::from_millis(1);

/// RFC 6298 §2 estimator of SRTT, RTTVAR and RTO, with §5.5 backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RttEstimator {
    /// SRTT; `None` until the first sample (§2.1).
    srtt: Option<Duration>,
    /// RTTVAR; zero until the first sample.
    rttvar: Duration,
    /// RTO from the estimator, clamped, without backoff.
    base_rto: Duration,
    /// Number of §5.5 doublings applied since the last sample or reset.
    backoff: u32,
    /// The smallest sample so far: the path's propagation delay, which
    /// sizes RACK's reordering window (RFC 8985 §6.2).
    min_rtt: Option<Duration>,
    min_rto: Duration,
    max_rto: Duration,
}

impl RttEstimator {
    /// An estimator with no sample yet: the RTO is `initial_rto` (RFC 6298
    /// §2.1 says 1 s) clamped to `[min_rto, max_rto]`. §2.4 recommends a
    /// 1 s minimum (Linux uses 200 ms); §2.5 allows a maximum of at least
    /// 60 s. A `max_rto` below `min_rto` is raised to `min_rto`, so no input
    /// can make the clamp panic.
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        let max_rto = max_rto.max(min_rto);
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            base_rto: initial_rto.max(min_rto).min(max_rto),
            backoff: 0,
            min_rtt: None,
            min_rto,
            max_rto,
        }
    }

    /// Takes one RTT measurement `rtt` (R in RFC 6298).
    ///
    /// §2.2, first sample: SRTT = R, RTTVAR = R/2.
    /// §2.3, later ones: RTTVAR = (1 - β)·RTTVAR + β·|SRTT - R| with β = 1/4,
    /// then SRTT = (1 - α)·SRTT + α·R with α = 1/8 (RTTVAR first, using the
    /// old SRTT, as the RFC orders it).
    /// Both: RTO = SRTT + max(G, 4·RTTVAR) (§2.2, §2.3), clamped to the
    /// configured bounds (§2.4, §2.5).
    ///
    /// A valid sample also ends any backoff: §5.7's spirit, and Karn's
    /// algorithm keeps the backed-off RTO only until a sample arrives.
    pub fn sample(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                // (1 - 1/4)·RTTVAR + 1/4·|SRTT - R|, without overflow.
                self.rttvar = (self.rttvar - self.rttvar / 4).saturating_add(delta / 4);
                // (1 - 1/8)·SRTT + 1/8·R, without overflow.
                self.srtt = Some((srtt - srtt / 8).saturating_add(rtt / 8));
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        let variance = CLOCK_GRANULARITY.max(self.rttvar.saturating_mul(4));
        self.base_rto = srtt
            .saturating_add(variance)
            .max(self.min_rto)
            .min(self.max_rto);
        self.backoff = 0;
    }

    /// RFC 6298 §5.7: the SYN or SYN-ACK had to be sent again and no RTT
    /// was measured, so the path is slow or lossy and the initial RTO was
    /// too short: data transmission starts with an RTO of at least
    /// `fallback` (3 s in the RFC). A measured RTT (a timestamp echo on the
    /// handshake) makes it unnecessary.
    pub fn fall_back(&mut self, fallback: Duration) {
        if self.srtt.is_none() {
            self.base_rto = self.base_rto.max(fallback).min(self.max_rto);
        }
        self.backoff = 0;
    }

    /// The retransmission timeout to arm now: the estimator's RTO doubled
    /// once per [`backoff`](Self::backoff) (§5.5), never above `max_rto`.
    pub fn rto(&self) -> Duration {
        let factor = 1u32.checked_shl(self.backoff).unwrap_or(0);
        if factor == 0 {
            return self.max_rto;
        }
        self.base_rto.saturating_mul(factor).min(self.max_rto)
    }

    /// The estimator's RTO without backoff.
    pub fn base_rto(&self) -> Duration {
        self.base_rto
    }

    /// The retransmission timer expired: §5.5, RTO = RTO·2, saturating at
    /// `max_rto`. The count keeps rising past saturation, so the caller can
    /// use [`backoff_count`](Self::backoff_count) to give up on a peer.
    pub fn backoff(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// How many times [`backoff`](Self::backoff) was called since the last
    /// sample or [`reset_backoff`](Self::reset_backoff).
    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }

    /// Drops the backoff without a sample (for instance when an ACK for new
    /// data arrives but Karn's algorithm forbids sampling it).
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// SRTT, or `None` before the first sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The smallest sample so far, or `None` before the first.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// RTTVAR (zero before the first sample).
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The lower bound applied to the RTO.
    pub fn min_rto(&self) -> Duration {
        self.min_rto
    }

    /// The upper bound applied to the RTO, with or without backoff.
    pub fn max_rto(&self) -> Duration {
        self.max_rto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn est() -> RttEstimator {
        RttEstimator::new(ms(1000), ms(200), ms(60_000))
    }

    #[test]
    fn a_lost_handshake_falls_back_to_three_seconds() {
        let mut e = est();
        e.backoff();
        e.fall_back(Duration::from_secs(3));
        assert_eq!(e.rto(), Duration::from_secs(3), "§5.7, without the backoff");
        let mut measured = est();
        measured.sample(ms(40));
        let before = measured.rto();
        measured.fall_back(Duration::from_secs(3));
        assert_eq!(measured.rto(), before, "a measured RTT needs no fallback");
    }

    #[test]
    fn initial_rto_before_any_sample() {
        let e = est();
        assert_eq!(e.srtt(), None);
        assert_eq!(e.rttvar(), Duration::ZERO);
        assert_eq!(e.rto(), ms(1000));
        assert_eq!(e.backoff_count(), 0);
    }

    #[test]
    fn first_sample() {
        let mut e = est();
        e.sample(ms(100));
        // SRTT = 100, RTTVAR = 50, RTO = 100 + max(1, 200) = 300.
        assert_eq!(e.srtt(), Some(ms(100)));
        assert_eq!(e.rttvar(), ms(50));
        assert_eq!(e.rto(), ms(300));
    }

    #[test]
    fn known_sequence() {
        let mut e = RttEstimator::new(ms(1000), Duration::ZERO, ms(60_000));
        e.sample(ms(800));
        // SRTT 800, RTTVAR 400, RTO 800 + 1600 = 2400.
        assert_eq!(
            (e.srtt(), e.rttvar(), e.rto()),
            (Some(ms(800)), ms(400), ms(2400))
        );
        e.sample(ms(400));
        // RTTVAR = 3/4·400 + 1/4·|800 - 400| = 300 + 100 = 400
        // SRTT = 7/8·800 + 1/8·400 = 700 + 50 = 750
        // RTO = 750 + 4·400 = 2350
        assert_eq!(
            (e.srtt(), e.rttvar(), e.rto()),
            (Some(ms(750)), ms(400), ms(2350))
        );
        e.sample(ms(1550));
        // RTTVAR = 3/4·400 + 1/4·|750 - 1550| = 300 + 200 = 500
        // SRTT = 7/8·750 + 1/8·1550 = 656.25 + 193.75 = 850
        // RTO = 850 + 2000 = 2850
        assert_eq!(
            (e.srtt(), e.rttvar(), e.rto()),
            (Some(ms(850)), ms(500), ms(2850))
        );
        e.sample(ms(850));
        // RTTVAR = 3/4·500 + 0 = 375; SRTT = 850; RTO = 850 + 1500 = 2350
        assert_eq!(
            (e.srtt(), e.rttvar(), e.rto()),
            (Some(ms(850)), ms(375), ms(2350))
        );
    }

    #[test]
    fn converges_on_a_steady_rtt() {
        let mut e = RttEstimator::new(ms(1000), Duration::ZERO, ms(60_000));
        for _ in 0..200 {
            e.sample(ms(40));
        }
        assert_eq!(e.srtt(), Some(ms(40)));
        // RTTVAR decays towards zero, so the granularity term takes over.
        assert!(e.rttvar() < Duration::from_micros(1));
        assert_eq!(e.rto(), ms(41));
    }

    #[test]
    fn granularity_floor() {
        let mut e = RttEstimator::new(ms(1000), Duration::ZERO, ms(60_000));
        e.sample(Duration::ZERO);
        // RTO = 0 + max(G, 0) = 1 ms.
        assert_eq!(e.rto(), CLOCK_GRANULARITY);
        e.sample(Duration::from_micros(100));
        // RTTVAR = 0 + 100/4 = 25 µs; SRTT = 12.5 µs; RTO = 12.5 µs + max(1 ms, 100 µs)
        assert_eq!(e.rttvar(), Duration::from_micros(25));
        assert_eq!(e.srtt(), Some(Duration::from_nanos(12_500)));
        assert_eq!(e.rto(), Duration::from_nanos(1_012_500));
    }

    #[test]
    fn clamps_to_min_and_max() {
        let mut e = est();
        e.sample(ms(10));
        // 10 + 4·5 = 30 ms, below the 200 ms floor.
        assert_eq!(e.rto(), ms(200));
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(5000));
        e.sample(ms(3000));
        // 3000 + 4·1500 = 9000, above the 5 s ceiling.
        assert_eq!(e.rto(), ms(5000));
        // The initial RTO is clamped too.
        assert_eq!(RttEstimator::new(ms(100), ms(200), ms(5000)).rto(), ms(200));
        assert_eq!(
            RttEstimator::new(ms(9000), ms(200), ms(5000)).rto(),
            ms(5000)
        );
    }

    #[test]
    fn inverted_bounds_do_not_panic() {
        let mut e = RttEstimator::new(ms(1000), ms(500), ms(100));
        assert_eq!(e.rto(), ms(500));
        e.sample(ms(1));
        assert_eq!(e.rto(), ms(500));
        e.backoff();
        assert_eq!(e.rto(), ms(500));
    }

    #[test]
    fn backoff_doubles_and_saturates() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        let expected = [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000];
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(e.backoff_count(), i as u32);
            assert_eq!(e.rto(), ms(*want), "after {i} backoffs");
            e.backoff();
        }
        for _ in 0..100 {
            e.backoff();
        }
        assert_eq!(e.backoff_count(), 108);
        assert_eq!(e.rto(), ms(60_000));
        // The estimator's own value is untouched.
        assert_eq!(e.base_rto(), ms(1000));
        e.reset_backoff();
        assert_eq!(e.backoff_count(), 0);
        assert_eq!(e.rto(), ms(1000));
    }

    #[test]
    fn backoff_count_saturates_without_panic() {
        let mut e = est();
        e.backoff = u32::MAX - 1;
        e.backoff();
        e.backoff();
        assert_eq!(e.backoff_count(), u32::MAX);
        assert_eq!(e.rto(), ms(60_000));
    }

    #[test]
    fn sample_after_backoff_clears_it() {
        let mut e = est();
        e.sample(ms(100));
        e.backoff();
        e.backoff();
        assert_eq!(e.rto(), ms(1200));
        e.sample(ms(100));
        // RTTVAR = 3/4·50 + 0 = 37.5; SRTT = 100; RTO = 100 + 150 = 250
        assert_eq!(e.backoff_count(), 0);
        assert_eq!(e.rttvar(), Duration::from_micros(37_500));
        assert_eq!(e.rto(), ms(250));
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let mut e = RttEstimator::new(Duration::MAX, Duration::ZERO, Duration::MAX);
        assert_eq!(e.rto(), Duration::MAX);
        e.sample(Duration::MAX);
        assert_eq!(e.rto(), Duration::MAX);
        e.sample(Duration::ZERO);
        e.sample(Duration::MAX);
        for _ in 0..70 {
            e.backoff();
        }
        assert_eq!(e.rto(), Duration::MAX);
        let mut e = RttEstimator::new(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        e.sample(Duration::MAX);
        e.backoff();
        assert_eq!(e.rto(), Duration::ZERO);
    }
}
