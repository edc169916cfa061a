//! An in-memory link between two endpoints, with seeded faults, on virtual
//! time: the device that deterministic tests run the stack over.
//!
//! Each direction applies, per frame and from one seeded generator: drop,
//! corruption (one flipped bit), duplication, reordering (the frame is held
//! back so later frames overtake it) and delay with jitter. The same seed and
//! the same sequence of calls give the same run, so a failure reproduces.
//!
//! Single-threaded by design (`Rc`): a test drives both endpoints and the
//! clock from one thread.

use std::{cell::RefCell, collections::VecDeque, io, rc::Rc, time::Duration};

use super::{
    linktrace::{LinkEvent, LinkTrace},
    Device, TxError, TxSink,
};
use crate::time::Instant;

/// How long a burst of drops lasts at most: a queue overflows for a
/// moment, not for every frame a sender might still send seconds later.
pub const BURST_SPAN: Duration = Duration::from_millis(5);

/// An Ethernet header's length: destination, source, EtherType.
const ETHERNET_HEADER: usize = 14;

/// Fault probabilities (0.0..=1.0) and delays for each direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub corrupt: f64,
    /// Every frame takes at least this long.
    pub delay: Duration,
    /// Extra delay, uniform in 0..=jitter.
    pub jitter: Duration,
    /// How far a reordered frame is held back.
    pub reorder_delay: Duration,
    /// A drop takes up to this many consecutive frames of the direction
    /// (0 or 1: each alone) sent within [`BURST_SPAN`] of it, as a full
    /// router queue does for a moment: the bursts that SACK recovery must
    /// repair without a timeout.
    pub burst: usize,
    /// The frames are Ethernet frames. A link's frame check sequence drops
    /// every frame damaged on the wire; what gets through was damaged in a
    /// router's memory, behind a link header the last hop wrote afresh.
    /// So corruption spares the 14-byte Ethernet header, and ARP, which no
    /// router forwards. (Delivered flipped bits in a source MAC or an ARP
    /// reply taught tests a wrong peer address; no real link does that.)
    pub ethernet: bool,
    /// Frames longer than this vanish without a word, as on a path whose
    /// MTU is smaller than the ends think, with the ICMP eaten on the way
    /// (a path MTU black hole); 0: no limit.
    pub max_frame: usize,
}

impl Faults {
    /// A perfect link: no loss, no delay.
    pub fn none() -> Self {
        Faults {
            drop: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder_delay: Duration::from_millis(1),
            burst: 0,
            ethernet: false,
            max_frame: 0,
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self::none()
    }
}

/// What the link did, per direction (index = sending endpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub delivered: u64,
}

struct InFlight {
    deliver_at: Instant,
    /// Ties broken by send order, so delivery is deterministic.
    seq: u64,
    frame: Vec<u8>,
}

/// The link's frames in flight and its fault generator, shared with
/// [`super::threadlink`].
pub(super) struct LinkState {
    now: Instant,
    faults: Faults,
    rng: fastrand::Rng,
    seq: u64,
    /// queues[i]: frames on their way to endpoint i.
    queues: [VecDeque<InFlight>; 2],
    stats: [LinkStats; 2],
    mtu: usize,
    /// Frames still to drop in the burst under way, per direction, and
    /// until when.
    burst_left: [(usize, Instant); 2],
    /// What happened to each segment, once a test asks for it.
    trace: Option<LinkTrace>,
}

impl LinkState {
    pub(super) fn new(faults: Faults, seed: u64, mtu: usize) -> Self {
        LinkState {
            now: Instant::ZERO,
            faults,
            rng: fastrand::Rng::with_seed(seed),
            seq: 0,
            queues: [VecDeque::new(), VecDeque::new()],
            stats: [LinkStats::default(); 2],
            mtu,
            burst_left: [(0, Instant::ZERO); 2],
            trace: None,
        }
    }

    /// Starts keeping a [`LinkTrace`].
    pub(super) fn record(&mut self) {
        self.trace.get_or_insert_with(LinkTrace::default);
    }

    /// The trace's entries for `port` (none unless recording).
    pub(super) fn trace_for_port(&self, port: u16) -> Vec<String> {
        self.trace
            .as_ref()
            .map_or_else(Vec::new, |t| t.for_port(port))
    }

    fn note(&mut self, from: usize, event: LinkEvent, frame: &[u8]) {
        if let Some(t) = self.trace.as_mut() {
            t.record(self.now, from, event, frame);
        }
    }

    pub(super) fn transmit(&mut self, from: usize, mut frame: Vec<u8>) {
        let to = 1 - from;
        self.stats[from].sent += 1;
        self.note(from, LinkEvent::Sent, &frame);
        if self.faults.max_frame > 0 && frame.len() > self.faults.max_frame {
            self.stats[from].dropped += 1;
            self.note(from, LinkEvent::Dropped, &frame);
            return;
        }
        let (left, until) = self.burst_left[from];
        if left > 0 && self.now <= until {
            self.burst_left[from].0 -= 1;
            self.stats[from].dropped += 1;
            self.note(from, LinkEvent::Dropped, &frame);
            return;
        }
        if self.chance(self.faults.drop) {
            self.burst_left[from] = (self.faults.burst.saturating_sub(1), self.now + BURST_SPAN);
            self.stats[from].dropped += 1;
            self.note(from, LinkEvent::Dropped, &frame);
            return;
        }
        let copies = if self.chance(self.faults.duplicate) {
            self.stats[from].duplicated += 1;
            self.note(from, LinkEvent::Duplicated, &frame);
            2
        } else {
            1
        };
        for copy in 0..copies {
            let mut at = self.now + self.faults.delay;
            if !self.faults.jitter.is_zero() {
                let j = self.rng.u64(..=self.faults.jitter.as_micros() as u64);
                at += Duration::from_micros(j);
            }
            if self.chance(self.faults.reorder) {
                at += self.faults.reorder_delay;
                self.stats[from].reordered += 1;
            }
            self.seq += 1;
            let mut copy_frame = if copy + 1 == copies {
                std::mem::take(&mut frame)
            } else {
                frame.clone()
            };
            // Each copy is corrupted (or not) on its own, as on a real wire.
            let (spared, arp) = if self.faults.ethernet {
                (
                    ETHERNET_HEADER,
                    copy_frame.get(12..14) == Some(&[0x08, 0x06][..]),
                )
            } else {
                (0, false)
            };
            if copy_frame.len() > spared && !arp && self.chance(self.faults.corrupt) {
                let byte = self.rng.usize(spared..copy_frame.len());
                self.note(from, LinkEvent::Corrupted, &copy_frame);
                copy_frame[byte] ^= 1 << self.rng.u8(..8);
                self.stats[from].corrupted += 1;
            }
            let item = InFlight {
                deliver_at: at,
                seq: self.seq,
                frame: copy_frame,
            };
            // Keep the queue sorted by (deliver_at, seq); most frames go last.
            let q = &mut self.queues[to];
            let pos = q
                .iter()
                .rposition(|f| (f.deliver_at, f.seq) <= (item.deliver_at, item.seq))
                .map_or(0, |p| p + 1);
            q.insert(pos, item);
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.f64() < p
    }

    /// When the next frame for `endpoint` arrives.
    pub(super) fn next_delivery_to(&self, endpoint: usize) -> Option<Instant> {
        self.queues[endpoint].front().map(|f| f.deliver_at)
    }

    pub(super) fn set_now(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    pub(super) fn mtu(&self) -> usize {
        self.mtu
    }

    pub(super) fn stats(&self, from: usize) -> LinkStats {
        self.stats[from]
    }

    pub(super) fn next_due(&mut self, endpoint: usize) -> Option<Vec<u8>> {
        let q = &mut self.queues[endpoint];
        if q.front().is_some_and(|f| f.deliver_at <= self.now) {
            let f = q.pop_front().expect("front checked");
            self.stats[1 - endpoint].delivered += 1;
            self.note(1 - endpoint, LinkEvent::Delivered, &f.frame);
            Some(f.frame)
        } else {
            None
        }
    }
}

/// The link itself: owns the clock; hands out its two endpoints.
#[derive(Clone)]
pub struct MemLink {
    state: Rc<RefCell<LinkState>>,
}

impl MemLink {
    /// A link with `faults` in both directions, seeded with `seed`. Frames
    /// longer than `mtu` (the Ethernet frame, header included) are refused.
    pub fn new(faults: Faults, seed: u64, mtu: usize) -> (MemLink, MemPort, MemPort) {
        let state = Rc::new(RefCell::new(LinkState::new(faults, seed, mtu)));
        let a = MemPort {
            state: state.clone(),
            me: 0,
        };
        let b = MemPort {
            state: state.clone(),
            me: 1,
        };
        (MemLink { state }, a, b)
    }

    pub fn now(&self) -> Instant {
        self.state.borrow().now
    }

    /// Moves the clock forward (never back).
    pub fn set_now(&self, now: Instant) {
        let mut s = self.state.borrow_mut();
        s.now = s.now.max(now);
    }

    pub fn advance(&self, by: Duration) {
        let mut s = self.state.borrow_mut();
        s.now += by;
    }

    /// When the next frame in flight arrives, in either direction.
    pub fn next_delivery(&self) -> Option<Instant> {
        let s = self.state.borrow();
        s.queues
            .iter()
            .filter_map(|q| q.front().map(|f| f.deliver_at))
            .min()
    }

    /// Frames still in flight, both directions.
    pub fn in_flight(&self) -> usize {
        let s = self.state.borrow();
        s.queues[0].len() + s.queues[1].len()
    }

    /// Statistics for frames sent by endpoint `from` (0 or 1).
    pub fn stats(&self, from: usize) -> LinkStats {
        self.state.borrow().stats[from]
    }

    /// Changes the faults from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state.borrow_mut().faults = faults;
    }

    /// Keeps a trace of every TCP segment from now on (see
    /// [`super::linktrace`]).
    pub fn record(&self) {
        self.state.borrow_mut().record();
    }

    /// The trace's lines for segments to or from `port`.
    pub fn trace_for_port(&self, port: u16) -> Vec<String> {
        self.state.borrow().trace_for_port(port)
    }
}

/// One endpoint of a [`MemLink`].
pub struct MemPort {
    state: Rc<RefCell<LinkState>>,
    me: usize,
}

impl MemPort {
    /// The next frame due at this endpoint, for tests that play the peer by
    /// hand.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        self.state.borrow_mut().next_due(self.me)
    }

    /// Sends a whole frame, for tests that play the peer by hand.
    pub fn send_frame(&mut self, frame: &[u8]) {
        self.state.borrow_mut().transmit(self.me, frame.to_vec());
    }

    /// Statistics for the frames this endpoint sent.
    pub fn stats(&self) -> LinkStats {
        self.state.borrow().stats[self.me]
    }
}

/// Transmit side of a [`MemPort`].
pub struct MemTx<'a> {
    port: &'a MemPort,
}

impl TxSink for MemTx<'_> {
    fn send<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxError> {
        if len > self.port.state.borrow().mtu {
            return Err(TxError::TooLong);
        }
        let mut frame = vec![0u8; len];
        fill(&mut frame);
        self.port.state.borrow_mut().transmit(self.port.me, frame);
        Ok(())
    }
}

impl Device for MemPort {
    type Tx<'a> = MemTx<'a>;

    fn receive<F>(&mut self, budget: usize, mut on_frame: F) -> usize
    where
        F: FnMut(&[u8], &mut Self::Tx<'_>),
    {
        let mut n = 0;
        while n < budget {
            let Some(frame) = self.state.borrow_mut().next_due(self.me) else {
                break;
            };
            on_frame(&frame, &mut MemTx { port: self });
            n += 1;
        }
        n
    }

    fn transmitter(&mut self) -> Self::Tx<'_> {
        MemTx { port: self }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Virtual time does not pass by itself: the test moves the clock.
    fn wait(&mut self, _timeout: Duration) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_n(port: &mut MemPort, n: u16) {
        for i in 0..n {
            let mut tx = port.transmitter();
            tx.send(64, |b| b[..2].copy_from_slice(&i.to_be_bytes()))
                .unwrap();
        }
    }

    fn drain(link: &MemLink, port: &mut MemPort) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        loop {
            while let Some(f) = port.recv() {
                got.push(f);
            }
            match link.next_delivery() {
                Some(t) => link.set_now(t),
                None => break,
            }
        }
        got
    }

    #[test]
    fn perfect_link_delivers_in_order() {
        let (link, mut a, mut b) = MemLink::new(Faults::none(), 1, 1514);
        send_n(&mut a, 100);
        let got = drain(&link, &mut b);
        assert_eq!(got.len(), 100);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(u16::from_be_bytes([f[0], f[1]]) as usize, i);
        }
        assert_eq!(link.stats(0).delivered, 100);
    }

    #[test]
    fn faults_happen_at_their_rates_and_reproduce_per_seed() {
        let faults = Faults {
            drop: 0.1,
            duplicate: 0.05,
            reorder: 0.1,
            corrupt: 0.05,
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(2),
            reorder_delay: Duration::from_millis(10),
            burst: 0,
            ethernet: false,
            max_frame: 0,
        };
        let run = |seed| {
            let (link, mut a, mut b) = MemLink::new(faults.clone(), seed, 1514);
            send_n(&mut a, 10_000);
            (drain(&link, &mut b), link.stats(0))
        };
        let (got, stats) = run(7);
        assert_eq!(stats.sent, 10_000);
        assert!((800..1200).contains(&stats.dropped), "{stats:?}");
        assert!((300..700).contains(&stats.duplicated), "{stats:?}");
        assert!((300..700).contains(&stats.corrupted), "{stats:?}");
        assert!(stats.reordered > 500, "{stats:?}");
        assert_eq!(
            got.len() as u64,
            stats.sent - stats.dropped + stats.duplicated
        );
        let out_of_order = got
            .windows(2)
            .filter(|w| {
                u16::from_be_bytes([w[0][0], w[0][1]]) > u16::from_be_bytes([w[1][0], w[1][1]])
            })
            .count();
        assert!(out_of_order > 100, "reordering visible: {out_of_order}");
        assert_eq!(run(7), (got, stats), "same seed, same run");
        assert_ne!(run(8).1, stats, "another seed, another run");
    }

    #[test]
    fn delay_holds_frames_until_their_time() {
        let faults = Faults {
            delay: Duration::from_millis(10),
            ..Faults::none()
        };
        let (link, mut a, mut b) = MemLink::new(faults, 3, 1514);
        send_n(&mut a, 1);
        assert!(b.recv().is_none());
        link.advance(Duration::from_millis(9));
        assert!(b.recv().is_none());
        link.advance(Duration::from_millis(1));
        assert!(b.recv().is_some());
    }

    #[test]
    fn oversized_frames_are_refused() {
        let (_link, mut a, _b) = MemLink::new(Faults::none(), 1, 100);
        assert_eq!(a.transmitter().send(101, |_| {}), Err(TxError::TooLong));
    }
}
