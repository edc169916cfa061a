//! Packetization-layer path MTU discovery (RFC 8899 §5, RFC 4821 §7): the
//! search for the largest segment a path carries when no ICMP message says.
//!
//! A connection runs a search after a suspected black hole dropped its
//! segment size to one every path carries (RFC 4821 §7.4), or after an
//! ICMP "fragmentation needed" lowered it (the path may grow again, RFC
//! 8899 §5.1.1). The search sends single probe segments, larger than the
//! size in use, among the data: an acknowledged probe raises the size, a
//! size whose probe is lost [`MAX_PROBES`] times in a row bounds the search
//! from above, and the search halves the range each time until the size
//! that works and the size that fails are within [`SEARCH_DONE`] (or the
//! full size works). Losing a probe costs its retransmission only (RFC
//! 8899 §3 item 7: it is not a congestion signal), so, unlike trying the
//! full size again, probing never stalls the connection. An ICMP message
//! about a probe bounds the search at once. When the search is done, it
//! forgets what failed and searches again up to the full size every
//! [`RAISE_INTERVAL`] (RFC 8899 PMTU_RAISE_TIMER), as the path may have
//! changed.
//!
//! Sizes are segment payloads without SACK blocks, like the connection's
//! `send_mss`.

use std::time::Duration;

use crate::{time::Instant, wire::SeqNumber};

/// RFC 8899 §5.1.2 MAX_PROBES: a size fails after this many of its probes
/// were lost in a row (one loss may be congestion, not size).
pub const MAX_PROBES: u32 = 3;
/// The search stops when the largest size known to work and the smallest
/// known to fail are this close (Linux's `tcp_probe_threshold`).
pub const SEARCH_DONE: usize = 8;
/// How long a finished search waits before it tries larger sizes again
/// (RFC 8899 §5.1.1 PMTU_RAISE_TIMER; Linux's `tcp_probe_interval`).
pub const RAISE_INTERVAL: Duration = Duration::from_secs(600);

/// A probe on its way: the sequence range it covers and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub start: SeqNumber,
    pub end: SeqNumber,
    pub size: usize,
}

/// The search for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathMtuSearch {
    /// The size the path carries (in use).
    low: usize,
    /// The smallest size known to fail: by failed probes, or above what
    /// an ICMP message allowed.
    too_big: Option<usize>,
    /// The size the connection could use on a perfect path (the peer's MSS
    /// and our interface's MTU allow it).
    full: usize,
    probe: Option<Probe>,
    /// Probes of the next size lost in a row.
    lost_in_row: u32,
    /// A finished search starts again then.
    raise_at: Option<Instant>,
}

impl PathMtuSearch {
    /// A search for sizes in `(low, full]`, starting now. `low` is in use
    /// and believed to get through.
    pub fn start(low: usize, full: usize) -> Self {
        PathMtuSearch {
            low,
            too_big: None,
            full: full.max(low),
            probe: None,
            lost_in_row: 0,
            raise_at: None,
        }
    }

    /// A search that begins at `now +` [`RAISE_INTERVAL`]: after an ICMP
    /// message set the size, larger ones are tried only once it may be out
    /// of date.
    pub fn later(low: usize, full: usize, now: Instant) -> Self {
        PathMtuSearch {
            too_big: Some(low + 1),
            raise_at: Some(now + RAISE_INTERVAL),
            ..Self::start(low, full)
        }
    }

    /// The size on a perfect path, where the search may reach.
    pub fn full(&self) -> usize {
        self.full
    }

    /// The probe on its way, if one is.
    pub fn probe(&self) -> Option<Probe> {
        self.probe
    }

    /// The size of the probe to send now, if one is due: none is out and
    /// the search is not done (or its raise timer fired).
    pub fn probe_size(&mut self, now: Instant) -> Option<usize> {
        if self.probe.is_some() {
            return None;
        }
        if self.raise_at.is_some_and(|t| now >= t) {
            self.raise_at = None;
            self.too_big = None;
        }
        let next = match self.too_big {
            // Nothing failed yet: the midpoint (after a black hole at 1024
            // of 1448, 1236), or the full size itself once it is close.
            None if self.low >= self.full => None,
            None if self.full - self.low <= SEARCH_DONE => Some(self.full),
            None => Some(self.midpoint(self.full)),
            Some(fails) if fails <= self.low + SEARCH_DONE => None,
            Some(fails) => Some(self.midpoint(fails - 1)),
        };
        if next.is_none() && self.raise_at.is_none() {
            self.raise_at = Some(now + RAISE_INTERVAL);
        }
        next
    }

    /// `size` and everything above it is known to fail.
    fn fails_from(&mut self, size: usize) {
        self.too_big = Some(self.too_big.map_or(size, |t| t.min(size)));
    }

    /// Halfway from the size in use to `high`, rounded up.
    fn midpoint(&self, high: usize) -> usize {
        self.low + (high - self.low).div_ceil(2)
    }

    /// A probe of `size` went out, covering `[start, end)`.
    pub fn probe_sent(&mut self, start: SeqNumber, end: SeqNumber, size: usize) {
        self.probe = Some(Probe { start, end, size });
    }

    /// The probe arrived (acknowledged or SACKed): its size is the one to
    /// use now.
    pub fn probe_acked(&mut self) -> usize {
        if let Some(p) = self.probe.take() {
            self.low = self.low.max(p.size);
            self.too_big = self.too_big.filter(|&t| t > self.low);
            self.lost_in_row = 0;
        }
        self.low
    }

    /// The probe was lost (its data is being sent again in smaller
    /// segments). After [`MAX_PROBES`] such losses its size fails.
    pub fn probe_lost(&mut self) {
        if let Some(p) = self.probe.take() {
            self.lost_in_row += 1;
            if self.lost_in_row >= MAX_PROBES {
                self.lost_in_row = 0;
                self.fails_from(p.size);
            }
        }
    }

    /// An ICMP message says the path carries at most `size` (RFC 8899
    /// §4.6.2: a PTB below the size in use lowers it). A probe larger than
    /// that is forgotten: it was lost, and its size is known to fail.
    pub fn cap(&mut self, size: usize, now: Instant) {
        self.fails_from(size + 1);
        self.low = self.low.min(size);
        if self.probe.is_some_and(|p| p.size > size) {
            self.probe = None;
        }
        self.lost_in_row = 0;
        self.raise_at = Some(now + RAISE_INTERVAL);
    }

    /// An ICMP message quoting the probe at `seq` says the path carries at
    /// most `size`, more than the size in use (RFC 8899 §4.6.2): sizes
    /// above it fail. True when it was about the probe.
    pub fn too_big_above(&mut self, seq: SeqNumber, size: usize) -> bool {
        let about_probe = self
            .probe
            .is_some_and(|p| p.start <= seq && seq < p.end && size < p.size);
        if about_probe {
            self.fails_from(size + 1);
        }
        about_probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::ZERO;

    /// Runs a search against a path that carries `limit`, each probe lost
    /// `flaky` times before it gets through if it fits; returns the sizes
    /// probed and the size found.
    fn search(limit: usize, flaky: u32) -> (Vec<usize>, usize) {
        let mut s = PathMtuSearch::start(1024, 1448);
        let mut probed = Vec::new();
        let mut seq = SeqNumber(0);
        let mut lost_so_far = 0;
        while let Some(size) = s.probe_size(T0) {
            if probed.last() != Some(&size) {
                lost_so_far = 0;
            }
            probed.push(size);
            s.probe_sent(seq, seq + size, size);
            seq += size;
            if size <= limit && lost_so_far == flaky {
                lost_so_far = 0;
                s.probe_acked();
            } else {
                lost_so_far += 1;
                s.probe_lost();
            }
            assert!(probed.len() < 100, "the search ends: {probed:?}");
        }
        (probed, s.low)
    }

    #[test]
    fn the_search_halves_the_range_and_ends_within_eight_bytes_of_the_path() {
        // A 1400-byte path MTU with timestamps: 1348 bytes of payload.
        let (probed, found) = search(1348, 0);
        assert_eq!(found, 1348);
        assert_eq!(probed[..2], [1236, 1342]);
        // Every size too big is lost MAX_PROBES times before it fails.
        let too_big = probed.iter().filter(|&&s| s > 1348).count();
        assert_eq!(too_big % MAX_PROBES as usize, 0, "{probed:?}");
    }

    #[test]
    fn a_path_that_carries_everything_is_found_at_the_full_size() {
        let (probed, found) = search(1448, 0);
        assert_eq!(found, 1448);
        assert!(probed.len() <= 7, "{probed:?}");
    }

    #[test]
    fn one_lost_probe_is_not_a_failed_size() {
        // Every probe is lost once (congestion), then gets through: the
        // search still ends at the path's size.
        let (_, found) = search(1348, 1);
        assert_eq!(found, 1348);
    }

    #[test]
    fn a_path_that_carries_nothing_more_keeps_the_fallback() {
        let (probed, found) = search(1024, 0);
        assert_eq!(found, 1024);
        assert!(probed.iter().all(|&s| s > 1024));
    }

    #[test]
    fn a_finished_search_starts_again_after_the_raise_interval() {
        let mut s = PathMtuSearch::start(1348, 1352);
        for _ in 0..MAX_PROBES {
            assert_eq!(s.probe_size(T0), Some(1352), "close: the full size");
            s.probe_sent(SeqNumber(0), SeqNumber(1352), 1352);
            s.probe_lost();
        }
        assert_eq!(s.probe_size(T0), None, "done: 1352 fails");
        assert_eq!(s.raise_at, Some(T0 + RAISE_INTERVAL));
        let later = T0 + RAISE_INTERVAL;
        assert_eq!(s.probe_size(later), Some(1352));
    }

    #[test]
    fn an_icmp_message_caps_the_search_and_forgets_a_larger_probe() {
        let mut s = PathMtuSearch::start(1024, 1448);
        let size = s.probe_size(T0).unwrap();
        s.probe_sent(SeqNumber(0), SeqNumber(size as u32), size);
        s.cap(1100, T0);
        assert_eq!(s.probe(), None);
        assert_eq!(s.probe_size(T0), Some(1062));
        s.probe_sent(SeqNumber(0), SeqNumber(1062), 1062);
        // An ICMP below the size in use lowers it, and waits before any
        // new search.
        s.probe_lost();
        s.cap(900, T0);
        assert_eq!(s.low, 900);
        assert_eq!(s.probe_size(T0), None);
        assert_eq!(s.probe_size(T0 + RAISE_INTERVAL), Some(1174));
    }

    #[test]
    fn an_icmp_message_about_a_probe_bounds_the_search() {
        let mut s = PathMtuSearch::start(1024, 1448);
        assert_eq!(s.probe_size(T0), Some(1236));
        s.probe_sent(SeqNumber(5000), SeqNumber(6236), 1236);
        assert!(!s.too_big_above(SeqNumber(4000), 1100), "not the probe");
        assert!(!s.too_big_above(SeqNumber(5000), 1300), "it fits");
        assert!(s.too_big_above(SeqNumber(5000), 1100));
        // The probe is lost (resent in smaller segments); the next one
        // stays below 1101.
        s.probe_lost();
        assert_eq!(s.low, 1024);
        assert_eq!(s.probe_size(T0), Some(1062));
    }

    #[test]
    fn a_search_after_an_icmp_message_waits_for_the_raise_timer() {
        let mut s = PathMtuSearch::later(1300, 1448, T0);
        assert_eq!(s.probe_size(T0), None);
        assert_eq!(s.probe_size(T0 + RAISE_INTERVAL), Some(1374));
    }
}
