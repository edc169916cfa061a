//! Frames waiting for ARP. RFC 1122 §2.3.2.2: the link layer SHOULD save
//! (rather than discard) at least the latest packet for an unresolved
//! address and send it once the address is resolved. Without this, the
//! first SYN to a new neighbour is lost and the connection waits a whole
//! initial RTO (1 s) before retrying.
//!
//! Bounded, as Linux bounds its neighbour queues: a few frames per address
//! (the oldest make way for the latest) and a total. Buffers are kept for
//! reuse; resolution is rare, so the fast path never comes here.

use std::net::Ipv4Addr;

use crate::{
    driver::{TxError, TxSink},
    wire::EthernetAddress,
};

/// Frames held per unresolved address: enough for a burst of active opens
/// to one neighbour (Linux holds up to 208 KiB per neighbour).
pub const PER_ADDRESS: usize = 64;
/// Frames held in all.
pub const TOTAL: usize = 256;

struct Held {
    hop: Ipv4Addr,
    frame: Vec<u8>,
}

/// The held frames of one interface.
#[derive(Default)]
pub struct HoldQueue {
    held: Vec<Held>,
    spare: Vec<Vec<u8>>,
}

impl std::fmt::Debug for HoldQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldQueue")
            .field("held", &self.held.len())
            .finish()
    }
}

/// What releasing or discarding did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    pub sent: usize,
    pub bytes: usize,
    pub failed: usize,
}

impl HoldQueue {
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Holds a frame of `len` bytes for `hop`, written by `fill` (its
    /// destination MAC is filled in on release). Returns the number of
    /// frames this displaced or refused (0 or 1): the oldest for the same
    /// address makes way; with the queue full the new frame is refused.
    pub fn hold(&mut self, hop: Ipv4Addr, len: usize, fill: impl FnOnce(&mut [u8])) -> usize {
        let mut dropped = 0;
        if self.held.iter().filter(|h| h.hop == hop).count() >= PER_ADDRESS {
            let oldest = self
                .held
                .iter()
                .position(|h| h.hop == hop)
                .expect("counted");
            let h = self.held.remove(oldest);
            self.spare.push(h.frame);
            dropped = 1;
        } else if self.held.len() >= TOTAL {
            return 1;
        }
        let mut frame = self.spare.pop().unwrap_or_default();
        frame.clear();
        frame.resize(len, 0);
        fill(&mut frame);
        self.held.push(Held { hop, frame });
        dropped
    }

    /// Sends every frame held for `hop`, now known at `mac`, in the order
    /// they were held.
    pub fn release(
        &mut self,
        hop: Ipv4Addr,
        mac: EthernetAddress,
        tx: &mut impl TxSink,
    ) -> Released {
        let mut r = Released::default();
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].hop != hop {
                i += 1;
                continue;
            }
            let mut h = self.held.remove(i);
            h.frame[..6].copy_from_slice(&mac.0);
            match tx.send(h.frame.len(), |buf| buf.copy_from_slice(&h.frame)) {
                Ok(()) => {
                    r.sent += 1;
                    r.bytes += h.frame.len();
                }
                Err(TxError::NoBuffer | TxError::TooLong) => r.failed += 1,
            }
            self.spare.push(h.frame);
        }
        r
    }

    /// Drops every frame held for `hop` (resolution failed); returns how
    /// many.
    pub fn discard(&mut self, hop: Ipv4Addr) -> usize {
        let before = self.held.len();
        let spare = &mut self.spare;
        self.held.retain_mut(|h| {
            if h.hop == hop {
                spare.push(std::mem::take(&mut h.frame));
                false
            } else {
                true
            }
        });
        before - self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::capture::Capture;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);

    #[test]
    fn released_in_order_with_the_mac_filled_in() {
        let mut q = HoldQueue::default();
        assert_eq!(q.hold(A, 60, |b| b[20] = 1), 0);
        assert_eq!(q.hold(B, 60, |b| b[20] = 2), 0);
        assert_eq!(q.hold(A, 60, |b| b[20] = 3), 0);
        let mut cap = Capture::new();
        let r = q.release(A, MAC, &mut cap);
        assert_eq!((r.sent, r.bytes, r.failed), (2, 120, 0));
        let frames = cap.frames();
        assert_eq!(frames.iter().map(|f| f[20]).collect::<Vec<_>>(), vec![1, 3]);
        assert!(frames.iter().all(|f| f[..6] == MAC.0));
        assert_eq!(q.len(), 1, "B's frame stays");
    }

    #[test]
    fn bounded_per_address_keeping_the_latest_and_in_total() {
        let mut q = HoldQueue::default();
        for i in 0..PER_ADDRESS as u8 + 2 {
            q.hold(A, 60, |b| b[20] = i);
        }
        assert_eq!(q.len(), PER_ADDRESS);
        let mut cap = Capture::new();
        q.release(A, MAC, &mut cap);
        let kept: Vec<u8> = cap.frames().iter().map(|f| f[20]).collect();
        assert_eq!(
            kept,
            (2..PER_ADDRESS as u8 + 2).collect::<Vec<_>>(),
            "the latest are kept"
        );
        for i in 0..TOTAL as u32 {
            q.hold(Ipv4Addr::from(0x0a00_1000 + i), 60, |_| {});
        }
        assert_eq!(q.hold(B, 60, |_| {}), 1, "full: refused");
        assert_eq!(q.len(), TOTAL);
        assert_eq!(q.discard(Ipv4Addr::from(0x0a00_1000)), 1);
        assert_eq!(q.len(), TOTAL - 1);
    }
}
