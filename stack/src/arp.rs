//! ARP (RFC 826) for one core: the neighbour cache, resolution with retries
//! for outgoing traffic, and the frames ARP sends.
//!
//! The cache is a map allocated once at its full capacity, so learning an
//! address never allocates. Entries are `Reachable` (with an expiry, after
//! which the next use resolves again) or `Pending` (a request is out; it is
//! retried every `retry_interval` up to `max_requests` times, then the entry
//! is dropped and the failure counted). Senders that find no address get
//! `None` and retry on their own timers (TCP's SYN retransmission), as
//! smoltcp does, so no packet is ever parked here.

use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

use crate::{
    driver::{TxError, TxSink},
    time::Instant,
    wire::{
        ethernet, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame,
        EthernetRepr,
    },
};

/// Cache size and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpConfig {
    /// Entries kept at most; the oldest is evicted to make room.
    pub capacity: usize,
    /// How long a learned address is trusted (Linux: base_reachable_time 30 s,
    /// plus stale time; we keep one number).
    pub reachable_time: Duration,
    /// Between requests for an unanswered address (RFC 1122 §2.3.2.1: at
    /// most one per second per destination).
    pub retry_interval: Duration,
    /// Requests sent before the resolution fails.
    pub max_requests: u32,
}

impl Default for ArpConfig {
    fn default() -> Self {
        ArpConfig {
            capacity: 1024,
            reachable_time: Duration::from_secs(60),
            retry_interval: Duration::from_secs(1),
            max_requests: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Reachable {
        mac: EthernetAddress,
        expires_at: Instant,
    },
    Pending {
        requests_sent: u32,
        next_request_at: Instant,
    },
}

/// The result of asking the cache for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Known: send now.
    Known(EthernetAddress),
    /// A request is out (or was just sent); ask again later.
    Pending,
}

/// What a timer pass asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpTimerAction {
    /// Send (another) request for this address.
    Request(Ipv4Addr),
    /// Resolution of this address failed after every retry.
    Failed(Ipv4Addr),
}

/// The neighbour cache of one core.
#[derive(Debug)]
pub struct ArpCache {
    config: ArpConfig,
    entries: HashMap<Ipv4Addr, Entry>,
    /// Pending entries, so `poll_at` costs nothing when none are.
    pending: usize,
}

impl ArpCache {
    pub fn new(config: ArpConfig) -> Self {
        let capacity = config.capacity.max(1);
        ArpCache {
            // Twice the entries we keep: with at most half the table in use,
            // tombstones left by removals are cleared by rehashing in place,
            // so the table never reallocates.
            entries: HashMap::with_capacity(capacity * 2),
            config: ArpConfig { capacity, ..config },
            pending: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The address for `ip` if it is known and fresh.
    pub fn lookup(&self, ip: Ipv4Addr, now: Instant) -> Option<EthernetAddress> {
        match self.entries.get(&ip) {
            Some(&Entry::Reachable { mac, expires_at }) if expires_at > now => Some(mac),
            _ => None,
        }
    }

    /// RFC 826's merge step: refresh `ip` if it is already in the cache
    /// (including a pending resolution). Returns whether it was there.
    pub fn update_if_present(&mut self, ip: Ipv4Addr, mac: EthernetAddress, now: Instant) -> bool {
        let expires_at = now + self.config.reachable_time;
        match self.entries.get_mut(&ip) {
            Some(e) => {
                if matches!(e, Entry::Pending { .. }) {
                    self.pending -= 1;
                }
                *e = Entry::Reachable { mac, expires_at };
                true
            }
            None => false,
        }
    }

    /// Learns `ip` -> `mac`, evicting the entry closest to expiry when full.
    pub fn insert(&mut self, ip: Ipv4Addr, mac: EthernetAddress, now: Instant) {
        if !self.update_if_present(ip, mac, now) {
            self.make_room(now);
            let expires_at = now + self.config.reachable_time;
            self.entries
                .insert(ip, Entry::Reachable { mac, expires_at });
        }
    }

    /// Starts or continues resolving `ip`. `Pending` with `request_now`
    /// true means the caller must send a request now.
    pub fn resolve(&mut self, ip: Ipv4Addr, now: Instant) -> (Resolution, bool) {
        match self.entries.get(&ip) {
            Some(&Entry::Reachable { mac, expires_at }) if expires_at > now => {
                (Resolution::Known(mac), false)
            }
            Some(Entry::Pending { .. }) => (Resolution::Pending, false),
            _ => {
                self.entries.remove(&ip);
                self.make_room(now);
                self.entries.insert(
                    ip,
                    Entry::Pending {
                        requests_sent: 1,
                        next_request_at: now + self.config.retry_interval,
                    },
                );
                self.pending += 1;
                (Resolution::Pending, true)
            }
        }
    }

    /// The next time [`ArpCache::poll`] has work: a retry or a failure.
    /// Expired reachable entries need no timer (they fail `lookup`).
    pub fn poll_at(&self) -> Option<Instant> {
        if self.pending == 0 {
            return None;
        }
        self.entries
            .values()
            .filter_map(|e| match *e {
                Entry::Pending {
                    next_request_at, ..
                } => Some(next_request_at),
                Entry::Reachable { .. } => None,
            })
            .min()
    }

    /// Runs due retries and failures, calling `act` for each.
    pub fn poll(&mut self, now: Instant, mut act: impl FnMut(ArpTimerAction)) {
        if self.pending == 0 {
            return;
        }
        let max = self.config.max_requests;
        let interval = self.config.retry_interval;
        let pending = &mut self.pending;
        self.entries.retain(|&ip, entry| match entry {
            Entry::Pending {
                requests_sent,
                next_request_at,
            } if *next_request_at <= now => {
                if *requests_sent >= max {
                    act(ArpTimerAction::Failed(ip));
                    *pending -= 1;
                    false
                } else {
                    *requests_sent += 1;
                    *next_request_at = now + interval;
                    act(ArpTimerAction::Request(ip));
                    true
                }
            }
            _ => true,
        });
    }

    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.config.capacity {
            return;
        }
        // Expired entries first; otherwise the one expiring soonest. Pending
        // entries are kept: someone is waiting on them.
        let victim = self
            .entries
            .iter()
            .filter_map(|(ip, e)| match *e {
                Entry::Reachable { expires_at, .. } => Some((expires_at.min(now), *ip)),
                Entry::Pending { .. } => None,
            })
            .min()
            .map(|(_, ip)| ip)
            .or_else(|| self.entries.keys().next().copied());
        if let Some(ip) = victim {
            if let Some(Entry::Pending { .. }) = self.entries.remove(&ip) {
                self.pending -= 1;
            }
        }
    }
}

/// Length of an Ethernet frame carrying an ARP packet. Ethernet pads it to
/// 60 bytes on the wire; we send the short frame and let the NIC pad.
pub const ARP_FRAME_LEN: usize = ethernet::HEADER_LEN + crate::wire::arp::PACKET_LEN;

/// Writes one ARP frame into `tx`.
pub fn send(
    tx: &mut impl TxSink,
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    repr: &ArpRepr,
) -> Result<(), TxError> {
    tx.send(ARP_FRAME_LEN, |buf| {
        let mut frame = EthernetFrame::new_unchecked(&mut *buf);
        EthernetRepr {
            src_addr: eth_src,
            dst_addr: eth_dst,
            ethertype: EtherType::Arp,
        }
        .emit(&mut frame);
        repr.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    })
}

/// A broadcast request for `target` from (`mac`, `ip`). With `target == ip`
/// it is a gratuitous ARP announcement (RFC 5227 §2.3), which refreshes
/// neighbours' caches when the stack takes over an address.
pub fn request(mac: EthernetAddress, ip: Ipv4Addr, target: Ipv4Addr) -> ArpRepr {
    ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    #[test]
    fn learned_addresses_expire() {
        let mut c = ArpCache::new(ArpConfig::default());
        c.insert(ip(1), MAC, Instant::ZERO);
        assert_eq!(c.lookup(ip(1), Instant::from_millis(59_999)), Some(MAC));
        assert_eq!(c.lookup(ip(1), Instant::from_millis(60_000)), None);
        // An expired entry is resolved again.
        assert_eq!(
            c.resolve(ip(1), Instant::from_millis(60_000)),
            (Resolution::Pending, true)
        );
    }

    #[test]
    fn resolution_retries_then_fails() {
        let mut c = ArpCache::new(ArpConfig::default());
        let t0 = Instant::ZERO;
        assert_eq!(c.resolve(ip(9), t0), (Resolution::Pending, true));
        assert_eq!(
            c.resolve(ip(9), t0),
            (Resolution::Pending, false),
            "one request per interval"
        );
        let mut actions = Vec::new();
        while let Some(now) = c.poll_at() {
            c.poll(now, |a| actions.push((now, a)));
        }
        assert_eq!(
            actions,
            vec![
                (Instant::from_millis(1000), ArpTimerAction::Request(ip(9))),
                (Instant::from_millis(2000), ArpTimerAction::Request(ip(9))),
                (Instant::from_millis(3000), ArpTimerAction::Failed(ip(9))),
            ]
        );
        assert!(c.is_empty());
    }

    #[test]
    fn an_answer_completes_a_pending_resolution() {
        let mut c = ArpCache::new(ArpConfig::default());
        c.resolve(ip(2), Instant::ZERO);
        assert!(c.update_if_present(ip(2), MAC, Instant::from_millis(5)));
        assert_eq!(
            c.resolve(ip(2), Instant::from_millis(6)),
            (Resolution::Known(MAC), false)
        );
        assert_eq!(c.poll_at(), None);
    }

    #[test]
    fn full_cache_evicts_without_growing() {
        let cfg = ArpConfig {
            capacity: 4,
            ..ArpConfig::default()
        };
        let mut c = ArpCache::new(cfg);
        for n in 0..20u8 {
            c.insert(ip(n), MAC, Instant::from_millis(n as u64));
            assert!(c.len() <= 4);
        }
        // The newest survive.
        assert_eq!(c.lookup(ip(19), Instant::from_millis(20)), Some(MAC));
        assert_eq!(c.lookup(ip(0), Instant::from_millis(20)), None);
    }
}
