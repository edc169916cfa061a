//! A fixed-capacity byte ring for a connection's send and receive buffers.
//!
//! Send side (RFC 9293 §3.3.1, send sequence space): the queued bytes start at
//! SND.UNA; the first `SND.NXT - SND.UNA` of them are sent but unacknowledged,
//! the rest are not sent yet. An ACK drops bytes from the front
//! ([`RingBuffer::dequeue_allocated`]); retransmission reads them again by
//! offset ([`RingBuffer::get_allocated`]).
//!
//! Receive side (§3.3.1, receive sequence space): the queued bytes are
//! in-order data the application has not read; the free space after them is
//! RCV.WND (§3.8.6). Out-of-order segments (§3.10.7.4) are written into that
//! free space at their distance from RCV.NXT ([`RingBuffer::write_unallocated`])
//! and become queued once the hole before them fills
//! ([`RingBuffer::enqueue_unallocated`]).
//!
//! Storage is allocated in [`RingBuffer::new`] and, when a connection needs
//! more room, in [`RingBuffer::grow_to`] (a doubling, so a connection grows a
//! handful of times in its life, not per packet); a connection with nothing
//! queued gives it back by being replaced with an empty ring. The position of
//! the end of queued data only moves when bytes are enqueued, never when they
//! are dequeued, so bytes written ahead of the end stay where the next
//! enqueue expects them, across a growth too.

use std::fmt;

/// Fixed-capacity byte ring; see the module docs for how TCP uses it.
#[derive(Clone)]
pub struct RingBuffer {
    storage: Box<[u8]>,
    /// Index of the first queued byte; always `< capacity` (0 if capacity is 0).
    read_at: usize,
    /// Queued bytes; always `<= capacity`.
    length: usize,
}

impl fmt::Debug for RingBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuffer")
            .field("capacity", &self.capacity())
            .field("len", &self.length)
            .field("read_at", &self.read_at)
            .finish()
    }
}

impl RingBuffer {
    /// A zero-filled ring of `capacity` bytes: the only allocation it makes.
    pub fn new(capacity: usize) -> Self {
        RingBuffer {
            storage: vec![0; capacity].into_boxed_slice(),
            read_at: 0,
            length: 0,
        }
    }

    /// Total size in bytes.
    pub fn capacity(&self) -> usize {
        self.storage.len()
    }

    /// Queued bytes.
    pub fn len(&self) -> usize {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub fn is_full(&self) -> bool {
        self.length == self.capacity()
    }

    /// Free space: what the receive side advertises as RCV.WND (RFC 9293 §3.8.6).
    pub fn window(&self) -> usize {
        self.capacity() - self.length
    }

    /// Grows the storage to `capacity` bytes (nothing if it is that big
    /// already), keeping the queued bytes and every byte written ahead of
    /// them at the same offsets: the old ring is laid out from its front at
    /// the start of the new one.
    pub fn grow_to(&mut self, capacity: usize) {
        let old = self.capacity();
        if capacity <= old {
            return;
        }
        let mut storage = vec![0; capacity].into_boxed_slice();
        let (tail, head) = self.storage.split_at(self.read_at);
        storage[..head.len()].copy_from_slice(head);
        storage[head.len()..old].copy_from_slice(tail);
        self.storage = storage;
        self.read_at = 0;
    }

    /// Drops all bytes, including any written ahead of the end.
    pub fn clear(&mut self) {
        self.read_at = 0;
        self.length = 0;
    }

    /// Storage index of the byte `offset` after the front. Callers keep
    /// `offset < capacity`, so one subtraction wraps it (and `read_at + offset`
    /// cannot overflow: a slice is at most `isize::MAX` bytes).
    fn index(&self, offset: usize) -> usize {
        debug_assert!(offset < self.capacity());
        let i = self.read_at + offset;
        if i >= self.capacity() {
            i - self.capacity()
        } else {
            i
        }
    }

    /// Appends as much of `data` as fits; returns the bytes copied.
    pub fn enqueue_slice(&mut self, data: &[u8]) -> usize {
        let n = self.write_unallocated(0, data);
        self.length += n;
        n
    }

    /// Copies bytes from the front into `out` and removes them; returns the count.
    pub fn dequeue_slice(&mut self, out: &mut [u8]) -> usize {
        let n = self.read_allocated(0, out);
        self.dequeue_allocated(n)
    }

    /// Drops up to `n` bytes from the front (acknowledged or consumed); returns
    /// how many were dropped.
    pub fn dequeue_allocated(&mut self, n: usize) -> usize {
        let n = n.min(self.length);
        if n > 0 {
            // n <= length <= capacity; n == capacity wraps back to read_at.
            self.read_at = if n == self.capacity() {
                self.read_at
            } else {
                self.index(n)
            };
            self.length -= n;
        }
        n
    }

    /// The longest contiguous run of queued bytes starting `offset` after the
    /// front, at most `size` long: shorter at the wrap point or the end of
    /// queued data, empty if `offset >= len()`.
    pub fn get_allocated(&self, offset: usize, size: usize) -> &[u8] {
        if offset >= self.length {
            return &[];
        }
        let start = self.index(offset);
        let n = size.min(self.length - offset).min(self.capacity() - start);
        &self.storage[start..start + n]
    }

    /// Copies queued bytes from `offset` after the front into `out`, across
    /// the wrap; returns the count (0 if `offset >= len()`).
    pub fn read_allocated(&self, offset: usize, out: &mut [u8]) -> usize {
        let first = self.get_allocated(offset, out.len());
        let n1 = first.len();
        out[..n1].copy_from_slice(first);
        let second = self.get_allocated(offset + n1, out.len() - n1);
        let n2 = second.len();
        out[n1..n1 + n2].copy_from_slice(second);
        n1 + n2
    }

    /// All queued bytes as two slices; the second is empty unless they wrap.
    pub fn readable(&self) -> (&[u8], &[u8]) {
        let first = self.get_allocated(0, self.length);
        let second = self.get_allocated(first.len(), self.length);
        (first, second)
    }

    /// Writes `data` into free space starting `offset` bytes after the end of
    /// queued data (an out-of-order segment, RFC 9293 §3.10.7.4), across the
    /// wrap, without queueing it. Truncated to the free space; returns the
    /// bytes written (0 if `offset >= window()`).
    pub fn write_unallocated(&mut self, offset: usize, data: &[u8]) -> usize {
        let free = self.window();
        if offset >= free {
            return 0;
        }
        let n = data.len().min(free - offset);
        if n == 0 {
            return 0;
        }
        // length + offset < capacity because offset < window.
        let start = self.index(self.length + offset);
        let n1 = n.min(self.capacity() - start);
        self.storage[start..start + n1].copy_from_slice(&data[..n1]);
        self.storage[..n - n1].copy_from_slice(&data[n1..n]);
        n
    }

    /// Queues `n` bytes already written after the end (by
    /// [`write_unallocated`](Self::write_unallocated) or
    /// [`get_unallocated_mut`](Self::get_unallocated_mut)). `n > window()` is a
    /// caller bug; it is clamped to the window.
    pub fn enqueue_unallocated(&mut self, n: usize) {
        debug_assert!(
            n <= self.window(),
            "enqueue_unallocated({n}) beyond window {}",
            self.window()
        );
        self.length += n.min(self.window());
    }

    /// The longest contiguous free run right after the end of queued data, at
    /// most `size` long, to write into in place; queue what was written with
    /// [`enqueue_unallocated`](Self::enqueue_unallocated). Empty when full.
    pub fn get_unallocated_mut(&mut self, size: usize) -> &mut [u8] {
        if self.is_full() {
            return &mut [];
        }
        let start = self.index(self.length);
        let n = size.min(self.window()).min(self.capacity() - start);
        &mut self.storage[start..start + n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A ring of `cap` bytes whose front sits at `read_at` (data queued then
    /// consumed to move it there), then holding `data`.
    fn ring_at(cap: usize, read_at: usize, data: &[u8]) -> RingBuffer {
        let mut r = RingBuffer::new(cap);
        let filler = vec![0xEE; read_at];
        assert_eq!(r.enqueue_slice(&filler), read_at);
        assert_eq!(r.dequeue_allocated(read_at), read_at);
        assert_eq!(r.enqueue_slice(data), data.len());
        r
    }

    fn contents(r: &RingBuffer) -> Vec<u8> {
        let (a, b) = r.readable();
        [a, b].concat()
    }

    #[test]
    fn new_is_empty() {
        let r = RingBuffer::new(8);
        assert_eq!(r.capacity(), 8);
        assert_eq!(r.len(), 0);
        assert!(r.is_empty());
        assert!(!r.is_full());
        assert_eq!(r.window(), 8);
        assert_eq!(r.readable(), (&[][..], &[][..]));
        assert!(r.get_allocated(0, 8).is_empty());
    }

    #[test]
    fn zero_capacity_never_panics() {
        let mut r = RingBuffer::new(0);
        assert!(r.is_empty());
        assert!(r.is_full());
        assert_eq!(r.window(), 0);
        assert_eq!(r.enqueue_slice(b"abc"), 0);
        assert_eq!(r.dequeue_slice(&mut [0; 4]), 0);
        assert_eq!(r.dequeue_allocated(3), 0);
        assert!(r.get_allocated(0, 3).is_empty());
        assert_eq!(r.read_allocated(0, &mut [0; 4]), 0);
        assert_eq!(r.write_unallocated(0, b"x"), 0);
        assert!(r.get_unallocated_mut(4).is_empty());
        r.enqueue_unallocated(0);
        r.clear();
        assert_eq!(r.readable(), (&[][..], &[][..]));
    }

    #[test]
    fn zero_length_calls() {
        let mut r = ring_at(8, 5, b"abcde");
        assert_eq!(r.enqueue_slice(&[]), 0);
        assert_eq!(r.dequeue_slice(&mut []), 0);
        assert_eq!(r.dequeue_allocated(0), 0);
        assert!(r.get_allocated(0, 0).is_empty());
        assert_eq!(r.read_allocated(0, &mut []), 0);
        assert_eq!(r.write_unallocated(0, &[]), 0);
        assert!(r.get_unallocated_mut(0).is_empty());
        r.enqueue_unallocated(0);
        assert_eq!(contents(&r), b"abcde");
    }

    #[test]
    fn enqueue_dequeue_fifo() {
        let mut r = RingBuffer::new(8);
        assert_eq!(r.enqueue_slice(b"hello"), 5);
        assert_eq!(r.len(), 5);
        assert_eq!(r.window(), 3);
        let mut out = [0; 3];
        assert_eq!(r.dequeue_slice(&mut out), 3);
        assert_eq!(&out, b"hel");
        assert_eq!(r.len(), 2);
        let mut out = [0; 8];
        assert_eq!(r.dequeue_slice(&mut out), 2);
        assert_eq!(&out[..2], b"lo");
        assert!(r.is_empty());
    }

    #[test]
    fn enqueue_truncates_when_full() {
        let mut r = RingBuffer::new(4);
        assert_eq!(r.enqueue_slice(b"abcdef"), 4);
        assert!(r.is_full());
        assert_eq!(r.window(), 0);
        assert_eq!(r.enqueue_slice(b"x"), 0);
        assert_eq!(contents(&r), b"abcd");
    }

    #[test]
    fn enqueue_across_wrap_and_full() {
        let mut r = ring_at(8, 6, b"");
        assert_eq!(r.enqueue_slice(b"abcdefghij"), 8);
        assert!(r.is_full());
        let (a, b) = r.readable();
        assert_eq!(a, b"ab");
        assert_eq!(b, b"cdefgh");
        let mut out = [0; 8];
        assert_eq!(r.dequeue_slice(&mut out), 8);
        assert_eq!(&out, b"abcdefgh");
        assert!(r.is_empty());
    }

    #[test]
    fn enqueue_ending_exactly_at_wrap() {
        let mut r = ring_at(8, 3, b"abcde");
        assert_eq!(r.readable(), (&b"abcde"[..], &[][..]));
        assert_eq!(r.enqueue_slice(b"fg"), 2);
        assert_eq!(r.readable(), (&b"abcde"[..], &b"fg"[..]));
    }

    #[test]
    fn dequeue_slice_across_wrap() {
        let mut r = ring_at(8, 5, b"abcdef");
        let mut out = [0; 4];
        assert_eq!(r.dequeue_slice(&mut out), 4);
        assert_eq!(&out, b"abcd");
        assert_eq!(contents(&r), b"ef");
    }

    #[test]
    fn dequeue_allocated_clamps_and_wraps() {
        let mut r = ring_at(8, 6, b"abcdef");
        assert_eq!(r.dequeue_allocated(3), 3);
        assert_eq!(contents(&r), b"def");
        assert_eq!(r.dequeue_allocated(100), 3);
        assert!(r.is_empty());
        assert_eq!(r.dequeue_allocated(1), 0);
    }

    #[test]
    fn dequeue_allocated_whole_full_ring() {
        let mut r = ring_at(8, 3, b"abcdefgh");
        assert!(r.is_full());
        assert_eq!(r.dequeue_allocated(8), 8);
        assert!(r.is_empty());
        assert_eq!(r.enqueue_slice(b"xyz"), 3);
        assert_eq!(contents(&r), b"xyz");
    }

    #[test]
    fn get_allocated_stops_at_wrap_and_end() {
        let r = ring_at(8, 5, b"abcdef");
        assert_eq!(r.get_allocated(0, 10), b"abc");
        assert_eq!(r.get_allocated(1, 10), b"bc");
        assert_eq!(r.get_allocated(1, 1), b"b");
        assert_eq!(r.get_allocated(3, 10), b"def");
        assert_eq!(r.get_allocated(4, 1), b"e");
        assert_eq!(r.get_allocated(5, 10), b"f");
        assert!(r.get_allocated(6, 10).is_empty());
        assert!(r.get_allocated(usize::MAX, usize::MAX).is_empty());
        assert_eq!(r.get_allocated(2, usize::MAX), b"c");
    }

    #[test]
    fn read_allocated_across_wrap() {
        let r = ring_at(8, 5, b"abcdef");
        let mut out = [0; 8];
        assert_eq!(r.read_allocated(0, &mut out), 6);
        assert_eq!(&out[..6], b"abcdef");
        assert_eq!(r.read_allocated(2, &mut out[..3]), 3);
        assert_eq!(&out[..3], b"cde");
        assert_eq!(r.read_allocated(4, &mut out), 2);
        assert_eq!(&out[..2], b"ef");
        assert_eq!(r.read_allocated(6, &mut out), 0);
        assert_eq!(r.read_allocated(usize::MAX, &mut out), 0);
        assert_eq!(r.len(), 6, "reading does not consume");
    }

    #[test]
    fn readable_when_full_at_every_rotation() {
        for start in 0..8 {
            let r = ring_at(8, start, b"01234567");
            let (a, b) = r.readable();
            assert_eq!(a.len(), 8 - start);
            assert_eq!([a, b].concat(), b"01234567");
        }
    }

    #[test]
    fn write_unallocated_out_of_order_then_fill_hole() {
        // In order: "ab". Out of order: "ef" at 2 after the end; then the hole "cd".
        let mut r = ring_at(8, 4, b"ab");
        assert_eq!(r.write_unallocated(2, b"ef"), 2);
        assert_eq!(r.len(), 2, "writing ahead does not queue");
        assert_eq!(r.write_unallocated(0, b"cd"), 2);
        r.enqueue_unallocated(4);
        assert_eq!(contents(&r), b"abcdef");
        let (a, b) = r.readable();
        assert_eq!(a, b"abcd");
        assert_eq!(b, b"ef");
    }

    #[test]
    fn write_unallocated_truncates_to_window() {
        let mut r = ring_at(8, 7, b"abc");
        assert_eq!(r.window(), 5);
        assert_eq!(r.write_unallocated(3, b"wxyz"), 2);
        assert_eq!(r.write_unallocated(5, b"q"), 0);
        assert_eq!(r.write_unallocated(usize::MAX, b"q"), 0);
        assert_eq!(r.write_unallocated(0, b"0123456789"), 5);
        r.enqueue_unallocated(5);
        assert!(r.is_full());
        assert_eq!(contents(&r), b"abc01234");
        assert_eq!(r.write_unallocated(0, b"z"), 0);
    }

    #[test]
    fn written_ahead_survives_dequeue() {
        // The application reads all in-order data while out-of-order bytes wait.
        let mut r = ring_at(8, 2, b"abc");
        assert_eq!(r.write_unallocated(1, b"XY"), 2);
        let mut out = [0; 3];
        assert_eq!(r.dequeue_slice(&mut out), 3);
        assert!(r.is_empty());
        assert_eq!(r.write_unallocated(0, b"W"), 1);
        r.enqueue_unallocated(3);
        assert_eq!(contents(&r), b"WXY");
    }

    #[test]
    fn get_unallocated_mut_stops_at_wrap() {
        let mut r = ring_at(8, 3, b"abc");
        // End at index 6: two bytes before the wrap.
        let s = r.get_unallocated_mut(10);
        assert_eq!(s.len(), 2);
        s.copy_from_slice(b"de");
        r.enqueue_unallocated(2);
        let s = r.get_unallocated_mut(10);
        assert_eq!(s.len(), 3);
        s[..2].copy_from_slice(b"fg");
        r.enqueue_unallocated(2);
        assert_eq!(r.get_unallocated_mut(10).len(), 1);
        assert_eq!(r.get_unallocated_mut(0).len(), 0);
        assert_eq!(contents(&r), b"abcdefg");
        r.get_unallocated_mut(1)[0] = b'h';
        r.enqueue_unallocated(1);
        assert!(r.is_full());
        assert!(r.get_unallocated_mut(10).is_empty());
        assert_eq!(contents(&r), b"abcdefgh");
    }

    #[test]
    fn growing_keeps_queued_and_written_ahead_bytes_at_their_offsets() {
        for read_at in 0..8 {
            let mut r = ring_at(8, read_at, b"abc");
            assert_eq!(r.write_unallocated(2, b"xyz"), 3);
            r.grow_to(20);
            assert_eq!(r.capacity(), 20);
            assert_eq!(contents(&r), b"abc", "read_at {read_at}");
            // The out-of-order bytes wait where they were: fill the hole.
            assert_eq!(r.write_unallocated(0, b"de"), 2);
            r.enqueue_unallocated(5);
            assert_eq!(contents(&r), b"abcdexyz");
            // And the new room is usable across the new wrap.
            assert_eq!(r.enqueue_slice(&[b'!'; 20]), 12);
            assert!(r.is_full());
            r.grow_to(4); // never shrinks
            assert_eq!(r.capacity(), 20);
        }
        let mut empty = RingBuffer::new(0);
        empty.grow_to(16);
        assert_eq!(empty.enqueue_slice(b"hello"), 5);
        assert_eq!(contents(&empty), b"hello");
    }

    #[test]
    fn clear_resets() {
        let mut r = ring_at(8, 5, b"abcdef");
        r.clear();
        assert!(r.is_empty());
        assert_eq!(r.window(), 8);
        assert_eq!(r.get_unallocated_mut(100).len(), 8);
        assert_eq!(r.enqueue_slice(b"xy"), 2);
        assert_eq!(contents(&r), b"xy");
    }

    /// The model: `queued` are the queued bytes; `ahead[k]` is the byte stored
    /// `k` after the end of queued data, for every free slot (the ring keeps
    /// old bytes in freed slots, so they are known too).
    struct Model {
        queued: VecDeque<u8>,
        ahead: VecDeque<u8>,
    }

    impl Model {
        fn new(cap: usize) -> Self {
            Model {
                queued: VecDeque::new(),
                ahead: std::iter::repeat_n(0, cap).collect(),
            }
        }

        fn enqueue_written(&mut self, n: usize) {
            for _ in 0..n {
                let b = self.ahead.pop_front().unwrap();
                self.queued.push_back(b);
            }
        }

        fn dequeue(&mut self, n: usize) {
            for _ in 0..n {
                let b = self.queued.pop_front().unwrap();
                self.ahead.push_back(b);
            }
        }
    }

    fn check(r: &RingBuffer, m: &Model) {
        assert_eq!(r.len(), m.queued.len());
        assert_eq!(r.window(), m.ahead.len());
        assert_eq!(r.is_empty(), m.queued.is_empty());
        assert_eq!(r.is_full(), m.ahead.is_empty());
        let (a, b) = r.readable();
        assert!(a.len() + b.len() == m.queued.len());
        assert!(b.is_empty() || !a.is_empty());
        assert!(a.iter().chain(b).eq(m.queued.iter()));
    }

    fn run_model(seed: u64, cap: usize, ops: usize) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut r = RingBuffer::new(cap);
        let mut m = Model::new(cap);
        let mut scratch = vec![0u8; 2 * cap + 2];
        for _ in 0..ops {
            let len = m.queued.len();
            let free = m.ahead.len();
            match rng.u32(0..100) {
                0..=19 => {
                    let n = rng.usize(0..=cap + 1);
                    let data: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                    let got = r.enqueue_slice(&data);
                    assert_eq!(got, n.min(free));
                    m.ahead.drain(..got);
                    m.queued.extend(&data[..got]);
                }
                20..=31 => {
                    let n = rng.usize(0..=cap + 1);
                    let got = r.dequeue_slice(&mut scratch[..n]);
                    assert_eq!(got, n.min(len));
                    assert!(scratch[..got].iter().eq(m.queued.iter().take(got)));
                    m.dequeue(got);
                }
                32..=41 => {
                    let n = rng.usize(0..=cap + 1);
                    let got = r.dequeue_allocated(n);
                    assert_eq!(got, n.min(len));
                    m.dequeue(got);
                }
                42..=53 => {
                    let off = rng.usize(0..=cap + 1);
                    let size = rng.usize(0..=cap + 1);
                    let s = r.get_allocated(off, size);
                    assert!(s.len() <= size);
                    if off >= len {
                        assert!(s.is_empty());
                    } else {
                        assert!(s.len() <= len - off);
                        if size > 0 {
                            assert!(!s.is_empty());
                        }
                        assert!(s.iter().eq(m.queued.iter().skip(off).take(s.len())));
                    }
                }
                54..=63 => {
                    let off = rng.usize(0..=cap + 1);
                    let n = rng.usize(0..=cap + 1);
                    let got = r.read_allocated(off, &mut scratch[..n]);
                    assert_eq!(got, n.min(len.saturating_sub(off)));
                    assert!(scratch[..got]
                        .iter()
                        .eq(m.queued.iter().skip(off).take(got)));
                }
                64..=77 => {
                    let off = rng.usize(0..=cap + 1);
                    let n = rng.usize(0..=cap + 1);
                    let data: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                    let got = r.write_unallocated(off, &data);
                    assert_eq!(got, n.min(free.saturating_sub(off)));
                    for (k, &b) in data[..got].iter().enumerate() {
                        m.ahead[off + k] = b;
                    }
                }
                78..=87 => {
                    let n = rng.usize(0..=free);
                    r.enqueue_unallocated(n);
                    m.enqueue_written(n);
                }
                88..=97 => {
                    let size = rng.usize(0..=cap + 1);
                    let s = r.get_unallocated_mut(size);
                    assert!(s.len() <= size.min(free));
                    if size > 0 && free > 0 {
                        assert!(!s.is_empty());
                    }
                    assert!(s.iter().eq(m.ahead.iter().take(s.len())));
                    let n = s.len();
                    for (k, b) in s.iter_mut().enumerate() {
                        *b = rng.u8(..);
                        m.ahead[k] = *b;
                    }
                    let k = rng.usize(0..=n);
                    r.enqueue_unallocated(k);
                    m.enqueue_written(k);
                }
                _ => {
                    r.clear();
                    // Where the free bytes sit after a clear is not part of
                    // the contract: overwrite them all to resynchronise.
                    let zeros = vec![0u8; cap];
                    assert_eq!(r.write_unallocated(0, &zeros), cap);
                    m = Model::new(cap);
                }
            }
            check(&r, &m);
        }
    }

    #[test]
    fn randomized_against_vecdeque() {
        run_model(0x5eed_0001, 61, 100_000);
    }

    #[test]
    fn randomized_small_capacities() {
        for (i, cap) in [1usize, 2, 3, 8, 256].into_iter().enumerate() {
            run_model(0x5eed_0100 + i as u64, cap, 20_000);
        }
    }
}
