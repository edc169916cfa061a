//! Out-of-order reassembly bookkeeping for the receive side.
//!
//! RFC 9293 §3.10.7.4 lets a receiver hold segments that arrive beyond
//! RCV.NXT "for later processing". Their bytes sit in the receive
//! [`RingBuffer`](super::buffer::RingBuffer) ahead of the in-order end; this
//! type records which byte ranges are there, relative to RCV.NXT (offset 0).
//! When a range reaches offset 0, [`Assembler::remove_front`] says how many
//! bytes became in-order. The ranges also give the SACK blocks (RFC 2018).
//!
//! Like smoltcp's assembler, but with an explicit bound of [`MAX_RANGES`]
//! ranges in a fixed array: a peer cannot make it allocate or grow, and a
//! segment that would need one range too many is simply dropped (the peer
//! retransmits it).

use std::fmt;

/// Disjoint ranges held at most. Four would cover SACK's blocks (RFC 2018 §3);
/// more keeps data from a lossy path without letting a peer cost much.
pub const MAX_RANGES: usize = 32;

/// The segment would need a new range beyond [`MAX_RANGES`]; nothing was
/// recorded, so the caller drops the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyRanges;

impl fmt::Display for TooManyRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {MAX_RANGES} out-of-order ranges")
    }
}

impl std::error::Error for TooManyRanges {}

/// Received byte ranges beyond RCV.NXT: sorted, disjoint, never adjacent
/// (touching ranges are merged), at most [`MAX_RANGES`] of them.
#[derive(Clone)]
pub struct Assembler {
    /// `(start, end)` half-open offsets; only `[..count]` is meaningful.
    ranges: [(usize, usize); MAX_RANGES],
    count: usize,
    /// An offset inside the most recently added bytes, to find the range that
    /// holds them after merges; `None` once that range is removed.
    last: Option<usize>,
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Assembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assembler")
            .field("ranges", &&self.ranges[..self.count])
            .field("last", &self.last)
            .finish()
    }
}

impl Assembler {
    pub const fn new() -> Self {
        Assembler {
            ranges: [(0, 0); MAX_RANGES],
            count: 0,
            last: None,
        }
    }

    /// No out-of-order data is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        self.count = 0;
        self.last = None;
    }

    /// Records that bytes `[offset, offset + len)` are present, merging with
    /// every range they overlap or touch. `len == 0` changes nothing. On
    /// [`TooManyRanges`] the assembler is unchanged.
    ///
    /// Offsets are bounded by the receive window (< 2^30, RFC 7323 §2.3), so
    /// `offset + len` overflowing is a caller bug; it saturates.
    pub fn add(&mut self, offset: usize, len: usize) -> Result<(), TooManyRanges> {
        if len == 0 {
            return Ok(());
        }
        debug_assert!(offset.checked_add(len).is_some(), "range overflows");
        let end = offset.saturating_add(len);
        let live = &self.ranges[..self.count];
        // Ranges that overlap or touch [offset, end) are exactly `first..past`:
        // the ones ending at or after `offset` and starting at or before `end`.
        let first = live.partition_point(|&(_, e)| e < offset);
        let past = live.partition_point(|&(s, _)| s <= end);
        if first == past {
            if self.count == MAX_RANGES {
                return Err(TooManyRanges);
            }
            self.ranges.copy_within(first..self.count, first + 1);
            self.ranges[first] = (offset, end);
            self.count += 1;
        } else {
            let start = offset.min(self.ranges[first].0);
            let merged_end = end.max(self.ranges[past - 1].1);
            self.ranges[first] = (start, merged_end);
            self.ranges.copy_within(past..self.count, first + 1);
            self.count -= past - first - 1;
        }
        self.last = Some(offset);
        Ok(())
    }

    /// If a range starts at offset 0 (RCV.NXT), removes it and returns its
    /// length: those bytes are now in order and RCV.NXT advances by it. Every
    /// other range moves down by the same amount. Returns 0 otherwise.
    pub fn remove_front(&mut self) -> usize {
        if self.count == 0 || self.ranges[0].0 != 0 {
            return 0;
        }
        let n = self.ranges[0].1;
        self.ranges.copy_within(1..self.count, 0);
        self.count -= 1;
        for r in &mut self.ranges[..self.count] {
            r.0 -= n;
            r.1 -= n;
        }
        // The last-added bytes were either in the removed range or lie after it.
        self.last = self.last.and_then(|o| o.checked_sub(n));
        n
    }

    /// `(start, end)` offsets of the held ranges, ascending.
    pub fn ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges[..self.count].iter().copied()
    }

    /// The range holding the most recently added bytes, which RFC 2018 §4
    /// puts first among the SACK blocks; `None` once it was removed.
    pub fn last_added(&self) -> Option<(usize, usize)> {
        let o = self.last?;
        self.ranges().find(|&(s, e)| s <= o && o < e)
    }

    /// Bytes held out of order.
    pub fn total_len(&self) -> usize {
        self.ranges().map(|(s, e)| e - s).sum()
    }

    pub fn range_count(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(a: &Assembler) -> Vec<(usize, usize)> {
        a.ranges().collect()
    }

    #[test]
    fn new_is_empty() {
        let mut a = Assembler::new();
        assert!(a.is_empty());
        assert_eq!(a.range_count(), 0);
        assert_eq!(a.total_len(), 0);
        assert_eq!(a.last_added(), None);
        assert_eq!(a.remove_front(), 0);
        assert_eq!(ranges(&Assembler::default()), vec![]);
    }

    #[test]
    fn zero_len_is_noop() {
        let mut a = Assembler::new();
        a.add(5, 3).unwrap();
        a.add(0, 0).unwrap();
        a.add(100, 0).unwrap();
        assert_eq!(ranges(&a), vec![(5, 8)]);
        assert_eq!(a.last_added(), Some((5, 8)));
    }

    #[test]
    fn in_order() {
        let mut a = Assembler::new();
        a.add(0, 10).unwrap();
        assert_eq!(a.last_added(), Some((0, 10)));
        assert_eq!(a.remove_front(), 10);
        assert!(a.is_empty());
        assert_eq!(a.last_added(), None);
    }

    #[test]
    fn out_of_order_sorted() {
        let mut a = Assembler::new();
        a.add(20, 5).unwrap();
        a.add(5, 5).unwrap();
        a.add(40, 1).unwrap();
        assert_eq!(ranges(&a), vec![(5, 10), (20, 25), (40, 41)]);
        assert_eq!(a.total_len(), 11);
        assert_eq!(a.range_count(), 3);
        assert_eq!(a.last_added(), Some((40, 41)));
    }

    #[test]
    fn overlapping_merges() {
        let mut a = Assembler::new();
        a.add(10, 10).unwrap();
        a.add(15, 10).unwrap();
        assert_eq!(ranges(&a), vec![(10, 25)]);
        a.add(5, 8).unwrap();
        assert_eq!(ranges(&a), vec![(5, 25)]);
        a.add(12, 3).unwrap(); // inside: duplicate data
        assert_eq!(ranges(&a), vec![(5, 25)]);
        a.add(0, 100).unwrap(); // covers everything
        assert_eq!(ranges(&a), vec![(0, 100)]);
    }

    #[test]
    fn overlapping_several_merges_all() {
        let mut a = Assembler::new();
        for o in [10, 20, 30, 40] {
            a.add(o, 2).unwrap();
        }
        a.add(11, 25).unwrap(); // 11..36: joins the first three
        assert_eq!(ranges(&a), vec![(10, 36), (40, 42)]);
        assert_eq!(a.last_added(), Some((10, 36)));
    }

    #[test]
    fn adjacent_merges() {
        let mut a = Assembler::new();
        a.add(10, 5).unwrap();
        a.add(15, 5).unwrap(); // touches the end
        assert_eq!(ranges(&a), vec![(10, 20)]);
        a.add(5, 5).unwrap(); // touches the start
        assert_eq!(ranges(&a), vec![(5, 20)]);
        a.add(21, 1).unwrap(); // one byte gap: stays separate
        assert_eq!(ranges(&a), vec![(5, 20), (21, 22)]);
    }

    #[test]
    fn filling_a_hole_joins_three() {
        let mut a = Assembler::new();
        a.add(0, 5).unwrap();
        a.add(10, 5).unwrap();
        a.add(20, 5).unwrap();
        a.add(5, 5).unwrap();
        assert_eq!(ranges(&a), vec![(0, 15), (20, 25)]);
        a.add(15, 5).unwrap();
        assert_eq!(ranges(&a), vec![(0, 25)]);
        assert_eq!(a.last_added(), Some((0, 25)));
        assert_eq!(a.remove_front(), 25);
        assert!(a.is_empty());
    }

    #[test]
    fn remove_front_with_nothing_at_zero() {
        let mut a = Assembler::new();
        a.add(1, 5).unwrap();
        assert_eq!(a.remove_front(), 0);
        assert_eq!(ranges(&a), vec![(1, 6)]);
        a.add(0, 1).unwrap();
        assert_eq!(a.remove_front(), 6);
        assert_eq!(a.remove_front(), 0);
    }

    #[test]
    fn remove_front_shifts_the_rest() {
        let mut a = Assembler::new();
        a.add(0, 4).unwrap();
        a.add(10, 2).unwrap();
        a.add(20, 3).unwrap();
        assert_eq!(a.last_added(), Some((20, 23)));
        assert_eq!(a.remove_front(), 4);
        assert_eq!(ranges(&a), vec![(6, 8), (16, 19)]);
        assert_eq!(a.last_added(), Some((16, 19)));
        assert_eq!(a.total_len(), 5);
    }

    #[test]
    fn bound_rejects_new_range_but_allows_merges() {
        let mut a = Assembler::new();
        for i in 0..MAX_RANGES {
            a.add(10 * i + 1, 2).unwrap();
        }
        assert_eq!(a.range_count(), MAX_RANGES);
        let before = ranges(&a);
        let last_before = a.last_added();
        // Disjoint: at the front, in a gap, past the end.
        assert_eq!(a.add(0, 0), Ok(()));
        for (o, l) in [(5, 2), (10 * MAX_RANGES + 50, 1)] {
            assert_eq!(a.add(o, l), Err(TooManyRanges));
            assert_eq!(ranges(&a), before);
            assert_eq!(a.last_added(), last_before);
        }
        // Merging with one range, or bridging two, still works.
        a.add(3, 1).unwrap();
        assert_eq!(a.range_count(), MAX_RANGES);
        assert_eq!(a.last_added(), Some((1, 4)));
        a.add(4, 7).unwrap(); // 4..11 joins (1,4) and (11,13)
        assert_eq!(a.range_count(), MAX_RANGES - 1);
        assert_eq!(a.last_added(), Some((1, 13)));
        // Now there is room for one new disjoint range.
        a.add(0, 0).unwrap();
        a.add(10 * MAX_RANGES + 50, 1).unwrap();
        assert_eq!(a.range_count(), MAX_RANGES);
        assert_eq!(a.add(10 * MAX_RANGES + 60, 1), Err(TooManyRanges));
    }

    #[test]
    fn too_many_ranges_error_displays() {
        let e: Box<dyn std::error::Error> = Box::new(TooManyRanges);
        assert!(e.to_string().contains("32"));
    }

    #[test]
    fn last_added_tracks_merges_and_removal() {
        let mut a = Assembler::new();
        a.add(10, 5).unwrap();
        a.add(30, 5).unwrap();
        assert_eq!(a.last_added(), Some((30, 35)));
        a.add(20, 5).unwrap();
        assert_eq!(a.last_added(), Some((20, 25)));
        a.add(25, 5).unwrap(); // joins (20,25) and (30,35)
        assert_eq!(a.last_added(), Some((20, 35)));
        a.add(8, 2).unwrap();
        assert_eq!(a.last_added(), Some((8, 15)));
        a.add(15, 1).unwrap();
        assert_eq!(a.last_added(), Some((8, 16)));
        // Removing a front range that does not hold the last bytes keeps it.
        a.add(0, 3).unwrap();
        a.add(40, 1).unwrap();
        assert_eq!(a.remove_front(), 3);
        assert_eq!(a.last_added(), Some((37, 38)));
        a.add(0, 5).unwrap(); // joins (0,5) with (5,13)
        assert_eq!(a.last_added(), Some((0, 13)));
        assert_eq!(a.remove_front(), 13);
        assert_eq!(a.last_added(), None);
        assert_eq!(ranges(&a), vec![(4, 19), (24, 25)]);
        a.clear();
        assert!(a.is_empty());
        assert_eq!(a.last_added(), None);
    }

    const SPACE: usize = 4096;

    /// Maximal runs of `true` in the bitmap.
    fn model_ranges(bits: &[bool]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bits.len() {
            if bits[i] {
                let s = i;
                while i < bits.len() && bits[i] {
                    i += 1;
                }
                out.push((s, i));
            } else {
                i += 1;
            }
        }
        out
    }

    #[test]
    fn randomized_against_bitmap() {
        let mut rng = fastrand::Rng::with_seed(0xa55e_b1e5);
        let mut a = Assembler::new();
        let mut bits = vec![false; SPACE];
        // Every set bit is below `hi`, so scans stop there.
        let mut hi = 0;
        // The bytes of the last successful add, as offsets now.
        let mut last: Option<(usize, usize)> = None;
        let (mut rejected, mut drained) = (0, 0);
        let mut saved = Vec::new();
        for step in 0..100_000 {
            match rng.u32(0..100) {
                0..=89 => {
                    // Mostly small segments spread over a window keep the
                    // range count at the bound; sometimes big, far or
                    // in-order (offset 0) ones.
                    let offset = match rng.u32(0..20) {
                        0 => 0,
                        1 => rng.usize(0..SPACE),
                        _ => rng.usize(0..1500),
                    };
                    let max_len = if rng.u32(0..10) == 0 { 300 } else { 6 };
                    let len = rng.usize(0..=max_len).min(SPACE - offset);
                    saved.clear();
                    saved.extend_from_slice(&bits[offset..offset + len]);
                    bits[offset..offset + len].fill(true);
                    let new_hi = hi.max(offset + len);
                    let expect = model_ranges(&bits[..new_hi]);
                    let before = ranges(&a);
                    let before_last = a.last_added();
                    match a.add(offset, len) {
                        Ok(()) => {
                            assert!(expect.len() <= MAX_RANGES, "step {step}");
                            hi = new_hi;
                            if len > 0 {
                                last = Some((offset, offset + len));
                            }
                        }
                        Err(TooManyRanges) => {
                            assert_eq!(expect.len(), MAX_RANGES + 1, "step {step}");
                            assert_eq!(ranges(&a), before);
                            assert_eq!(a.last_added(), before_last);
                            bits[offset..offset + len].copy_from_slice(&saved);
                            rejected += 1;
                        }
                    }
                }
                90..=98 => {
                    let n = bits.iter().take_while(|&&b| b).count();
                    assert_eq!(a.remove_front(), n, "step {step}");
                    if n > 0 {
                        drained += 1;
                    }
                    bits.copy_within(n..hi, 0);
                    bits[hi - n..hi].fill(false);
                    hi -= n;
                    last = match last {
                        Some((s, _)) if s < n => None,
                        Some((s, e)) => Some((s - n, e - n)),
                        None => None,
                    };
                }
                _ => {
                    a.clear();
                    bits[..hi].fill(false);
                    hi = 0;
                    last = None;
                }
            }
            let expect = model_ranges(&bits[..hi]);
            assert_eq!(ranges(&a), expect, "step {step}");
            assert_eq!(a.range_count(), expect.len());
            assert_eq!(a.is_empty(), expect.is_empty());
            assert_eq!(a.total_len(), bits[..hi].iter().filter(|&&b| b).count());
            let expect_last =
                last.and_then(|(s, e)| expect.iter().copied().find(|&(rs, re)| rs <= s && e <= re));
            assert_eq!(a.last_added(), expect_last, "step {step}");
        }
        assert!(rejected > 100, "the bound was exercised: {rejected}");
        assert!(drained > 100, "remove_front was exercised: {drained}");
    }
}
