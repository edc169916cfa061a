//! Congestion window arithmetic: NewReno (RFC 5681, with the RFC 6582
//! recovery left to the caller) and CUBIC (RFC 9438), behind one enum.
//!
//! [`Congestion`] only computes `cwnd` and `ssthresh`; the caller owns the
//! loss detection, the recovery state machine and the clock. It tells this
//! module about four kinds of events:
//!
//! - [`on_ack`](Congestion::on_ack): new data acknowledged outside fast
//!   recovery (slow start or congestion avoidance);
//! - [`on_congestion_event`](Congestion::on_congestion_event): loss detected
//!   by duplicate ACKs or SACK, on entering fast recovery;
//! - [`on_recovery_exit`](Congestion::on_recovery_exit): fast recovery ended
//!   (RFC 6582 §3.2 step 6: the ACK covers `recover`);
//! - [`on_retransmit_timeout`](Congestion::on_retransmit_timeout): the
//!   retransmission timer expired;
//!
//! plus [`restart_after_idle`](Congestion::restart_after_idle) before sending
//! into an empty pipe. Everything is sans-IO: time comes in as `now`.
//!
//! Windows are in bytes. CUBIC's formulas are in segments (MSS units) and
//! seconds, as in RFC 9438; they are evaluated in `f64` and converted with
//! Rust's saturating float-to-integer casts, so no input can overflow or
//! panic.

use std::{fmt, str::FromStr, time::Duration};

use crate::time::Instant;

/// CUBIC's scaling constant C (RFC 9438 §4.1.1), in segments per second³.
pub const CUBIC_C: f64 = 0.4;
/// CUBIC's multiplicative decrease factor β_cubic (RFC 9438 §4.1.1).
pub const CUBIC_BETA: f64 = 0.7;
/// α_cubic = 3(1 - β)/(1 + β) (RFC 9438 §4.3): the additive increase that
/// makes the Reno-friendly estimate match Reno's average rate.
pub const CUBIC_ALPHA: f64 = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
/// Appropriate Byte Counting limit L (RFC 3465 §2.2): slow start grows by at
/// most L·MSS per ACK.
pub const ABC_LIMIT: usize = 2;
/// The byte cap of RFC 6928's initial window.
const IW_BYTES: usize = 14_600;

/// Which congestion controller a connection runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RFC 5681 slow start and congestion avoidance; fast recovery follows
    /// RFC 6582 (in the caller).
    NewReno,
    /// RFC 9438, the default (as in Linux, Windows and Apple stacks).
    #[default]
    Cubic,
}

impl Algorithm {
    /// The name [`FromStr`] accepts and [`Display`](fmt::Display) prints.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::NewReno => "newreno",
            Algorithm::Cubic => "cubic",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown congestion control name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseAlgorithmError;

impl fmt::Display for ParseAlgorithmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown congestion control algorithm (expected \"newreno\" or \"cubic\")")
    }
}

impl std::error::Error for ParseAlgorithmError {}

impl FromStr for Algorithm {
    type Err = ParseAlgorithmError;

    /// `"newreno"` or `"cubic"`, ASCII case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("newreno") {
            Ok(Algorithm::NewReno)
        } else if s.eq_ignore_ascii_case("cubic") {
            Ok(Algorithm::Cubic)
        } else {
            Err(ParseAlgorithmError)
        }
    }
}

/// RFC 9438 state. Windows in bytes (so an MSS change does not rescale
/// them), K in seconds.
#[derive(Debug, Clone, PartialEq)]
struct Cubic {
    /// W_max: the window just before the last reduction (§4.6), lowered by
    /// fast convergence (§4.7).
    w_max: f64,
    /// cwnd_prior: cwnd before the last reduction (§4.3, §4.6).
    cwnd_prior: f64,
    /// K (§4.2): time from the epoch start to reach W_max again.
    k: f64,
    /// Start of the current congestion avoidance stage (§4.2); `None` until
    /// the first ACK in congestion avoidance after a reduction.
    epoch_start: Option<Instant>,
    /// W_est, the Reno-friendly estimate (§4.3).
    w_est: f64,
    /// Fractional bytes of growth not yet added to cwnd.
    carry: f64,
    /// The last reduction was a timeout: the next stage uses K = 0 and
    /// W_max = cwnd at its start (§4.8).
    after_timeout: bool,
}

impl Cubic {
    const fn new() -> Self {
        Cubic {
            w_max: 0.0,
            cwnd_prior: 0.0,
            k: 0.0,
            epoch_start: None,
            w_est: 0.0,
            carry: 0.0,
            after_timeout: false,
        }
    }

    /// W_cubic(t) = C·(t - K)³ + W_max (RFC 9438 §4.2, Figure 1), in bytes.
    fn w_cubic(&self, t: f64, mss: f64) -> f64 {
        let d = t - self.k;
        CUBIC_C * d * d * d * mss + self.w_max
    }
}

/// The congestion window of one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Congestion {
    algorithm: Algorithm,
    /// SMSS, at least 1.
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Nothing acknowledged and no congestion signal yet: `set_mss` may
    /// still rescale the initial window.
    pristine: bool,
    /// NewReno byte counting in congestion avoidance (RFC 3465 §2.1).
    bytes_acked: usize,
    /// Last ACK, reduction or restart, to measure idle time.
    last_activity: Instant,
    /// A retransmission timeout reduced the window and no new data has been
    /// acknowledged since.
    in_loss: bool,
    /// Latest RTT the caller reported.
    rtt: Duration,
    cubic: Cubic,
}

/// RFC 6928's initial window: min(10·MSS, max(2·MSS, 14600)).
fn initial_window_for(mss: usize) -> usize {
    mss.saturating_mul(10)
        .min(mss.saturating_mul(2).max(IW_BYTES))
}

/// Float to bytes; Rust's `as` saturates and maps NaN to 0.
fn to_bytes(x: f64) -> usize {
    x as usize
}

impl Congestion {
    /// A connection about to start: cwnd is the initial window, ssthresh is
    /// "arbitrarily high" (RFC 5681 §3.1).
    ///
    /// The initial window follows RFC 6928: min(10·MSS, max(2·MSS, 14600
    /// bytes)), which RFC 5681 §3.1 permits as an experimental update. That
    /// is 10 segments for the usual 1460-byte MSS, like Linux's fixed 10
    /// segments, but stays at 14600 bytes (2 segments from an MSS of 7300)
    /// for jumbo frames, where Linux would send 10 full segments. An `mss` of
    /// zero is taken as 1.
    pub fn new(algorithm: Algorithm, mss: usize, now: Instant) -> Self {
        let mss = mss.max(1);
        Congestion {
            algorithm,
            mss,
            cwnd: initial_window_for(mss),
            ssthresh: usize::MAX,
            pristine: true,
            bytes_acked: 0,
            last_activity: now,
            in_loss: false,
            rtt: Duration::ZERO,
            cubic: Cubic::new(),
        }
    }

    /// The congestion window in bytes.
    pub fn window(&self) -> usize {
        self.cwnd
    }

    /// The slow start threshold in bytes (`usize::MAX` until the first
    /// congestion signal).
    pub fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    /// cwnd < ssthresh: slow start (RFC 5681 §3.1; at equality we are in
    /// congestion avoidance).
    pub fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// The controller this connection runs.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The sender MSS the window arithmetic uses.
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// The initial (and restart) window for the current MSS (RFC 6928).
    pub fn initial_window(&self) -> usize {
        initial_window_for(self.mss)
    }

    /// The handshake settled the MSS. Before any data was acknowledged (and
    /// before any congestion signal) the initial window is recomputed for
    /// it; later, cwnd is only raised to at least one segment.
    pub fn set_mss(&mut self, mss: usize) {
        self.mss = mss.max(1);
        if self.pristine {
            self.cwnd = initial_window_for(self.mss);
        } else {
            self.cwnd = self.cwnd.max(self.mss);
        }
    }

    /// New data was acknowledged outside fast recovery.
    ///
    /// `acked_bytes` is the amount of new data this ACK covers;
    /// `bytes_in_flight` is the data still outstanding *after* it; `rtt` is
    /// the smoothed RTT (or the latest sample) if known — CUBIC aims at
    /// W_cubic(t + RTT) (RFC 9438 §4.4) and keeps the last value given.
    ///
    /// - Application-limited flows do not grow (RFC 7661's spirit, RFC 9438
    ///   §5.8): cwnd grows only if `bytes_in_flight + acked_bytes >= cwnd -
    ///   MSS`, i.e. the window was (nearly) full before this ACK. CUBIC moves its epoch start forward by the time spent
    ///   application-limited, so that t excludes it (§5.8).
    /// - Slow start, cwnd < ssthresh: cwnd += min(acked, L·MSS) with L = 2
    ///   (RFC 5681 §3.1, Appropriate Byte Counting of RFC 3465 §2.2), never
    ///   past ssthresh; bytes left over count as congestion avoidance.
    /// - Congestion avoidance, NewReno: byte counting (RFC 3465 §2.1,
    ///   RFC 5681 §3.1): one MSS per cwnd bytes acknowledged, about one MSS
    ///   per RTT.
    /// - Congestion avoidance, CUBIC: see RFC 9438 §4.2–§4.5; the
    ///   Reno-friendly estimate W_est wins when it is above W_cubic(t),
    ///   otherwise cwnd moves towards W_cubic(t + RTT).
    pub fn on_ack(
        &mut self,
        now: Instant,
        acked_bytes: usize,
        rtt: Option<Duration>,
        bytes_in_flight: usize,
    ) {
        if let Some(rtt) = rtt {
            self.rtt = rtt;
        }
        if acked_bytes == 0 {
            return;
        }
        self.pristine = false;
        self.in_loss = false;
        let since = self.last_activity;
        self.last_activity = self.last_activity.max(now);

        let app_limited =
            bytes_in_flight.saturating_add(acked_bytes) < self.cwnd.saturating_sub(self.mss);
        if app_limited {
            // RFC 9438 §5.8: t must not include application-limited periods.
            self.shift_epoch(now, now.saturating_duration_since(since));
            return;
        }

        let mut acked = acked_bytes;
        if self.cwnd < self.ssthresh {
            // RFC 5681 §3.1 with RFC 3465 §2.2 (L = 2).
            let increase = acked.min(ABC_LIMIT.saturating_mul(self.mss));
            let room = self.ssthresh - self.cwnd;
            if increase < room {
                self.cwnd += increase;
                return;
            }
            self.cwnd = self.ssthresh;
            acked -= room.min(acked);
            if acked == 0 {
                return;
            }
        }
        match self.algorithm {
            Algorithm::NewReno => self.reno_avoidance(acked),
            Algorithm::Cubic => self.cubic_avoidance(now, acked),
        }
    }

    /// RFC 3465 §2.1 byte counting: cwnd += MSS each time cwnd bytes have
    /// been acknowledged in congestion avoidance (RFC 5681 §3.1's "one MSS
    /// per RTT").
    fn reno_avoidance(&mut self, acked: usize) {
        self.bytes_acked = self.bytes_acked.saturating_add(acked);
        let cwnd = self.cwnd.max(1);
        if self.bytes_acked >= cwnd {
            let segments = self.bytes_acked / cwnd;
            self.bytes_acked -= segments * cwnd;
            self.cwnd = self.cwnd.saturating_add(segments.saturating_mul(self.mss));
        }
    }

    /// RFC 9438 §4.2–§4.5, once per ACK in congestion avoidance.
    fn cubic_avoidance(&mut self, now: Instant, acked: usize) {
        let mss = self.mss as f64;
        let cwnd = (self.cwnd as f64).max(1.0);
        let start = match self.cubic.epoch_start {
            Some(start) => start,
            None => {
                self.begin_epoch(now);
                now
            }
        };
        let t = now.saturating_duration_since(start).as_secs_f64();
        let c = &mut self.cubic;

        // §4.3: W_est += α·segments_acked/cwnd (in segments); α becomes 1
        // once W_est has reached cwnd_prior.
        let alpha = if c.w_est >= c.cwnd_prior {
            1.0
        } else {
            CUBIC_ALPHA
        };
        c.w_est += alpha * acked as f64 * mss / cwnd;
        if c.w_cubic(t, mss) < c.w_est {
            // Reno-friendly region: cwnd = W_est (never shrinking on an ACK).
            self.cwnd = self.cwnd.max(to_bytes(c.w_est));
            return;
        }

        // §4.4 (concave, cwnd < W_max) and §4.5 (convex): aim at
        // W_cubic(t + RTT), clamped to [cwnd, 1.5·cwnd], and add
        // (target - cwnd)/cwnd per segment acknowledged.
        let target = c
            .w_cubic(t + self.rtt.as_secs_f64(), mss)
            .min(1.5 * cwnd)
            .max(cwnd);
        c.carry += (target - cwnd) / cwnd * acked as f64;
        if c.carry >= 1.0 {
            let whole = c.carry.floor();
            c.carry -= whole;
            self.cwnd = self.cwnd.saturating_add(to_bytes(whole));
        }
    }

    /// Starts a congestion avoidance stage (RFC 9438 §4.2): t = 0 now,
    /// K = ∛((W_max - cwnd_epoch)/C), W_est = cwnd_epoch (§4.3). After a
    /// timeout, or when cwnd already is at or above W_max, K = 0 and W_max =
    /// cwnd_epoch (§4.8; Linux does the same in the second case).
    fn begin_epoch(&mut self, now: Instant) {
        let cwnd = self.cwnd as f64;
        let c = &mut self.cubic;
        c.epoch_start = Some(now);
        c.carry = 0.0;
        c.w_est = cwnd;
        if c.after_timeout || cwnd >= c.w_max {
            c.after_timeout = false;
            c.w_max = cwnd;
            c.k = 0.0;
        } else {
            c.k = ((c.w_max - cwnd) / self.mss as f64 / CUBIC_C).cbrt();
        }
    }

    /// Moves CUBIC's epoch start forward by `by`, never past `now` and
    /// never backwards (RFC 9438 §5.8).
    fn shift_epoch(&mut self, now: Instant, by: Duration) {
        if let Some(start) = self.cubic.epoch_start {
            self.cubic.epoch_start = Some((start + by).min(now).max(start));
        }
    }

    /// The multiplicative decrease shared by congestion events and timeouts.
    fn reduce(&mut self, now: Instant, bytes_in_flight: usize) {
        self.pristine = false;
        self.bytes_acked = 0;
        self.last_activity = self.last_activity.max(now);
        let floor = self.mss.saturating_mul(2);
        match self.algorithm {
            // RFC 5681 §3.1 eq. (4): ssthresh = max(FlightSize/2, 2·SMSS).
            Algorithm::NewReno => self.ssthresh = (bytes_in_flight / 2).max(floor),
            Algorithm::Cubic => {
                let cwnd = self.cwnd as f64;
                let c = &mut self.cubic;
                // §4.7 fast convergence: a window below the last W_max means
                // the available share shrank; release some of it.
                c.w_max = if cwnd < c.w_max {
                    cwnd * (1.0 + CUBIC_BETA) / 2.0
                } else {
                    cwnd
                };
                // §4.6: ssthresh = cwnd·β_cubic, at least 2 segments. The RFC
                // allows cwnd instead of FlightSize when app-limited growth
                // is prevented, as on_ack does.
                c.cwnd_prior = cwnd;
                c.epoch_start = None;
                c.carry = 0.0;
                c.after_timeout = false;
                self.ssthresh = to_bytes((cwnd * CUBIC_BETA).round()).max(floor);
            }
        }
    }

    /// Loss detected by duplicate ACKs or SACK: entering fast recovery.
    ///
    /// NewReno: ssthresh = max(FlightSize/2, 2·MSS) (RFC 5681 §3.1 eq. 4)
    /// and cwnd = ssthresh. RFC 5681 §3.2 step 2 (and RFC 6582) inflate
    /// cwnd by 3·MSS and by one MSS per further duplicate ACK: that
    /// inflation is the caller's, on top of [`window`](Self::window), if it
    /// wants it.
    ///
    /// CUBIC: W_max = cwnd, or cwnd·(1 + β)/2 if cwnd is below the previous
    /// W_max (fast convergence, RFC 9438 §4.7); ssthresh = max(cwnd·β,
    /// 2·MSS) and cwnd = ssthresh (§4.6); the next congestion avoidance
    /// stage starts a new epoch. `bytes_in_flight` is unused by CUBIC.
    pub fn on_congestion_event(&mut self, now: Instant, bytes_in_flight: usize) {
        self.in_loss = false;
        self.reduce(now, bytes_in_flight);
        self.cwnd = self.ssthresh;
    }

    /// Fast recovery is over (RFC 6582 §3.2 step 6, the ACK covers
    /// `recover`): cwnd = min(ssthresh, max(FlightSize, MSS) + MSS), the
    /// first of the RFC's two options, which avoids a burst when little is
    /// in flight. If that leaves cwnd below ssthresh, slow start brings it
    /// back.
    pub fn on_recovery_exit(&mut self, bytes_in_flight: usize) {
        let deflated = bytes_in_flight.max(self.mss).saturating_add(self.mss);
        self.cwnd = self.ssthresh.min(deflated);
        self.bytes_acked = 0;
    }

    /// A reduction proved spurious: every segment it retransmitted had
    /// arrived already (D-SACK, RFC 3708). cwnd and ssthresh go back to at
    /// least what they were in `prior` (the state just before it), and
    /// CUBIC's W_max with them (Linux's `tcp_undo_cwnd_reduction`).
    pub fn undo(&mut self, prior: &Congestion) {
        self.cwnd = self.cwnd.max(prior.cwnd);
        self.ssthresh = self.ssthresh.max(prior.ssthresh);
        // W_max as before the reduction; the next congestion avoidance
        // stage starts a new epoch from the window restored.
        self.cubic = prior.cubic.clone();
        self.cubic.epoch_start = None;
        self.cubic.carry = 0.0;
        self.in_loss = false;
    }

    /// The retransmission timer expired.
    ///
    /// ssthresh as for a congestion event — NewReno RFC 5681 §3.1 eq. 4,
    /// CUBIC RFC 9438 §4.8 (β_cubic as in §4.6, with §4.7's W_max update) —
    /// then cwnd = 1 MSS, the loss window (RFC 5681 §3.1). CUBIC's next
    /// congestion avoidance stage starts with K = 0 and W_max = cwnd at its
    /// start (§4.8).
    ///
    /// RFC 5681 §3.1 recomputes ssthresh only when the segment had not been
    /// retransmitted by the timer yet: a timeout with no new data
    /// acknowledged since the previous one keeps ssthresh (and W_max), as
    /// Linux does.
    pub fn on_retransmit_timeout(&mut self, now: Instant, bytes_in_flight: usize) {
        if self.in_loss {
            self.last_activity = self.last_activity.max(now);
        } else {
            self.reduce(now, bytes_in_flight);
        }
        self.in_loss = true;
        self.cubic.epoch_start = None;
        self.cubic.carry = 0.0;
        self.cubic.after_timeout = true;
        self.cwnd = self.mss;
    }

    /// About to send with nothing in flight (call it each time the pipe
    /// drains and transmission starts again).
    ///
    /// RFC 5681 §4.1: after an idle period longer than `rto`, cwnd =
    /// min(cwnd, RW) with the restart window RW = min(IW, cwnd). Before
    /// shrinking, ssthresh = max(ssthresh, ¾·cwnd) keeps the memory of the
    /// old window (RFC 2861 §3, as Linux does), so slow start climbs back.
    /// CUBIC's epoch start moves forward by the idle time whatever its
    /// length (RFC 9438 §5.8).
    ///
    /// The idle time is measured from the last ACK (or reduction, or
    /// restart): the last transmission came before the ACK that emptied the
    /// pipe, so this errs towards keeping the window.
    pub fn restart_after_idle(&mut self, now: Instant, rto: Duration) {
        let idle = now.saturating_duration_since(self.last_activity);
        self.last_activity = self.last_activity.max(now);
        self.shift_epoch(now, idle);
        if idle > rto {
            let restart = self.initial_window().min(self.cwnd);
            if self.cwnd > restart {
                let three_quarters = self.cwnd / 2 + self.cwnd / 4;
                self.ssthresh = self.ssthresh.max(three_quarters);
                self.cwnd = restart;
                self.bytes_acked = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;
    const ALGORITHMS: [Algorithm; 2] = [Algorithm::NewReno, Algorithm::Cubic];

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// One round trip of a sender that keeps the window full: the window at
    /// the start of the round is acknowledged in ACKs of `per_ack` segments
    /// (the last one may be shorter), spread evenly over the RTT, and the
    /// sender refills the window at once. Returns the end of the round.
    fn round(cc: &mut Congestion, start: Instant, rtt: Duration, per_ack: usize) -> Instant {
        let chunk = cc.mss() * per_ack;
        let mut left = cc.window();
        let acks = left.div_ceil(chunk) as u32;
        for i in 0..acks {
            let acked = chunk.min(left);
            left -= acked;
            let at = start + rtt * i / acks;
            let flight = cc.window().saturating_sub(acked);
            cc.on_ack(at, acked, Some(rtt), flight);
        }
        start + rtt
    }

    /// A CUBIC connection in congestion avoidance right after a congestion
    /// event at cwnd = `w_max_segments`.
    fn cubic_after_loss(w_max_segments: usize, now: Instant) -> Congestion {
        let mut cc = Congestion::new(Algorithm::Cubic, MSS, now);
        cc.cwnd = w_max_segments * MSS;
        cc.on_congestion_event(now, cc.cwnd);
        cc
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::default(), Algorithm::Cubic);
        assert_eq!("newreno".parse(), Ok(Algorithm::NewReno));
        assert_eq!("CUBIC".parse(), Ok(Algorithm::Cubic));
        assert_eq!("reno".parse::<Algorithm>(), Err(ParseAlgorithmError));
        assert_eq!("".parse::<Algorithm>(), Err(ParseAlgorithmError));
        for a in ALGORITHMS {
            assert_eq!(a.to_string().parse(), Ok(a));
        }
        assert_eq!(Algorithm::NewReno.to_string(), "newreno");
    }

    #[test]
    fn initial_window_rfc6928() {
        let now = Instant::ZERO;
        let iw = |mss| Congestion::new(Algorithm::Cubic, mss, now).window();
        assert_eq!(iw(1460), 14_600);
        assert_eq!(iw(536), 5360);
        assert_eq!(iw(1000), 10_000);
        assert_eq!(iw(9000), 18_000);
        assert_eq!(iw(1), 10);
        assert_eq!(iw(0), 10);
        let cc = Congestion::new(Algorithm::NewReno, 1460, now);
        assert_eq!(cc.ssthresh(), usize::MAX);
        assert!(cc.in_slow_start());
        assert_eq!(cc.algorithm(), Algorithm::NewReno);
    }

    #[test]
    fn set_mss_rescales_only_a_pristine_window() {
        let now = Instant::ZERO;
        let mut cc = Congestion::new(Algorithm::Cubic, 536, now);
        cc.set_mss(1460);
        assert_eq!(cc.window(), 14_600);
        cc.on_ack(now, 1460, None, 14_600 - 1460);
        assert_eq!(cc.window(), 16_060);
        cc.set_mss(1000);
        assert_eq!(cc.window(), 16_060);
        assert_eq!(cc.mss(), 1000);
        cc.set_mss(0);
        assert_eq!(cc.mss(), 1);
    }

    #[test]
    fn slow_start_doubles_per_rtt() {
        for a in ALGORITHMS {
            for per_ack in [1, 2] {
                let mut cc = Congestion::new(a, MSS, Instant::ZERO);
                let mut now = Instant::ZERO;
                for expected in [20_000, 40_000, 80_000, 160_000] {
                    now = round(&mut cc, now, ms(50), per_ack);
                    assert_eq!(cc.window(), expected, "{a} with {per_ack} segments per ACK");
                }
                assert!(cc.in_slow_start());
            }
        }
    }

    #[test]
    fn abc_limits_growth_per_ack() {
        for a in ALGORITHMS {
            let mut cc = Congestion::new(a, MSS, Instant::ZERO);
            // A stretch ACK for 5 segments grows cwnd by L·MSS = 2 MSS only.
            cc.on_ack(Instant::ZERO, 5 * MSS, None, 5 * MSS);
            assert_eq!(cc.window(), 12_000);
        }
    }

    #[test]
    fn slow_start_stops_at_ssthresh() {
        for a in ALGORITHMS {
            let mut cc = Congestion::new(a, MSS, Instant::ZERO);
            cc.cwnd = 40_000;
            cc.on_retransmit_timeout(Instant::ZERO, 40_000);
            // NewReno: 40000/2; CUBIC: 0.7·40000.
            let ssthresh = match a {
                Algorithm::NewReno => 20_000,
                Algorithm::Cubic => 28_000,
            };
            assert_eq!((cc.window(), cc.ssthresh()), (MSS, ssthresh));
            let mut now = Instant::ZERO;
            for expected in [2000, 4000, 8000, 16_000] {
                now = round(&mut cc, now, ms(50), 1);
                assert_eq!(cc.window(), expected);
            }
            // The next round crosses ssthresh and stops there (CUBIC's first
            // stage after a timeout starts with K = 0, so it barely grows).
            round(&mut cc, now, ms(50), 1);
            assert!(!cc.in_slow_start());
            assert!(
                cc.window() >= ssthresh && cc.window() < ssthresh + MSS,
                "{a}"
            );
        }
    }

    #[test]
    fn reno_grows_one_mss_per_rtt() {
        let mut cc = Congestion::new(Algorithm::NewReno, MSS, Instant::ZERO);
        cc.cwnd = 40_000;
        cc.on_congestion_event(Instant::ZERO, 40_000);
        assert_eq!((cc.window(), cc.ssthresh()), (20_000, 20_000));
        cc.on_recovery_exit(20_000);
        assert_eq!(cc.window(), 20_000);
        let mut now = Instant::ZERO;
        for i in 1..=30 {
            now = round(&mut cc, now, ms(50), 1);
            assert_eq!(cc.window(), 20_000 + i * MSS);
        }
        // Delayed ACKs: same rate per RTT in byte counting.
        for i in 1..=10 {
            now = round(&mut cc, now, ms(50), 2);
            assert_eq!(cc.window(), 50_000 + i * MSS);
        }
    }

    #[test]
    fn reno_congestion_event_and_timeout_values() {
        let now = Instant::ZERO;
        let mut cc = Congestion::new(Algorithm::NewReno, MSS, now);
        cc.on_congestion_event(now, 30_000);
        assert_eq!((cc.window(), cc.ssthresh()), (15_000, 15_000));
        // FlightSize/2 below 2·MSS: the floor.
        cc.on_congestion_event(now, 3000);
        assert_eq!((cc.window(), cc.ssthresh()), (2000, 2000));

        let mut cc = Congestion::new(Algorithm::NewReno, MSS, now);
        cc.on_retransmit_timeout(now, 25_000);
        assert_eq!((cc.window(), cc.ssthresh()), (MSS, 12_500));
        // The same segment timing out again keeps ssthresh.
        cc.on_retransmit_timeout(now, 25_000);
        assert_eq!((cc.window(), cc.ssthresh()), (MSS, 12_500));
        // Once new data is acknowledged, a later timeout is a new loss.
        cc.on_ack(now, MSS, None, 0);
        cc.on_retransmit_timeout(now, 10_000);
        assert_eq!((cc.window(), cc.ssthresh()), (MSS, 5000));
    }

    #[test]
    fn recovery_exit_deflates() {
        let now = Instant::ZERO;
        let mut cc = Congestion::new(Algorithm::NewReno, MSS, now);
        cc.on_congestion_event(now, 40_000);
        cc.on_recovery_exit(5000);
        // min(20000, 5000 + 1000)
        assert_eq!(cc.window(), 6000);
        assert!(cc.in_slow_start());
        cc.on_congestion_event(now, 40_000);
        cc.on_recovery_exit(0);
        // min(20000, max(0, MSS) + MSS)
        assert_eq!(cc.window(), 2000);
        cc.on_congestion_event(now, 40_000);
        cc.on_recovery_exit(50_000);
        assert_eq!(cc.window(), 20_000);
    }

    #[test]
    fn cubic_congestion_event_and_fast_convergence() {
        let now = Instant::ZERO;
        let mut cc = Congestion::new(Algorithm::Cubic, MSS, now);
        cc.cwnd = 100_000;
        // bytes_in_flight does not matter to CUBIC.
        cc.on_congestion_event(now, 1);
        assert_eq!((cc.window(), cc.ssthresh()), (70_000, 70_000));
        assert_eq!(cc.cubic.w_max, 100_000.0);
        assert_eq!(cc.cubic.cwnd_prior, 100_000.0);
        // A second loss below the old W_max: W_max = 80000·(1 + 0.7)/2.
        cc.cwnd = 80_000;
        cc.on_congestion_event(now, 80_000);
        assert!(close(cc.cubic.w_max, 68_000.0, 1e-6));
        assert_eq!((cc.window(), cc.ssthresh()), (56_000, 56_000));
        // Above it again: no fast convergence.
        cc.cwnd = 90_000;
        cc.on_congestion_event(now, 90_000);
        assert_eq!(cc.cubic.w_max, 90_000.0);
        assert_eq!(cc.ssthresh(), 63_000);
        // The floor is 2 segments.
        cc.cwnd = 2000;
        cc.on_congestion_event(now, 2000);
        assert_eq!((cc.window(), cc.ssthresh()), (2000, 2000));
    }

    #[test]
    fn cubic_timeout() {
        let now = Instant::ZERO;
        let mut cc = Congestion::new(Algorithm::Cubic, MSS, now);
        cc.cwnd = 100_000;
        cc.on_retransmit_timeout(now, 100_000);
        assert_eq!((cc.window(), cc.ssthresh()), (MSS, 70_000));
        assert_eq!(cc.cubic.w_max, 100_000.0);
        cc.on_retransmit_timeout(now, 100_000);
        assert_eq!((cc.window(), cc.ssthresh()), (MSS, 70_000));
        // Back at ssthresh, the new stage starts with K = 0 and W_max = cwnd.
        cc.cwnd = 70_000;
        cc.on_ack(now, MSS, Some(ms(100)), 69_000);
        assert_eq!(cc.cubic.k, 0.0);
        assert_eq!(cc.cubic.w_max, 70_000.0);
        assert_eq!(
            cc.cubic.w_est,
            70_000.0 + CUBIC_ALPHA * 1000.0 * 1000.0 / 70_000.0
        );
    }

    #[test]
    fn cubic_k_and_w_cubic_by_hand() {
        let t0 = Instant::from_millis(1000);
        let mut cc = cubic_after_loss(100, t0);
        // The first ACK in congestion avoidance opens the epoch.
        cc.on_ack(t0, MSS, Some(ms(100)), 69_000);
        assert_eq!(cc.cubic.epoch_start, Some(t0));
        // K = ∛(W_max(1 - β)/C) = ∛(100·0.3/0.4) = ∛75 = 4.2171633265...
        assert!(close(cc.cubic.k, 4.217_163_326_508_746, 1e-9));
        let w = |t: f64| cc.cubic.w_cubic(t, MSS as f64) / MSS as f64;
        // W_cubic(0) = W_max·β = 70 segments; W_cubic(K) = W_max = 100.
        assert!(close(w(0.0), 70.0, 1e-9));
        assert!(close(w(cc.cubic.k), 100.0, 1e-9));
        // W_cubic(2) = 0.4·(2 - 4.2171633)³ + 100 = 0.4·(-10.8991608) + 100
        assert!(close(w(2.0), 95.640_335_69, 1e-6));
        // W_cubic(10) = 0.4·(5.7828367)³ + 100 = 0.4·193.3849977 + 100
        assert!(close(w(10.0), 177.353_999_09, 1e-6));
    }

    #[test]
    fn cubic_is_concave_then_convex() {
        let rtt = ms(100);
        let mut now = Instant::from_millis(5);
        let mut cc = cubic_after_loss(1000, now);
        // K = ∛(1000·0.3/0.4) = ∛750 ≈ 9.0856 s.
        let mut windows = [0usize; 181];
        windows[0] = cc.window();
        for w in windows.iter_mut().skip(1) {
            now = round(&mut cc, now, rtt, 1);
            *w = cc.window();
        }
        let growth = |from: usize, to: usize| windows[to] - windows[from];
        // cwnd tracks W_cubic(t + RTT); round i ends at t = i·RTT.
        // Concave: each second before K adds less than the one before.
        let concave: [usize; 8] = core::array::from_fn(|s| growth(s * 10, s * 10 + 10));
        assert!(concave.windows(2).all(|p| p[0] > p[1]), "{concave:?}");
        // The plateau: close to W_max = 1000 segments around K.
        let at_k = windows[90] as f64 / MSS as f64;
        assert!(close(at_k, 1000.0, 2.0), "{at_k}");
        // Convex: each second after K adds more than the one before.
        let convex: [usize; 7] = core::array::from_fn(|s| growth(100 + s * 10, 110 + s * 10));
        assert!(convex.windows(2).all(|p| p[0] < p[1]), "{convex:?}");
        // And the window follows the curve, lagging its target
        // W_cubic(t + RTT) by a fraction of a round's growth: at t = 18 s,
        // W_cubic(17.9) = 0.4·(17.9 - 9.0856)³ + 1000 ≈ 1273.9 segments and
        // W_cubic(18.1) = 0.4·(18.1 - 9.0856)³ + 1000 ≈ 1293.0 segments.
        let end = windows[180] as f64 / MSS as f64;
        assert!((1273.9..=1293.0).contains(&end), "{end}");
    }

    #[test]
    fn reno_friendly_region_dominates_short_rtts() {
        let rtt = ms(1);
        let mut now = Instant::ZERO;
        let mut cc = cubic_after_loss(20, now);
        for _ in 0..2000 {
            now = round(&mut cc, now, rtt, 1);
        }
        // After 2 s, W_cubic(2) = 0.4·(2 - ∛15)³ + 20 < 20 segments, but
        // Reno-like growth (0.53 then 1 segment per RTT) reached far beyond.
        assert!(cc.cubic.w_cubic(2.0, MSS as f64) < 20.0 * MSS as f64);
        assert!(cc.window() > 1000 * MSS, "{}", cc.window());
        assert!(close(cc.window() as f64, cc.cubic.w_est, MSS as f64));

        // The same window on a long path follows the cubic curve instead.
        let rtt = ms(200);
        let mut now = Instant::ZERO;
        let mut cc = cubic_after_loss(20, now);
        for _ in 0..10 {
            now = round(&mut cc, now, rtt, 1);
        }
        assert!(cc.window() <= 21 * MSS, "{}", cc.window());
    }

    #[test]
    fn reno_friendly_alpha_becomes_one_at_cwnd_prior() {
        let mut cc = cubic_after_loss(20, Instant::ZERO);
        cc.on_ack(Instant::ZERO, MSS, Some(ms(1)), cc.window() - MSS);
        let before = cc.cubic.w_est;
        assert!(close(
            before,
            14_000.0 + CUBIC_ALPHA * MSS as f64 * MSS as f64 / 14_000.0,
            1e-9
        ));
        cc.cubic.w_est = 20_000.0;
        cc.cwnd = 20_000;
        cc.on_ack(Instant::from_micros(10), MSS, None, 19_000);
        // α = 1: W_est += 1·MSS·MSS/cwnd
        assert!(close(cc.cubic.w_est, 20_050.0, 1e-9));
    }

    #[test]
    fn application_limited_flows_do_not_grow() {
        for a in ALGORITHMS {
            let now = Instant::ZERO;
            // Slow start: a 10-segment window with 2 segments in flight.
            let mut cc = Congestion::new(a, MSS, now);
            cc.on_ack(now, MSS, Some(ms(10)), MSS);
            assert_eq!(cc.window(), 10_000);
            // Exactly at the limit (flight + acked = cwnd - MSS): grows.
            cc.on_ack(now, MSS, Some(ms(10)), 8000);
            assert_eq!(cc.window(), 11_000);

            // Congestion avoidance.
            let mut cc = Congestion::new(a, MSS, now);
            cc.cwnd = 100_000;
            cc.on_congestion_event(now, 100_000);
            let w = cc.window();
            let mut t = now;
            for _ in 0..1000 {
                t += ms(10);
                cc.on_ack(t, MSS, Some(ms(10)), 0);
            }
            assert_eq!(cc.window(), w, "{a}");
        }
    }

    #[test]
    fn cubic_epoch_skips_application_limited_time() {
        let rtt = ms(100);
        let t0 = Instant::ZERO;
        let mut cc = cubic_after_loss(100, t0);
        cc.on_ack(t0, MSS, Some(rtt), cc.window() - MSS);
        assert_eq!(cc.cubic.epoch_start, Some(t0));
        let w = cc.window();
        // 20 s of application-limited ACKs.
        let mut now = t0;
        for _ in 0..200 {
            now += rtt;
            cc.on_ack(now, MSS, Some(rtt), 0);
        }
        assert_eq!(cc.window(), w);
        assert_eq!(cc.cubic.epoch_start, Some(t0 + ms(20_000)));
        // Window-limited again: t restarts near 0, so growth is that of the
        // concave start, not the 1.5× per RTT a 20 s old epoch would allow.
        round(&mut cc, now, rtt, 1);
        assert!(cc.window() < w + 6 * MSS, "{} vs {w}", cc.window());

        // An idle period reported by restart_after_idle is skipped as well.
        let epoch = cc.cubic.epoch_start;
        let last = cc.last_activity;
        cc.restart_after_idle(last + ms(50), ms(200));
        assert_eq!(cc.cubic.epoch_start, epoch.map(|e| e + ms(50)));
    }

    #[test]
    fn restart_after_idle_uses_restart_window() {
        for a in ALGORITHMS {
            let t0 = Instant::ZERO;
            let mut cc = Congestion::new(a, MSS, t0);
            let mut now = t0;
            for _ in 0..3 {
                now = round(&mut cc, now, ms(10), 1);
            }
            assert_eq!(cc.window(), 80_000);
            let last = cc.last_activity;
            // Idle for less than an RTO: unchanged.
            cc.restart_after_idle(last + ms(150), ms(200));
            assert_eq!(cc.window(), 80_000);
            // Idle for more than an RTO: back to IW, ssthresh keeps ¾·cwnd.
            cc.restart_after_idle(last + ms(150) + ms(201), ms(200));
            assert_eq!(cc.window(), 10_000);
            assert_eq!(cc.ssthresh(), usize::MAX);

            let mut cc = Congestion::new(a, MSS, t0);
            cc.cwnd = 80_000;
            cc.on_congestion_event(t0, 80_000);
            // NewReno 40000, CUBIC 56000; then cwnd grew back to 80000.
            cc.cwnd = 80_000;
            cc.restart_after_idle(t0 + ms(1000), ms(200));
            assert_eq!(cc.window(), 10_000);
            assert_eq!(cc.ssthresh(), 60_000);
            // A window already below IW is kept.
            cc.cwnd = 3000;
            cc.restart_after_idle(t0 + ms(5000), ms(200));
            assert_eq!(cc.window(), 3000);
        }
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let rtts = [None, Some(Duration::ZERO), Some(Duration::MAX), Some(ms(1))];
        let sizes = [0, 1, 2, MSS, usize::MAX / 2, usize::MAX - 1, usize::MAX];
        let times = [
            Instant::ZERO,
            Instant::from_micros(u64::MAX),
            Instant::from_millis(1),
        ];
        for a in ALGORITHMS {
            for mss in [0, 1, 1460, usize::MAX / 20, usize::MAX] {
                let mut cc = Congestion::new(a, mss, Instant::ZERO);
                for &now in &times {
                    for &rtt in &rtts {
                        for &x in &sizes {
                            for &y in &sizes {
                                cc.on_ack(now, x, rtt, y);
                                assert!(cc.window() >= 1);
                            }
                            cc.on_congestion_event(now, x);
                            cc.on_ack(now, x, rtt, x);
                            cc.on_recovery_exit(x);
                            cc.on_ack(now, x, rtt, usize::MAX);
                            cc.on_retransmit_timeout(now, x);
                            cc.on_ack(now, x, rtt, usize::MAX);
                            cc.restart_after_idle(now, Duration::ZERO);
                            cc.restart_after_idle(now, Duration::MAX);
                            cc.set_mss(x);
                            assert!(cc.window() >= 1);
                            assert!(cc.ssthresh() >= 1);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn huge_windows_saturate() {
        for a in ALGORITHMS {
            let now = Instant::ZERO;
            let mut cc = Congestion::new(a, 1, now);
            cc.cwnd = usize::MAX / 2;
            cc.on_ack(now, usize::MAX / 2, Some(Duration::ZERO), usize::MAX / 2);
            cc.on_ack(now, usize::MAX, Some(Duration::ZERO), usize::MAX);
            assert!(cc.window() >= usize::MAX / 2);
            cc.on_congestion_event(now, usize::MAX);
            assert!(cc.window() >= 2);
            let mut t = now;
            for _ in 0..100 {
                t += Duration::from_secs(1000);
                cc.on_ack(t, usize::MAX, Some(Duration::ZERO), usize::MAX);
            }
            assert!(cc.window() >= cc.ssthresh());
            // With mss 1 and a zero RTT, CUBIC still works in whole bytes.
            let mut cc = Congestion::new(a, 1, now);
            assert_eq!(cc.window(), 10);
            cc.on_congestion_event(now, 10);
            let mut t = now;
            for _ in 0..10_000 {
                t += Duration::from_micros(1);
                let w = cc.window();
                cc.on_ack(t, 1, Some(Duration::ZERO), w - 1);
            }
            assert!(cc.window() > 10);
        }
    }
}
