//! The in-memory link of [`super::memlink`] for endpoints on different
//! threads: each end is a [`Device`] a per-core runtime can own, time is the
//! real monotonic clock, and the same seeded faults apply (drop, duplicate,
//! reorder, corrupt, delay). A sleeping end wakes when a frame is due for it
//! or its [`Waker`] is called.
//!
//! Thread scheduling makes runs with faults vary from run to run; the fault
//! decisions themselves still come from the seed.

use std::{
    io,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::Duration,
};

use super::{
    memlink::{Faults, LinkState, LinkStats},
    wake::{Wake, Waker},
    Device, TxError, TxSink,
};
use crate::time::Clock;

struct Shared {
    state: Mutex<State>,
    /// Signalled when a frame is queued or an end is woken.
    changed: Condvar,
    clock: Clock,
}

struct State {
    link: LinkState,
    /// A wake request per end, consumed by its `wait`.
    woken: [bool; 2],
}

impl Shared {
    /// The state with the link's clock brought up to now.
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.link.set_now(self.clock.now());
        s
    }
}

/// A handle on the link for the test: statistics and faults.
#[derive(Clone)]
pub struct ThreadLink {
    shared: Arc<Shared>,
}

impl ThreadLink {
    /// A link with `faults` in both directions, seeded with `seed`; frames
    /// longer than `mtu` (Ethernet header included) are refused.
    pub fn new(faults: Faults, seed: u64, mtu: usize) -> (ThreadLink, ThreadPort, ThreadPort) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                link: LinkState::new(faults, seed, mtu),
                woken: [false; 2],
            }),
            changed: Condvar::new(),
            clock: Clock::new(),
        });
        let end = |me| ThreadPort {
            shared: shared.clone(),
            me,
            batch: Vec::new(),
        };
        let (a, b) = (end(0), end(1));
        (ThreadLink { shared }, a, b)
    }

    /// Statistics for frames sent by endpoint `from` (0 or 1).
    pub fn stats(&self, from: usize) -> LinkStats {
        self.shared.lock().link.stats(from)
    }

    /// Keeps a trace of every TCP segment from now on (see
    /// [`super::linktrace`]).
    pub fn record(&self) {
        self.shared.lock().link.record();
    }

    /// The trace's lines for segments to or from `port`.
    pub fn trace_for_port(&self, port: u16) -> Vec<String> {
        self.shared.lock().link.trace_for_port(port)
    }
}

/// One end of a [`ThreadLink`]; `Send`, so a core thread can own it.
pub struct ThreadPort {
    shared: Arc<Shared>,
    me: usize,
    /// Frames taken from the link for the current batch (reused).
    batch: Vec<Vec<u8>>,
}

/// Transmit side of a [`ThreadPort`].
pub struct ThreadTx<'a> {
    shared: &'a Shared,
    me: usize,
}

impl TxSink for ThreadTx<'_> {
    fn send<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxError> {
        let mut s = self.shared.lock();
        if len > s.link.mtu() {
            return Err(TxError::TooLong);
        }
        let mut frame = vec![0u8; len];
        fill(&mut frame);
        s.link.transmit(self.me, frame);
        drop(s);
        self.shared.changed.notify_all();
        Ok(())
    }
}

struct EndWaker {
    shared: Arc<Shared>,
    me: usize,
}

impl Wake for EndWaker {
    fn wake(&self) {
        self.shared.lock().woken[self.me] = true;
        self.shared.changed.notify_all();
    }
}

impl Device for ThreadPort {
    type Tx<'a> = ThreadTx<'a>;

    fn receive<F>(&mut self, budget: usize, mut on_frame: F) -> usize
    where
        F: FnMut(&[u8], &mut Self::Tx<'_>),
    {
        // Take the batch under the lock, handle it without: answers lock
        // the link again to transmit.
        {
            let mut s = self.shared.lock();
            while self.batch.len() < budget {
                match s.link.next_due(self.me) {
                    Some(f) => self.batch.push(f),
                    None => break,
                }
            }
        }
        let n = self.batch.len();
        let mut tx = ThreadTx {
            shared: &self.shared,
            me: self.me,
        };
        for frame in self.batch.drain(..) {
            on_frame(&frame, &mut tx);
        }
        n
    }

    fn transmitter(&mut self) -> Self::Tx<'_> {
        ThreadTx {
            shared: &self.shared,
            me: self.me,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = self.shared.clock.now() + timeout;
        let mut s = self.shared.lock();
        loop {
            if std::mem::take(&mut s.woken[self.me]) {
                return Ok(());
            }
            let now = self.shared.clock.now();
            let due = s.link.next_delivery_to(self.me);
            if due.is_some_and(|at| at <= now) || now >= deadline {
                return Ok(());
            }
            let until = due.map_or(deadline, |at| at.min(deadline));
            let (guard, _) = self
                .shared
                .changed
                .wait_timeout(s, until.saturating_duration_since(now))
                .unwrap_or_else(|e| e.into_inner());
            s = guard;
            s.link.set_now(self.shared.clock.now());
        }
    }

    fn waker(&self) -> Waker {
        Waker::new(Arc::new(EndWaker {
            shared: self.shared.clone(),
            me: self.me,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_threads_and_wake_the_receiver() {
        let (link, mut a, mut b) = ThreadLink::new(Faults::none(), 1, 1514);
        let receiver = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 100 {
                b.wait(Duration::from_secs(5)).unwrap();
                b.receive(64, |f, _| got.push(f.to_vec()));
            }
            got
        });
        for i in 0..100u8 {
            a.transmitter().send(60, |f| f[0] = i).unwrap();
        }
        let got = receiver.join().unwrap();
        assert_eq!(
            got.iter().map(|f| f[0]).collect::<Vec<_>>(),
            (0..100).collect::<Vec<u8>>()
        );
        assert_eq!(link.stats(0).delivered, 100);
    }

    #[test]
    fn waker_ends_a_wait() {
        let (_link, _a, mut b) = ThreadLink::new(Faults::none(), 1, 1514);
        let waker = b.waker();
        let t = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            b.wait(Duration::from_secs(30)).unwrap();
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        waker.wake();
        assert!(t.join().unwrap() < Duration::from_secs(30));
    }
}
