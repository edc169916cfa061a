//! SYN cookies (RFC 4987 §3.6), encoded like Linux's `net/ipv4/syncookies.c`.
//!
//! A listener under a SYN flood answers a SYN with a SYN-ACK whose sequence number
//! (the cookie) carries what it needs to know later, and keeps no state. The ACK that
//! completes the handshake returns the cookie in SEG.ACK - 1; [`SynCookies::check`]
//! verifies it and recovers the peer's MSS.
//!
//! The cookie, with `count` the number of 64-second periods of `now`:
//!
//! ```text
//! cookie = hash1(tuple) + peer_isn + (count << 24)
//!        + ((hash2(tuple, count) + mss_index * MSS_STRIDE) & 0x00FF_FFFF)
//! ```
//!
//! `hash1` and `hash2` are SipHash-2-4 under two independent secret keys. The top 8
//! bits tell the check which period the cookie comes from; it accepts the current
//! and the previous one ([`MAX_AGE_PERIODS`]). The low 24 bits must come out as one
//! of the 4 values `mss_index * MSS_STRIDE`, so a forged cookie passes with
//! probability at most 4 / 2^24 per try.
//!
//! One change from Linux, which adds `mss_index` itself (`MSS_STRIDE` = 1): there a
//! peer ISN or cookie off by 1 to 3 (a data segment after a lost handshake ACK, a
//! flipped low bit) still decodes, to a neighbouring MSS and a wrong ISN. Here the
//! 4 values are spread over the 24 bits, all pairwise differences at least 2^20 from
//! 0 modulo 2^24 and none a power of two, so any such error smaller than 2^20 and
//! any single flipped bit in the low 24 is rejected.
//!
//! The MSS is the only option the sequence number carries. Window scaling and SACK
//! permission ride in the low bits of our TSval ([`SynCookies::encode_timestamp`])
//! and come back in the peer's TSecr ([`SynCookies::decode_timestamp`]); without
//! the timestamp option (RFC 7323) a connection made from a cookie has no window
//! scaling and no SACK, as on Linux.

use std::fmt;
use std::net::SocketAddrV4;

use siphasher::sip::SipHasher24;

use crate::tcp::isn::random_key;
use crate::time::Instant;
use crate::wire::SeqNumber;

/// The MSS values a cookie can encode (Linux's `msstab`); a peer's MSS is rounded
/// down to the largest entry not above it, and anything below 536 encodes as 536
/// (RFC 9293 §3.7.1's default), as on Linux.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// Length of one cookie counter period, in seconds (Linux uses 60).
pub const PERIOD_SECS: u64 = 64;

/// A cookie is accepted while the counter has advanced by less than this many
/// periods since it was made (Linux's `MAX_SYNCOOKIE_AGE`): between 64 and 128
/// seconds, depending on where in its period it was made.
pub const MAX_AGE_PERIODS: u32 = 2;

/// Bits of the cookie below the counter (Linux's `COOKIEBITS`).
const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// What one step of the MSS index adds to the low 24 bits (Linux: 1). Its multiples
/// by -3..=3 other than 0 are all at least 2^20 away from 0 modulo 2^24, and none is a
/// power of two (see the module docs and the `stride_separates_indices` test).
const MSS_STRIDE: u32 = 0x3A_9C5D;
/// The counter field is 8 bits, so period differences are taken modulo 256.
const COUNT_MASK: u32 = u32::MAX >> COOKIE_BITS;

/// Low bits of the TSval that carry options (Linux's `TSBITS`).
const TS_BITS: u32 = 6;
const TS_WSCALE_MASK: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;
/// Reserved for ECN as on Linux; never set here.
#[allow(dead_code)]
const TS_ECN: u32 = 1 << 5;
/// Largest window scale shift (RFC 7323 §2.3).
const MAX_WINDOW_SCALE: u8 = 14;

/// Makes and checks SYN cookies under two secret keys (RFC 4987 §3.6).
#[derive(Clone, Copy)]
pub struct SynCookies {
    /// `hash1` (the tuple alone) and `hash2` (the tuple and the counter).
    hash: [SipHasher24; 2],
}

impl SynCookies {
    /// Cookies under fixed keys: deterministic, for tests and simulations.
    pub fn new(keys: [[u64; 2]; 2]) -> Self {
        SynCookies {
            hash: [
                SipHasher24::new_with_keys(keys[0][0], keys[0][1]),
                SipHasher24::new_with_keys(keys[1][0], keys[1][1]),
            ],
        }
    }

    /// Cookies under fresh secret keys from the OS ([`random_key`]).
    pub fn random() -> Self {
        Self::new([random_key(), random_key()])
    }

    /// The MSS a cookie records for a peer that announced `peer_mss`: the largest
    /// [`MSS_TABLE`] entry not above it, or the smallest entry.
    pub fn encoded_mss(peer_mss: u16) -> u16 {
        MSS_TABLE
            .iter()
            .rev()
            .find(|&&entry| peer_mss >= entry)
            .map_or(MSS_TABLE[0], |&entry| entry)
    }

    /// Our ISN for the SYN-ACK that answers a SYN from `remote` to `local` carrying
    /// `peer_isn` and MSS `mss` (RFC 4987 §3.6), made at `now`. The MSS is rounded
    /// down as [`SynCookies::encoded_mss`] says.
    pub fn generate(
        &self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        peer_isn: SeqNumber,
        mss: u16,
        now: Instant,
    ) -> SeqNumber {
        let count = Self::counter(now);
        let data = Self::mss_index(mss).wrapping_mul(MSS_STRIDE);
        let low = self.hash(1, local, remote, count).wrapping_add(data) & COOKIE_MASK;
        SeqNumber(
            self.hash(0, local, remote, 0)
                .wrapping_add(peer_isn.0)
                .wrapping_add(count << COOKIE_BITS)
                .wrapping_add(low),
        )
    }

    /// Checks the cookie returned by the ACK that completes a handshake: `peer_isn`
    /// is its SEG.SEQ - 1 and `cookie` its SEG.ACK - 1. Gives the MSS the cookie
    /// records, or `None` if the cookie is forged, for another connection, or
    /// [`MAX_AGE_PERIODS`] or more periods old at `now`.
    pub fn check(
        &self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        peer_isn: SeqNumber,
        cookie: SeqNumber,
        now: Instant,
    ) -> Option<u16> {
        let count = Self::counter(now);
        let rest = cookie
            .0
            .wrapping_sub(self.hash(0, local, remote, 0).wrapping_add(peer_isn.0));
        // Periods since the cookie was made, modulo 2^8; a cookie "from the future"
        // comes out near 255 and fails too.
        let age = count.wrapping_sub(rest >> COOKIE_BITS) & COUNT_MASK;
        if age >= MAX_AGE_PERIODS {
            return None;
        }
        let made = count.wrapping_sub(age);
        let data = rest.wrapping_sub(self.hash(1, local, remote, made)) & COOKIE_MASK;
        MSS_TABLE
            .iter()
            .zip(0u32..)
            .find(|&(_, index)| index.wrapping_mul(MSS_STRIDE) & COOKIE_MASK == data)
            .map(|(&mss, _)| mss)
    }

    /// The TSval for a cookie SYN-ACK: `now_ts` with its low 6 bits replaced by the
    /// options the SYN asked for (Linux's `cookie_init_timestamp`), moved back by 64
    /// if that would put it ahead of `now_ts`, so it is 0 to 63 ticks behind.
    ///
    /// Bits 0-3 hold the peer's window scale shift (`0xf`: no window scaling; shifts
    /// above 14 are taken as 14, RFC 7323 §2.3), bit 4 SACK-permitted (RFC 2018),
    /// bit 5 ECN (always 0 here). Use it only when the SYN carried a timestamp option.
    pub fn encode_timestamp(
        &self,
        now_ts: u32,
        window_scale: Option<u8>,
        sack_permitted: bool,
    ) -> u32 {
        let mut options = match window_scale {
            Some(shift) => u32::from(shift.min(MAX_WINDOW_SCALE)),
            None => TS_WSCALE_MASK,
        };
        if sack_permitted {
            options |= TS_SACK;
        }
        let ts = (now_ts >> TS_BITS << TS_BITS) | options;
        if ts > now_ts {
            ts.wrapping_sub(1 << TS_BITS)
        } else {
            ts
        }
    }

    /// The options a cookie SYN-ACK recorded in its TSval, from the TSecr of the ACK
    /// that echoes it (Linux's `cookie_timestamp_decode`): the peer's window scale
    /// shift (`None`: no window scaling) and whether SACK is permitted. If the ACK
    /// has no timestamp option, the connection has neither: both are negotiated in
    /// the SYN (RFC 7323 §2.2, RFC 2018 §2), and only the TSval remembers them.
    ///
    /// The TSecr is not authenticated: a forged one can only pick options the
    /// forger could have put in its SYN anyway.
    pub fn decode_timestamp(tsecr: u32) -> (Option<u8>, bool) {
        let shift = tsecr & TS_WSCALE_MASK;
        let window_scale = if shift == TS_WSCALE_MASK {
            None
        } else {
            Some(shift as u8)
        };
        (window_scale, tsecr & TS_SACK != 0)
    }

    /// Index into [`MSS_TABLE`] of the largest entry `<= mss`, else 0.
    fn mss_index(mss: u16) -> u32 {
        let mut index = 0;
        for (i, &entry) in MSS_TABLE.iter().enumerate() {
            if mss >= entry {
                index = i as u32;
            }
        }
        index
    }

    /// The 64-second counter of `now`, modulo 2^32.
    fn counter(now: Instant) -> u32 {
        (now.total_micros() / 1_000_000 / PERIOD_SECS) as u32
    }

    /// `hash1` (`which == 0`, `count == 0`) or `hash2` (`which == 1`) of the tuple,
    /// Linux's `cookie_hash`: remote and local address, ports, and the counter.
    fn hash(&self, which: usize, local: SocketAddrV4, remote: SocketAddrV4, count: u32) -> u32 {
        let mut input = [0u8; 16];
        input[0..4].copy_from_slice(&remote.ip().octets());
        input[4..8].copy_from_slice(&local.ip().octets());
        input[8..10].copy_from_slice(&remote.port().to_be_bytes());
        input[10..12].copy_from_slice(&local.port().to_be_bytes());
        input[12..16].copy_from_slice(&count.to_le_bytes());
        let h = self.hash[which & 1].hash(&input);
        (h ^ (h >> 32)) as u32
    }
}

impl fmt::Debug for SynCookies {
    /// Never prints the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SynCookies").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const KEYS: [[u64; 2]; 2] = [
        [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908],
        [0x1716_1514_1312_1110, 0x1f1e_1d1c_1b1a_1918],
    ];

    fn addr(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    fn secs(s: u64) -> Instant {
        Instant::from_micros(s * 1_000_000)
    }

    const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), 443);
    const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 2), 40000);

    #[test]
    fn mss_rounds_down_to_the_table() {
        let cases = [
            (0, 536),
            (88, 536),
            (535, 536),
            (536, 536),
            (1299, 536),
            (1300, 1300),
            (1439, 1300),
            (1440, 1440),
            (1459, 1440),
            (1460, 1460),
            (9000, 1460),
            (u16::MAX, 1460),
        ];
        for (peer, encoded) in cases {
            assert_eq!(SynCookies::encoded_mss(peer), encoded, "peer MSS {peer}");
        }
    }

    #[test]
    fn stride_separates_indices() {
        let n = MSS_TABLE.len() as u32;
        for k in 1..n {
            for d in [k * MSS_STRIDE, (k * MSS_STRIDE).wrapping_neg()] {
                let d = d & COOKIE_MASK;
                assert!(
                    (1 << 20..=COOKIE_MASK - (1 << 20) + 1).contains(&d),
                    "{k}: {d:#x}"
                );
                assert!(!d.is_power_of_two(), "{k}: {d:#x}");
            }
        }
    }

    #[test]
    fn round_trip_every_mss_and_many_tuples() {
        let c = SynCookies::new(KEYS);
        let mut rng = fastrand::Rng::with_seed(0x5eed_c00c);
        for _ in 0..2000 {
            let local = addr(rng.u32(..).to_be_bytes(), rng.u16(..));
            let remote = addr(rng.u32(..).to_be_bytes(), rng.u16(..));
            let isn = SeqNumber(rng.u32(..));
            let now = Instant::from_micros(rng.u64(..1 << 50));
            for &mss in &MSS_TABLE {
                let cookie = c.generate(local, remote, isn, mss, now);
                assert_eq!(c.check(local, remote, isn, cookie, now), Some(mss));
            }
            // A peer MSS between entries comes back rounded down.
            let cookie = c.generate(local, remote, isn, 1450, now);
            assert_eq!(c.check(local, remote, isn, cookie, now), Some(1440));
        }
    }

    #[test]
    fn tampered_cookie_fails() {
        let c = SynCookies::new(KEYS);
        let isn = SeqNumber(0x1234_5678);
        let now = secs(1_000_000);
        for &mss in &MSS_TABLE {
            let cookie = c.generate(LOCAL, REMOTE, isn, mss, now);
            for bit in 0..32 {
                let bad = SeqNumber(cookie.0 ^ (1 << bit));
                assert_eq!(c.check(LOCAL, REMOTE, isn, bad, now), None, "bit {bit}");
            }
            for delta in [1usize, 2, 3, 4, 1000, 1 << 21] {
                assert_eq!(c.check(LOCAL, REMOTE, isn, cookie + delta, now), None);
                assert_eq!(c.check(LOCAL, REMOTE, isn, cookie - delta, now), None);
            }
        }
    }

    #[test]
    fn other_tuple_or_peer_isn_fails() {
        let c = SynCookies::new(KEYS);
        let isn = SeqNumber(0x1234_5678);
        let now = secs(1_000_000);
        let cookie = c.generate(LOCAL, REMOTE, isn, 1460, now);
        assert_eq!(c.check(LOCAL, REMOTE, isn, cookie, now), Some(1460));
        let tuples = [
            (addr([10, 99, 0, 3], 443), REMOTE),
            (addr([10, 99, 0, 1], 8443), REMOTE),
            (LOCAL, addr([10, 99, 0, 4], 40000)),
            (LOCAL, addr([10, 99, 0, 2], 40001)),
            (REMOTE, LOCAL),
        ];
        for (l, r) in tuples {
            assert_eq!(c.check(l, r, isn, cookie, now), None, "{l} <- {r}");
        }
        // A wrong peer ISN, even by one (the ACK's SEG.SEQ must be the SYN's + 1).
        for delta in [1usize, 2, 3, 4, 100, 1 << 20, i32::MAX as usize] {
            assert_eq!(c.check(LOCAL, REMOTE, isn + delta, cookie, now), None);
            assert_eq!(c.check(LOCAL, REMOTE, isn - delta, cookie, now), None);
        }
        // Other keys.
        let other = SynCookies::new([KEYS[0], [KEYS[1][0], KEYS[1][1] ^ 1]]);
        assert_eq!(other.check(LOCAL, REMOTE, isn, cookie, now), None);
    }

    #[test]
    fn age_limit() {
        let c = SynCookies::new(KEYS);
        let isn = SeqNumber(7);
        let period = PERIOD_SECS * 1_000_000;
        let start = 1000 * period; // the start of a period
        for made in [start, start + period / 2, start + period - 1] {
            let cookie = c.generate(LOCAL, REMOTE, isn, 1300, Instant::from_micros(made));
            // Valid through the end of the next period ...
            for at in [made, start + period, start + 2 * period - 1] {
                let now = Instant::from_micros(at);
                assert_eq!(c.check(LOCAL, REMOTE, isn, cookie, now), Some(1300));
            }
            // ... and not after: 2 periods old.
            for at in [start + 2 * period, start + 3 * period, start + 256 * period] {
                let now = Instant::from_micros(at);
                assert_eq!(c.check(LOCAL, REMOTE, isn, cookie, now), None);
            }
            // Nor before it was made (a clock that went back a period).
            let before = Instant::from_micros(start - 1);
            assert_eq!(c.check(LOCAL, REMOTE, isn, cookie, before), None);
        }
    }

    #[test]
    fn counter_wraps_in_the_cookie() {
        // The 8-bit counter field goes from 255 to 0 between these two periods.
        let c = SynCookies::new(KEYS);
        let made = secs(255 * PERIOD_SECS + 10);
        let later = secs(256 * PERIOD_SECS + 10);
        let isn = SeqNumber(99);
        let cookie = c.generate(LOCAL, REMOTE, isn, 1440, made);
        assert_eq!(c.check(LOCAL, REMOTE, isn, cookie, later), Some(1440));
        let too_late = secs(257 * PERIOD_SECS);
        assert_eq!(c.check(LOCAL, REMOTE, isn, cookie, too_late), None);
    }

    #[test]
    fn sequence_wrap_around() {
        let c = SynCookies::new(KEYS);
        let now = secs(12345);
        for isn in [u32::MAX, u32::MAX - 1, u32::MAX - 1460, 0, 1, 1 << 31] {
            let isn = SeqNumber(isn);
            for &mss in &MSS_TABLE {
                let cookie = c.generate(LOCAL, REMOTE, isn, mss, now);
                // What the engine does with a handshake ACK: SEG.SEQ - 1, SEG.ACK - 1.
                let (seg_seq, seg_ack) = (isn + 1, cookie + 1);
                let got = c.check(LOCAL, REMOTE, seg_seq - 1, seg_ack - 1, now);
                assert_eq!(got, Some(mss), "isn {isn}");
            }
        }
    }

    #[test]
    fn timestamp_options_round_trip() {
        let c = SynCookies::new(KEYS);
        let scales = (0..=14).map(Some).chain([None]);
        let nows = [0, 1, 5, 15, 63, 64, 100, 1 << 20, u32::MAX - 1, u32::MAX];
        for ws in scales {
            for sack in [false, true] {
                for now_ts in nows {
                    let ts = c.encode_timestamp(now_ts, ws, sack);
                    assert_eq!(SynCookies::decode_timestamp(ts), (ws, sack));
                    // Not ahead of now_ts, and less than 64 ticks behind (mod 2^32).
                    assert!(now_ts.wrapping_sub(ts) < 64, "{now_ts} {ts}");
                    assert_eq!(ts & TS_ECN, 0);
                }
            }
        }
        // Shifts above 14 are clamped (RFC 7323 §2.3), never mistaken for "none".
        for ws in [15u8, 16, 255] {
            let ts = c.encode_timestamp(1000, Some(ws), true);
            assert_eq!(SynCookies::decode_timestamp(ts), (Some(14), true));
        }
        // Exactly as Linux: 1000 = 0b1111101000, low 6 bits replaced.
        assert_eq!(c.encode_timestamp(1000, Some(7), true), 960 | 0x17);
        assert_eq!(c.encode_timestamp(1000, None, true), 960 | 0x1f);
        // 64 | 0x1f = 95 would be ahead of 70: moved back by 64, to 31.
        assert_eq!(c.encode_timestamp(70, None, true), 0x1f);
        assert_eq!(c.encode_timestamp(3, Some(2), false), 2);
        // 0 | 2 would be ahead of 1: moved back by 64, wrapping below zero.
        assert_eq!(c.encode_timestamp(1, Some(2), false), 2u32.wrapping_sub(64));
    }

    /// Random cookies essentially never validate. Per try, the check needs the top 8
    /// bits to name the current or the previous period (2 / 256) and the low 24 bits
    /// to be `hash2 + index * MSS_STRIDE` for one of 4 indices (4 / 2^24): about 2^-29,
    /// so 1M tries expect 0.002 false positives. Even ignoring the period check,
    /// the 24-bit hash2 check alone bounds it by 4 / 2^24 per try, 0.24 expected in
    /// 1M, and 5 or more happen with Poisson probability below 10^-5.
    #[test]
    fn random_cookies_do_not_validate() {
        let c = SynCookies::new(KEYS);
        let mut rng = fastrand::Rng::with_seed(0xdead_beef_c00c_1e55);
        let now = secs(1_000_000);
        let mut passed = 0;
        for i in 0..1_000_000u32 {
            // Half with the real tuple and a random ISN, half with random tuples.
            let (l, r) = if i % 2 == 0 {
                (LOCAL, REMOTE)
            } else {
                (
                    addr(rng.u32(..).to_be_bytes(), rng.u16(..)),
                    addr(rng.u32(..).to_be_bytes(), rng.u16(..)),
                )
            };
            let isn = SeqNumber(rng.u32(..));
            let cookie = SeqNumber(rng.u32(..));
            if c.check(l, r, isn, cookie, now).is_some() {
                passed += 1;
            }
        }
        assert!(passed < 5, "{passed} random cookies validated");
    }

    #[test]
    fn random_keys_differ() {
        let (a, b) = (SynCookies::random(), SynCookies::random());
        assert_ne!(a.hash[0].keys(), b.hash[0].keys());
        assert_ne!(a.hash[0].keys(), a.hash[1].keys());
        let now = secs(1);
        let cookie = a.generate(LOCAL, REMOTE, SeqNumber(1), 1460, now);
        assert_eq!(
            a.check(LOCAL, REMOTE, SeqNumber(1), cookie, now),
            Some(1460)
        );
        assert_eq!(b.check(LOCAL, REMOTE, SeqNumber(1), cookie, now), None);
    }

    #[test]
    fn debug_hides_the_keys() {
        let s = format!("{:?}", SynCookies::new(KEYS));
        assert!(!s.contains("k0") && !s.contains(&KEYS[0][0].to_string()));
    }
}
