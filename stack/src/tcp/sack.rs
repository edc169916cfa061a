//! The sender's SACK scoreboard (RFC 6675 §3): which bytes above SND.UNA
//! the peer reported holding, so recovery retransmits only the holes and a
//! go-back after a timeout skips what already arrived; and the log of what
//! recovery retransmitted, so that `pipe` counts a retransmission in flight
//! once and a retransmission lost again is noticed without a timeout.
//!
//! Fixed-size: at most [`MAX_BLOCKS`] disjoint ranges, kept sorted. When a
//! new block would exceed that, the highest range is forgotten, which only
//! costs a needless retransmission later.

use crate::wire::SeqNumber;

/// Ranges remembered at most.
pub const MAX_BLOCKS: usize = 16;

/// RFC 6675's DupThresh: how many segments (or discontiguous SACKed
/// ranges) above a hole make it lost.
pub const DUP_THRESH: usize = 3;

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

    /// The start of the first SACKed range above `seq`: where a hole that
    /// begins at `seq` ends.
    pub fn next_sacked(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.blocks().iter().map(|&(a, _)| a).find(|&a| a > seq)
    }

    /// SACKed bytes within [from, to).
    pub fn sacked_in(&self, from: SeqNumber, to: SeqNumber) -> usize {
        self.blocks()
            .iter()
            .map(|&(a, b)| b.min(to).distance_from(a.max(from)).max(0) as usize)
            .sum()
    }

    /// RFC 6675 §4 IsLost for holes: every unSACKed byte below the returned
    /// sequence has [`DUP_THRESH`] discontiguous SACKed ranges, or more than
    /// (DupThresh - 1) * SMSS SACKed bytes, above it. `None` while nothing
    /// is lost yet.
    pub fn lost_below(&self, smss: usize) -> Option<SeqNumber> {
        let mut bytes = 0usize;
        for (count, &(a, b)) in self.blocks().iter().rev().enumerate() {
            bytes += b.distance_from(a).max(0) as usize;
            if count + 1 >= DUP_THRESH || bytes > (DUP_THRESH - 1) * smss {
                return Some(a);
            }
        }
        None
    }
}

/// What recovery retransmitted, as sorted disjoint ranges, each with the
/// highest sequence sent (SND.MAX) when it last went out.
///
/// RFC 6675's pipe counts a retransmitted byte once more while it is in
/// flight; and a retransmission that is itself lost would hold `pipe` up
/// until the RTO. The mark finds it the way Linux's `tcp_mark_lost_retrans`
/// and RACK (RFC 8985 §6.2) reason: data first sent after the
/// retransmission has been SACKed beyond DupThresh while the retransmitted
/// bytes have not, so they are lost again and may go once more.
#[derive(Debug, Clone)]
pub struct RetransmitLog {
    /// Sorted, disjoint (start, end, snd_max when sent).
    ranges: [(SeqNumber, SeqNumber, SeqNumber); MAX_BLOCKS],
    len: usize,
}

impl Default for RetransmitLog {
    fn default() -> Self {
        Self::new()
    }
}

impl RetransmitLog {
    pub fn new() -> Self {
        RetransmitLog {
            ranges: [(SeqNumber(0), SeqNumber(0), SeqNumber(0)); MAX_BLOCKS],
            len: 0,
        }
    }

    fn entries(&self) -> &[(SeqNumber, SeqNumber, SeqNumber)] {
        &self.ranges[..self.len]
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// [start, end) was retransmitted while SND.MAX was `mark`. Merges with
    /// what it touches; when full, merges the new range into its neighbour
    /// (the gap then counts as retransmitted, which at worst delays its
    /// repair to the lost-again check or the RTO, and never repeats a send).
    pub fn record(&mut self, start: SeqNumber, end: SeqNumber, mark: SeqNumber) {
        if end.distance_from(start) <= 0 {
            return;
        }
        let (mut l, mut r, mut m) = (start, end, mark);
        let mut out = [(SeqNumber(0), SeqNumber(0), SeqNumber(0)); MAX_BLOCKS + 1];
        let mut n = 0;
        let mut placed = false;
        for &(a, b, k) in self.entries() {
            if b < l {
                out[n] = (a, b, k);
                n += 1;
            } else if r < a {
                if !placed {
                    out[n] = (l, r, m);
                    n += 1;
                    placed = true;
                }
                out[n] = (a, b, k);
                n += 1;
            } else {
                l = l.min(a);
                r = r.max(b);
                m = m.max(k);
            }
        }
        if !placed {
            out[n] = (l, r, m);
            n += 1;
        }
        if n > MAX_BLOCKS {
            // Merge the closest neighbours.
            let i = (0..n - 1)
                .min_by_key(|&i| out[i + 1].0.distance_from(out[i].1))
                .unwrap_or(0);
            out[i] = (out[i].0, out[i + 1].1, out[i].2.max(out[i + 1].2));
            out.copy_within(i + 2..n, i + 1);
            n -= 1;
        }
        self.len = n;
        self.ranges[..n].copy_from_slice(&out[..n]);
    }

    /// Forgets everything below `una`.
    pub fn advance(&mut self, una: SeqNumber) {
        let mut n = 0;
        for i in 0..self.len {
            let (a, b, m) = self.ranges[i];
            if b <= una {
                continue;
            }
            self.ranges[n] = (a.max(una), b, m);
            n += 1;
        }
        self.len = n;
    }

    /// If `seq` was retransmitted, the end of that range.
    pub fn covering(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.entries()
            .iter()
            .find(|&&(a, b, _)| a <= seq && seq < b)
            .map(|&(_, b, _)| b)
    }

    /// The start of the first retransmitted range above `seq`.
    pub fn next_start(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.entries().iter().map(|&(a, _, _)| a).find(|&a| a > seq)
    }

    /// Retransmitted bytes not yet SACKed: RFC 6675's second term of pipe.
    pub fn unsacked_bytes(&self, board: &Scoreboard) -> usize {
        self.entries()
            .iter()
            .map(|&(a, b, _)| (b.distance_from(a).max(0) as usize) - board.sacked_in(a, b))
            .sum()
    }

    /// Drops the ranges lost again: sent before `lost_below` (the scoreboard's
    /// IsLost edge, so DupThresh worth of later data was SACKed) and not
    /// wholly SACKed since. Returns how many ranges went.
    pub fn forget_lost(&mut self, board: &Scoreboard, lost_below: SeqNumber) -> usize {
        let before = self.len;
        let mut n = 0;
        for i in 0..self.len {
            let (a, b, m) = self.ranges[i];
            let whole = b.distance_from(a).max(0) as usize;
            if m <= lost_below && board.sacked_in(a, b) < whole {
                continue;
            }
            self.ranges[n] = (a, b, m);
            n += 1;
        }
        self.len = n;
        before - n
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
    fn is_lost_follows_rfc6675() {
        let mss = 100;
        let mut b = Scoreboard::new();
        assert_eq!(b.lost_below(mss), None);
        // 200 bytes SACKed above 0: not more than (3 - 1) * SMSS.
        b.add(s(100), s(300));
        assert_eq!(b.lost_below(mss), None);
        // One more byte: the hole below 100 is lost.
        b.add(s(300), s(301));
        assert_eq!(b.lost_below(mss), Some(s(100)));
        // Three discontiguous small ranges count too, whatever their size.
        let mut c = Scoreboard::new();
        c.add(s(100), s(110));
        c.add(s(200), s(210));
        assert_eq!(c.lost_below(mss), None);
        c.add(s(300), s(310));
        assert_eq!(c.lost_below(mss), Some(s(100)));
        // A hole between the top ranges is not lost yet; the lowest is.
        c.add(s(400), s(410));
        assert_eq!(c.lost_below(mss), Some(s(200)));
        assert_eq!(c.sacked_in(s(105), s(205)), 10);
        assert_eq!(c.next_sacked(s(150)), Some(s(200)));
        assert_eq!(c.next_sacked(s(400)), None);
    }

    #[test]
    fn retransmit_log_counts_and_forgets_lost_retransmissions() {
        let mut board = Scoreboard::new();
        let mut log = RetransmitLog::new();
        log.record(s(0), s(100), s(1000));
        log.record(s(100), s(200), s(1000));
        log.record(s(300), s(400), s(1200));
        assert_eq!(
            log.entries(),
            &[(s(0), s(200), s(1000)), (s(300), s(400), s(1200))]
        );
        assert_eq!(log.covering(s(150)), Some(s(200)));
        assert_eq!(log.covering(s(250)), None);
        assert_eq!(log.next_start(s(250)), Some(s(300)));
        board.add(s(300), s(350));
        assert_eq!(log.unsacked_bytes(&board), 250);
        // Data sent after the first retransmission is SACKed past DupThresh:
        // the first is lost again, the second (sent later) is not.
        assert_eq!(log.forget_lost(&board, s(1100)), 1);
        assert_eq!(log.entries(), &[(s(300), s(400), s(1200))]);
        // A wholly SACKed retransmission is never lost.
        board.add(s(300), s(400));
        assert_eq!(log.forget_lost(&board, s(5000)), 0);
        log.advance(s(350));
        assert_eq!(log.entries(), &[(s(350), s(400), s(1200))]);
    }

    #[test]
    fn retransmit_log_stays_bounded_and_covers_what_it_merged() {
        let mut log = RetransmitLog::new();
        for i in 0..100u32 {
            log.record(s(i * 10), s(i * 10 + 5), s(i));
            assert!(log.len <= MAX_BLOCKS);
            // Every range ever recorded is still covered.
            for j in 0..=i {
                assert!(log.covering(s(j * 10)).is_some(), "{i} {j}");
            }
        }
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
