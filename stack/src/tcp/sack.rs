//! The sender's SACK scoreboard (RFC 6675 §3): which bytes above SND.UNA
//! the peer reported holding, so recovery retransmits only the holes and a
//! go-back after a timeout skips what already arrived; and the log of what
//! recovery retransmitted, so that `pipe` counts a retransmission in flight
//! once and a retransmission lost again is noticed without a timeout.
//!
//! Fixed-size: at most [`MAX_BLOCKS`] disjoint ranges, kept sorted. When a
//! new block would exceed that, the highest range is forgotten, which only
//! costs a needless retransmission later.

use crate::{time::Instant, wire::SeqNumber};

/// Ranges remembered at most.
pub const MAX_BLOCKS: usize = 16;

/// RFC 6675's DupThresh: how many segments (or discontiguous SACKed
/// ranges) above a hole make it lost.
pub const DUP_THRESH: usize = 3;

#[derive(Debug, Clone)]
pub struct Scoreboard {
    /// Sorted, disjoint, non-adjacent [left, right) ranges.
    ranges: [(SeqNumber, SeqNumber); MAX_BLOCKS],
    /// When each range (or the earliest of those merged into it) was first
    /// reported: RACK's clock (RFC 8985 §6.2) for the holes below it.
    seen: [Instant; MAX_BLOCKS],
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
            seen: [Instant::ZERO; MAX_BLOCKS],
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

    /// Records that [left, right) was SACKed in an ACK that arrived at
    /// `seen`, merging overlaps (a merged range keeps the earliest time).
    pub fn add(&mut self, left: SeqNumber, right: SeqNumber, seen: Instant) {
        if left.distance_from(right) >= 0 {
            return;
        }
        let (mut l, mut r, mut t) = (left, right, seen);
        // Merge every range that overlaps or touches [l, r).
        let mut out = [(SeqNumber(0), SeqNumber(0)); MAX_BLOCKS + 1];
        let mut times = [Instant::ZERO; MAX_BLOCKS + 1];
        let mut n = 0;
        let mut placed = false;
        for (&(a, b), &at) in self.blocks().iter().zip(&self.seen) {
            if b < l {
                (out[n], times[n]) = ((a, b), at);
                n += 1;
            } else if r < a {
                if !placed {
                    (out[n], times[n]) = ((l, r), t);
                    n += 1;
                    placed = true;
                }
                (out[n], times[n]) = ((a, b), at);
                n += 1;
            } else {
                l = l.min(a);
                r = r.max(b);
                t = t.min(at);
            }
        }
        if !placed {
            (out[n], times[n]) = ((l, r), t);
            n += 1;
        }
        self.len = n.min(MAX_BLOCKS);
        self.ranges[..self.len].copy_from_slice(&out[..self.len]);
        self.seen[..self.len].copy_from_slice(&times[..self.len]);
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
            self.seen[n] = self.seen[i];
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

    /// RACK's time-based loss detection (RFC 8985 §6.2) for holes: data
    /// sent after a hole and reported at or before `deadline` (a reordering
    /// window ago) makes every unSACKed byte below it lost. Returns the
    /// left edge of the highest such range. Original transmissions go out
    /// in sequence order, so "above" stands for "sent later".
    pub fn reported_by(&self, deadline: Instant) -> Option<SeqNumber> {
        self.blocks()
            .iter()
            .zip(&self.seen)
            .rev()
            .find(|&(_, &t)| t <= deadline)
            .map(|(&(a, _), _)| a)
    }

    /// The earliest report time after `deadline`: when [`reported_by`]
    /// (Self::reported_by) may next move, a reordering window later.
    pub fn next_report_after(&self, deadline: Instant) -> Option<Instant> {
        self.seen[..self.len]
            .iter()
            .copied()
            .filter(|&t| t > deadline)
            .min()
    }
}

/// One retransmitted range of the [`RetransmitLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retransmitted {
    start: SeqNumber,
    end: SeqNumber,
    /// SND.MAX when it went: data above was first sent after it.
    mark: SeqNumber,
    /// When it went.
    at: Instant,
}

const NONE_SENT: Retransmitted = Retransmitted {
    start: SeqNumber(0),
    end: SeqNumber(0),
    mark: SeqNumber(0),
    at: Instant::ZERO,
};

/// What recovery (or a timeout's go-back) retransmitted, as sorted disjoint
/// ranges, each with the highest sequence sent (SND.MAX) and the time when
/// it last went out.
///
/// RFC 6675's pipe counts a retransmitted byte once more while it is in
/// flight; and a retransmission that is itself lost would hold `pipe` up
/// until the RTO. Two tests find such a loss, after Linux's
/// `tcp_mark_lost_retrans` and RACK (RFC 8985 §6.2): data first sent after
/// the retransmission has been SACKed beyond DupThresh while the
/// retransmitted bytes have not; or an ACK with news arrives more than
/// 5/4 of an RTT after the retransmission went, and still does not cover
/// it. Either way the bytes are lost again and may go once more.
#[derive(Debug, Clone)]
pub struct RetransmitLog {
    ranges: [Retransmitted; MAX_BLOCKS],
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
            ranges: [NONE_SENT; MAX_BLOCKS],
            len: 0,
        }
    }

    fn entries(&self) -> &[Retransmitted] {
        &self.ranges[..self.len]
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// [start, end) was retransmitted at `at` while SND.MAX was `mark`.
    /// Merges with what it overlaps (keeping the later mark and time), and
    /// with what it only touches if that went at the same time and mark
    /// (the segments of one burst), so that a retransmission keeps its own
    /// clock beside the later ones of a go-back; when
    /// full, merges the two closest neighbours (the gap then counts as
    /// retransmitted, which at worst delays its repair to a lost-again test
    /// or the RTO, and never repeats a send).
    pub fn record(&mut self, start: SeqNumber, end: SeqNumber, mark: SeqNumber, at: Instant) {
        if end.distance_from(start) <= 0 {
            return;
        }
        let mut new = Retransmitted {
            start,
            end,
            mark,
            at,
        };
        let merge = |a: Retransmitted, b: Retransmitted| Retransmitted {
            start: a.start.min(b.start),
            end: a.end.max(b.end),
            mark: a.mark.max(b.mark),
            at: a.at.max(b.at),
        };
        let mut out = [NONE_SENT; MAX_BLOCKS + 1];
        let mut n = 0;
        let mut placed = false;
        // Ranges that only touch stay apart when they went at different
        // times: each keeps its own clock for the lost-again tests.
        let apart = |e: &Retransmitted, new: &Retransmitted| e.at != new.at || e.mark != new.mark;
        for &e in self.entries() {
            if e.end < new.start || (e.end == new.start && apart(&e, &new)) {
                out[n] = e;
                n += 1;
            } else if new.end < e.start || (new.end == e.start && apart(&e, &new)) {
                if !placed {
                    out[n] = new;
                    n += 1;
                    placed = true;
                }
                out[n] = e;
                n += 1;
            } else {
                new = merge(new, e);
            }
        }
        if !placed {
            out[n] = new;
            n += 1;
        }
        if n > MAX_BLOCKS {
            // The closest pair, the newest of equals: the oldest ranges,
            // nearest SND.UNA and likeliest to be lost again, keep their
            // own clocks.
            let i = (0..n - 1)
                .rev()
                .min_by_key(|&i| out[i + 1].start.distance_from(out[i].end))
                .unwrap_or(0);
            out[i] = merge(out[i], out[i + 1]);
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
            let mut e = self.ranges[i];
            if e.end <= una {
                continue;
            }
            e.start = e.start.max(una);
            self.ranges[n] = e;
            n += 1;
        }
        self.len = n;
    }

    /// If `seq` was retransmitted, the end of that range.
    pub fn covering(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.entries()
            .iter()
            .find(|e| e.start <= seq && seq < e.end)
            .map(|e| e.end)
    }

    /// The start of the first retransmitted range above `seq`.
    pub fn next_start(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.entries().iter().map(|e| e.start).find(|&a| a > seq)
    }

    /// Retransmitted bytes not yet SACKed: RFC 6675's second term of pipe.
    pub fn unsacked_bytes(&self, board: &Scoreboard) -> usize {
        self.entries()
            .iter()
            .map(|e| {
                (e.end.distance_from(e.start).max(0) as usize) - board.sacked_in(e.start, e.end)
            })
            .sum()
    }

    /// Drops the ranges lost again, by either test of the type's doc:
    /// `overdue` is the time before which a retransmission should have been
    /// covered by an ACK that brought news now (`None` when this ACK
    /// brought none). Returns how many ranges went.
    pub fn forget_lost(
        &mut self,
        board: &Scoreboard,
        smss: usize,
        overdue: Option<Instant>,
    ) -> usize {
        let before = self.len;
        let high = board.highest();
        let mut n = 0;
        for i in 0..self.len {
            let e = self.ranges[i];
            let whole = e.end.distance_from(e.start).max(0) as usize;
            let overtaken =
                high.is_some_and(|h| board.sacked_in(e.mark, h) > (DUP_THRESH - 1) * smss);
            let late = overdue.is_some_and(|t| e.at < t);
            if (overtaken || late) && board.sacked_in(e.start, e.end) < whole {
                continue;
            }
            self.ranges[n] = e;
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
        b.add(s(300), s(400), Instant::ZERO);
        b.add(s(100), s(200), Instant::ZERO);
        b.add(s(200), s(250), Instant::ZERO); // touches the first
        assert_eq!(b.blocks(), &[(s(100), s(250)), (s(300), s(400))]);
        assert_eq!(b.sacked_bytes(), 250);
        assert_eq!(b.highest(), Some(s(400)));
        assert_eq!(b.sacked_end(s(120)), Some(s(250)));
        assert_eq!(b.sacked_end(s(260)), None);
        assert_eq!(b.next_unsacked(s(100)), Some(s(250)));
        assert_eq!(b.next_unsacked(s(50)), Some(s(50)));
        b.add(s(240), s(310), Instant::ZERO); // bridges both
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
        b.add(base + 50, base + 150, Instant::ZERO);
        b.add(base + 200, base + 300, Instant::ZERO);
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
        b.add(s(100), s(300), Instant::ZERO);
        assert_eq!(b.lost_below(mss), None);
        // One more byte: the hole below 100 is lost.
        b.add(s(300), s(301), Instant::ZERO);
        assert_eq!(b.lost_below(mss), Some(s(100)));
        // Three discontiguous small ranges count too, whatever their size.
        let mut c = Scoreboard::new();
        c.add(s(100), s(110), Instant::ZERO);
        c.add(s(200), s(210), Instant::ZERO);
        assert_eq!(c.lost_below(mss), None);
        c.add(s(300), s(310), Instant::ZERO);
        assert_eq!(c.lost_below(mss), Some(s(100)));
        // A hole between the top ranges is not lost yet; the lowest is.
        c.add(s(400), s(410), Instant::ZERO);
        assert_eq!(c.lost_below(mss), Some(s(200)));
        assert_eq!(c.sacked_in(s(105), s(205)), 10);
        assert_eq!(c.next_sacked(s(150)), Some(s(200)));
        assert_eq!(c.next_sacked(s(400)), None);
    }

    #[test]
    fn retransmit_log_counts_and_forgets_lost_retransmissions() {
        let t0 = Instant::ZERO;
        let ms = |n: u64| t0 + std::time::Duration::from_millis(n);
        let mut board = Scoreboard::new();
        let mut log = RetransmitLog::new();
        // Two segments that went together make one range; the one after
        // them, sent a moment later, keeps its own clock.
        log.record(s(0), s(100), s(1000), ms(0));
        log.record(s(100), s(200), s(1000), ms(0));
        log.record(s(200), s(250), s(1000), ms(1));
        log.record(s(300), s(400), s(1200), ms(50));
        let spans: Vec<_> = log
            .entries()
            .iter()
            .map(|e| (e.start, e.end, e.mark))
            .collect();
        assert_eq!(
            spans,
            [
                (s(0), s(200), s(1000)),
                (s(200), s(250), s(1000)),
                (s(300), s(400), s(1200))
            ]
        );
        assert_eq!(log.covering(s(150)), Some(s(200)));
        assert_eq!(log.covering(s(200)), Some(s(250)));
        assert_eq!(log.covering(s(250)), None);
        assert_eq!(log.next_start(s(250)), Some(s(300)));
        board.add(s(300), s(350), Instant::ZERO);
        assert_eq!(log.unsacked_bytes(&board), 300);
        // Data sent after the first retransmissions (above 1000) is SACKed
        // past DupThresh (more than 2 * 30 bytes), not past the last one's
        // mark: the first two are lost again, the last not yet.
        board.add(s(1000), s(1061), Instant::ZERO);
        assert_eq!(log.forget_lost(&board, 30, None), 2);
        assert_eq!(log.entries().len(), 1);
        // Time: an ACK with news well after the second went, and it is
        // still not covered: lost again too.
        assert_eq!(
            log.forget_lost(&board, 30, Some(ms(50))),
            0,
            "not yet overdue"
        );
        assert_eq!(log.forget_lost(&board, 30, Some(ms(51))), 1);
        // A wholly SACKed retransmission is never lost.
        log.record(s(300), s(400), s(1200), ms(60));
        board.add(s(300), s(400), Instant::ZERO);
        board.add(s(1200), s(2000), Instant::ZERO);
        assert_eq!(log.forget_lost(&board, 30, Some(ms(1000))), 0);
        log.advance(s(350));
        assert_eq!(log.entries()[0].start, s(350));
    }

    #[test]
    fn retransmit_log_stays_bounded_and_covers_what_it_merged() {
        let mut log = RetransmitLog::new();
        for i in 0..100u32 {
            log.record(s(i * 10), s(i * 10 + 5), s(i), Instant::ZERO);
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
            b.add(s(i * 10), s(i * 10 + 5), Instant::ZERO);
            assert!(b.len <= MAX_BLOCKS);
        }
        b.add(s(10), s(5), Instant::ZERO); // empty or inverted: ignored
        assert_eq!(b.len, MAX_BLOCKS);
    }
}
