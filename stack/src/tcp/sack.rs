//! The sender's SACK scoreboard (RFC 6675 §3): which bytes above SND.UNA
//! the peer reported holding, so recovery retransmits only the holes and a
//! go-back after a timeout skips what already arrived.
//!
//! Fixed-size: at most [`MAX_BLOCKS`] disjoint ranges, kept sorted. When a
//! new block would exceed that, the highest range is forgotten, which only
//! costs a needless retransmission later.

use crate::wire::SeqNumber;

/// Ranges remembered at most.
pub const MAX_BLOCKS: usize = 16;

#[derive(Debug, Clone)]
pub struct Scoreboard {
    /// Sorted, disjoint, non-adjacent [left, right) ranges.
    ranges: [(SeqNumber, SeqNumber); MAX_BLOCKS],
    len: usize,
}

impl Default for Scoreboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Scoreboard {
    pub fn new() -> Self {
        Scoreboard {
            ranges: [(SeqNumber(0), SeqNumber(0)); MAX_BLOCKS],
            len: 0,
        }
    }

    fn blocks(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.ranges[..self.len]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Records that [left, right) was SACKed, merging overlaps.
    pub fn add(&mut self, left: SeqNumber, right: SeqNumber) {
        if left.distance_from(right) >= 0 {
            return;
        }
        let (mut l, mut r) = (left, right);
        // Merge every range that overlaps or touches [l, r).
        let mut out = [(SeqNumber(0), SeqNumber(0)); MAX_BLOCKS + 1];
        let mut n = 0;
        let mut placed = false;
        for &(a, b) in self.blocks() {
            if b < l {
                out[n] = (a, b);
                n += 1;
            } else if r < a {
                if !placed {
                    out[n] = (l, r);
                    n += 1;
                    placed = true;
                }
                out[n] = (a, b);
                n += 1;
            } else {
                l = l.min(a);
                r = r.max(b);
            }
        }
        if !placed {
            out[n] = (l, r);
            n += 1;
        }
        self.len = n.min(MAX_BLOCKS);
        self.ranges[..self.len].copy_from_slice(&out[..self.len]);
    }

    /// Forgets everything below `una` (it was cumulatively acknowledged).
    pub fn advance(&mut self, una: SeqNumber) {
        let mut n = 0;
        for i in 0..self.len {
            let (a, b) = self.ranges[i];
            if b <= una {
                continue;
            }
            self.ranges[n] = (a.max(una), b);
            n += 1;
        }
        self.len = n;
    }

    /// Bytes SACKed in total.
    pub fn sacked_bytes(&self) -> usize {
        self.blocks()
            .iter()
            .map(|&(a, b)| b.distance_from(a).max(0) as usize)
            .sum()
    }

    /// The end of the highest SACKed range.
    pub fn highest(&self) -> Option<SeqNumber> {
        self.blocks().last().map(|&(_, b)| b)
    }

    /// If `seq` lies in a SACKed range, that range's end.
    pub fn sacked_end(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.blocks()
            .iter()
            .find(|&&(a, b)| a <= seq && seq < b)
            .map(|&(_, b)| b)
    }

    /// The first byte at or after `from` that is not SACKed.
    pub fn next_unsacked(&self, from: SeqNumber) -> Option<SeqNumber> {
        let mut seq = from;
        for &(a, b) in self.blocks() {
            if a <= seq && seq < b {
                seq = b;
            }
        }
        Some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn merges_sorts_and_advances() {
        let mut b = Scoreboard::new();
        b.add(s(300), s(400));
        b.add(s(100), s(200));
        b.add(s(200), s(250)); // touches the first
        assert_eq!(b.blocks(), &[(s(100), s(250)), (s(300), s(400))]);
        assert_eq!(b.sacked_bytes(), 250);
        assert_eq!(b.highest(), Some(s(400)));
        assert_eq!(b.sacked_end(s(120)), Some(s(250)));
        assert_eq!(b.sacked_end(s(260)), None);
        assert_eq!(b.next_unsacked(s(100)), Some(s(250)));
        assert_eq!(b.next_unsacked(s(50)), Some(s(50)));
        b.add(s(240), s(310)); // bridges both
        assert_eq!(b.blocks(), &[(s(100), s(400))]);
        b.advance(s(150));
        assert_eq!(b.blocks(), &[(s(150), s(400))]);
        b.advance(s(400));
        assert!(b.is_empty());
    }

    #[test]
    fn works_across_the_sequence_wrap() {
        let mut b = Scoreboard::new();
        let base = s(u32::MAX - 100);
        b.add(base + 50, base + 150);
        b.add(base + 200, base + 300);
        assert_eq!(b.sacked_bytes(), 200);
        assert_eq!(b.next_unsacked(base + 60), Some(base + 150));
        b.advance(base + 250);
        assert_eq!(b.sacked_bytes(), 50);
    }

    #[test]
    fn stays_bounded() {
        let mut b = Scoreboard::new();
        for i in 0..100u32 {
            b.add(s(i * 10), s(i * 10 + 5));
            assert!(b.len <= MAX_BLOCKS);
        }
        b.add(s(10), s(5)); // empty or inverted: ignored
        assert_eq!(b.len, MAX_BLOCKS);
    }
}
