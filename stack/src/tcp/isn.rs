//! Initial sequence numbers (RFC 6528, RFC 9293 §3.4.1) and the secret keys
//! behind them.
//!
//! RFC 6528 §3: `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`,
//! where `M` is a timer ticking every 4 microseconds and `F` a keyed pseudo-random
//! function. Here `F` is SipHash-2-4 under a 128-bit key, so an off-path attacker
//! cannot predict the ISN of a connection (RFC 6528 §2), while one 4-tuple gets
//! monotonically increasing ISNs across incarnations (RFC 9293 §3.4.1), which keeps
//! old duplicates of a previous incarnation out of the new one's window.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};

use siphasher::sip::SipHasher24;

use crate::time::Instant;
use crate::wire::SeqNumber;

/// Microseconds per tick of the RFC 6528 §3 timer `M` (RFC 9293 §3.4.1: "about 4 µs").
pub const ISN_TICK_MICROS: u64 = 4;

/// Generates initial sequence numbers as RFC 6528 §3 describes.
///
/// Cheap to copy and to call: one SipHash-2-4 over 12 bytes on the stack per ISN.
#[derive(Clone, Copy)]
pub struct IsnGenerator {
    prf: SipHasher24,
}

impl IsnGenerator {
    /// A generator under a fixed `key`: deterministic, for tests and simulations.
    pub fn new(key: [u64; 2]) -> Self {
        IsnGenerator {
            prf: SipHasher24::new_with_keys(key[0], key[1]),
        }
    }

    /// A generator under a fresh secret key from the OS (see [`random_key`]);
    /// RFC 6528 §3 asks for a key that is hard to guess.
    pub fn random() -> Self {
        Self::new(random_key())
    }

    /// The ISN for a connection from `local` to `remote` started at `now`
    /// (RFC 6528 §3): `M + F(...)`, where `M` counts 4 µs ticks of `now` modulo 2^32
    /// and `F` is the keyed hash of the 4-tuple.
    pub fn isn(&self, local: SocketAddrV4, remote: SocketAddrV4, now: Instant) -> SeqNumber {
        let m = (now.total_micros() / ISN_TICK_MICROS) as u32;
        SeqNumber(m.wrapping_add(self.f(local, remote)))
    }

    /// `F(localip, localport, remoteip, remoteport, secretkey)`, folded to 32 bits.
    fn f(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        let mut tuple = [0u8; 12];
        tuple[0..4].copy_from_slice(&local.ip().octets());
        tuple[4..6].copy_from_slice(&local.port().to_be_bytes());
        tuple[6..10].copy_from_slice(&remote.ip().octets());
        tuple[10..12].copy_from_slice(&remote.port().to_be_bytes());
        let h = self.prf.hash(&tuple);
        (h ^ (h >> 32)) as u32
    }
}

impl fmt::Debug for IsnGenerator {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsnGenerator").finish_non_exhaustive()
    }
}

/// A random `u64` for secret keys (ISNs, SYN cookies, hash tables), from the same
/// source as [`IsnGenerator::random`]: `/dev/urandom`, else the fallback described
/// at [`random_key`].
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// A fresh 128-bit key: 16 bytes read from `/dev/urandom`.
///
/// If that fails (no `/dev` in a sandbox, say), the bytes come from std's
/// [`RandomState`]: std seeds its per-thread SipHash keys from the OS once and
/// steps them for every new `RandomState`, so hashing a counter and the wall clock
/// under a new one each time still gives unpredictable, distinct keys.
pub fn random_key() -> [u64; 2] {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    let mut k0 = [0u8; 8];
    let mut k1 = [0u8; 8];
    k0.copy_from_slice(&bytes[..8]);
    k1.copy_from_slice(&bytes[8..]);
    [u64::from_le_bytes(k0), u64::from_le_bytes(k1)]
}

/// Fills `buf` from `/dev/urandom`, or from the [`RandomState`] fallback.
fn fill_random(buf: &mut [u8]) {
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
    if read.is_err() {
        fill_fallback(buf);
    }
}

/// The fallback of [`random_key`]: one fresh [`RandomState`] per 8 bytes.
fn fill_fallback(buf: &mut [u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for chunk in buf.chunks_mut(8) {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.write_u128(wall);
        let word = h.finish().to_le_bytes();
        let n = chunk.len();
        chunk.copy_from_slice(&word[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    const KEY: [u64; 2] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

    #[test]
    fn same_tuple_same_time_same_isn() {
        let g = IsnGenerator::new(KEY);
        let (l, r) = (addr([10, 99, 0, 1], 443), addr([10, 99, 0, 2], 40000));
        let now = Instant::from_micros(123_456_789);
        assert_eq!(g.isn(l, r, now), g.isn(l, r, now));
        assert_eq!(g.isn(l, r, now), IsnGenerator::new(KEY).isn(l, r, now));
    }

    #[test]
    fn advances_one_per_four_micros() {
        let g = IsnGenerator::new(KEY);
        let (l, r) = (addr([10, 99, 0, 1], 80), addr([10, 99, 0, 2], 5555));
        let t0 = Instant::from_micros(4_000_000);
        let base = g.isn(l, r, t0);
        for dt in 0..4 {
            assert_eq!(g.isn(l, r, Instant::from_micros(4_000_000 + dt)), base);
        }
        assert_eq!(g.isn(l, r, Instant::from_micros(4_000_004)), base + 1);
        assert_eq!(g.isn(l, r, Instant::from_micros(4_000_400)), base + 100);
        // One second is 250 000 ticks.
        assert_eq!(g.isn(l, r, Instant::from_micros(5_000_000)), base + 250_000);
        // M wraps after 2^32 ticks (about 4.77 hours) and F stays: same ISN again.
        let wrap = Instant::from_micros(4_000_000 + (1u64 << 32) * ISN_TICK_MICROS);
        assert_eq!(g.isn(l, r, wrap), base);
    }

    #[test]
    fn different_tuples_or_keys_give_unrelated_isns() {
        let g = IsnGenerator::new(KEY);
        let now = Instant::from_micros(42);
        let l = addr([10, 99, 0, 1], 443);
        let r = addr([10, 99, 0, 2], 40000);
        let base = g.isn(l, r, now);
        let variants = [
            (addr([10, 99, 0, 3], 443), r),
            (addr([10, 99, 0, 1], 444), r),
            (l, addr([10, 99, 0, 4], 40000)),
            (l, addr([10, 99, 0, 2], 40001)),
            (r, l),
        ];
        for (vl, vr) in variants {
            let d = g.isn(vl, vr, now).distance_from(base).unsigned_abs();
            // Unrelated: not a small step from the base (fails with probability ~2^-16).
            assert!(d > 1 << 16, "{vl} -> {vr}: distance {d}");
        }
        let other = IsnGenerator::new([KEY[0], KEY[1] ^ 1]);
        let d = other.isn(l, r, now).distance_from(base).unsigned_abs();
        assert!(d > 1 << 16, "other key: distance {d}");

        // Over many ports the ISNs look uniform: no collisions among 1000.
        let mut seen: Vec<u32> = (0..1000u16)
            .map(|p| g.isn(l, addr([10, 99, 0, 2], 30000 + p), now).0)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 1000);
    }

    #[test]
    fn random_generators_get_different_keys() {
        let a = IsnGenerator::random();
        let b = IsnGenerator::random();
        assert_ne!(a.prf.keys(), b.prf.keys());
        let (l, r) = (addr([10, 99, 0, 1], 443), addr([10, 99, 0, 2], 40000));
        assert_ne!(a.isn(l, r, Instant::ZERO), b.isn(l, r, Instant::ZERO));
        assert_ne!(random_u64(), random_u64());
        assert_ne!(random_key(), random_key());
    }

    #[test]
    fn fallback_gives_distinct_bytes() {
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        fill_fallback(&mut a);
        fill_fallback(&mut b);
        assert_ne!(a, b);
        assert_ne!(a[..8], a[8..]);
        let mut odd = [0u8; 5];
        fill_fallback(&mut odd);
    }

    #[test]
    fn debug_hides_the_key() {
        let s = format!("{:?}", IsnGenerator::new(KEY));
        assert!(!s.contains(&KEY[0].to_string()));
        assert!(!s.contains("k0"));
    }
}
