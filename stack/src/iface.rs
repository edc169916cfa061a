//! The per-core protocol engine below TCP: Ethernet II in, ARP and IPv4
//! dispatched, ICMP echo answered; ARP resolution and its timers.
//!
//! Sans-IO: frames and `now` in, frames out through a [`TxSink`], and
//! [`Interface::poll_at`] says when [`Interface::poll`] has timer work. No
//! allocation per frame: parsing is zero-copy, answers are written in place
//! into transmit buffers.

use std::net::Ipv4Addr;

use crate::{
    arp::{self, ArpCache, ArpConfig, ArpTimerAction, Resolution},
    counters::{Counters, DropReason},
    driver::{TxError, TxSink},
    icmp::{self, IcmpInput},
    ipv4::{self, Ipv4Config},
    time::Instant,
    wire::{
        ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, IpProtocol,
        WireError,
    },
};

/// One core's view of the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub mac: EthernetAddress,
    pub ipv4: Ipv4Config,
    /// Owned-IP mode: the stack answers ARP and ICMP for its address and
    /// announces it at start. In shared-IP mode the kernel does both.
    pub owns_ip: bool,
    pub arp: ArpConfig,
}

/// The engine.
#[derive(Debug)]
pub struct Interface {
    config: InterfaceConfig,
    arp: ArpCache,
    counters: Counters,
}

impl Interface {
    pub fn new(config: InterfaceConfig) -> Self {
        Interface {
            arp: ArpCache::new(config.arp.clone()),
            config,
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &InterfaceConfig {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn arp_cache(&self) -> &ArpCache {
        &self.arp
    }

    /// Start-of-life work: in owned-IP mode, a gratuitous ARP announcement
    /// (RFC 5227 §2.3) so neighbours learn that the address now lives here.
    pub fn start(&mut self, _now: Instant, tx: &mut impl TxSink) {
        if self.config.owns_ip {
            let ip = self.config.ipv4.addr;
            self.send_arp_request(tx, ip);
        }
    }

    /// Handles one received Ethernet frame.
    pub fn receive_frame(&mut self, frame: &[u8], now: Instant, tx: &mut impl TxSink) {
        self.counters.rx_frames += 1;
        self.counters.rx_bytes += frame.len() as u64;
        let eth = match EthernetFrame::new_checked(frame) {
            Ok(eth) => eth,
            Err(_) => return self.counters.drop(DropReason::EthernetTruncated),
        };
        let dst = eth.dst_addr();
        if dst != self.config.mac && !dst.is_broadcast() {
            return self.counters.drop(DropReason::NotOurMac);
        }
        let src_mac = eth.src_addr();
        match eth.ethertype() {
            EtherType::Arp => self.receive_arp(eth.payload(), now, tx),
            EtherType::Ipv4 => self.receive_ipv4(src_mac, eth.payload(), now, tx),
            _ => self.counters.drop(DropReason::EtherType),
        }
    }

    /// RFC 826 "Packet Reception", for Ethernet and IPv4 only.
    fn receive_arp(&mut self, bytes: &[u8], now: Instant, tx: &mut impl TxSink) {
        let repr = match ArpPacket::new_checked(bytes).and_then(|p| ArpRepr::parse(&p)) {
            Ok(r) => r,
            Err(WireError::Unsupported) => return self.counters.drop(DropReason::ArpUnsupported),
            Err(_) => return self.counters.drop(DropReason::ArpMalformed),
        };
        let local = self.config.ipv4.addr;
        let sender_ip = repr.source_protocol_addr;
        let sender_mac = repr.source_hardware_addr;
        if sender_ip == local || !sender_mac.is_unicast() {
            // Our own announcement looped back, an address conflict, or a
            // bogus sender: nothing to learn or answer.
            return self.counters.drop(DropReason::ArpNotForUs);
        }
        // A probe (RFC 5227 §2.1.1) has sender 0.0.0.0: answer, don't learn.
        let learnable = !sender_ip.is_unspecified();
        // RFC 826: refresh a known sender whoever the target is ...
        let merged = learnable && self.arp.update_if_present(sender_ip, sender_mac, now);
        if repr.target_protocol_addr != local {
            if !merged {
                self.counters.drop(DropReason::ArpNotForUs);
            }
            return;
        }
        // ... and learn a new one only when we are the target.
        if learnable && !merged {
            self.arp.insert(sender_ip, sender_mac, now);
        }
        match repr.operation {
            ArpOperation::Request => {
                self.counters.arp_requests_in += 1;
                if !self.config.owns_ip {
                    // The kernel answers for a shared address.
                    return;
                }
                let reply = ArpRepr {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: self.config.mac,
                    source_protocol_addr: local,
                    target_hardware_addr: sender_mac,
                    target_protocol_addr: sender_ip,
                };
                if self.send_arp(tx, sender_mac, &reply) {
                    self.counters.arp_replies_out += 1;
                }
            }
            ArpOperation::Reply => self.counters.arp_replies_in += 1,
            ArpOperation::Unknown(_) => self.counters.drop(DropReason::ArpUnsupported),
        }
    }

    fn receive_ipv4(
        &mut self,
        src_mac: EthernetAddress,
        bytes: &[u8],
        now: Instant,
        tx: &mut impl TxSink,
    ) {
        let (ip, payload) = match ipv4::accept(bytes, self.config.ipv4.addr) {
            Ok(v) => v,
            Err(reason) => return self.counters.drop(reason),
        };
        let _ = now;
        match ip.next_header {
            IpProtocol::Icmp => self.receive_icmp(src_mac, ip.src_addr, payload, tx),
            IpProtocol::Tcp => self.counters.drop(DropReason::TcpUnhandled),
            _ => self.counters.drop(DropReason::Ipv4Protocol),
        }
    }

    fn receive_icmp(
        &mut self,
        peer_mac: EthernetAddress,
        peer_ip: Ipv4Addr,
        payload: &[u8],
        tx: &mut impl TxSink,
    ) {
        if !self.config.owns_ip {
            return self.counters.drop(DropReason::IcmpNotOwned);
        }
        match icmp::accept(payload) {
            Ok(IcmpInput::EchoRequest {
                ident,
                seq_no,
                data,
            }) => {
                self.counters.icmp_echo_in += 1;
                let sent = icmp::send_echo_reply(
                    tx,
                    self.config.mac,
                    peer_mac,
                    self.config.ipv4.addr,
                    peer_ip,
                    ident,
                    seq_no,
                    data,
                );
                match sent {
                    Ok(len) => {
                        self.counters.icmp_echo_out += 1;
                        self.count_tx(len);
                    }
                    Err(e) => self.count_tx_error(e),
                }
            }
            Ok(IcmpInput::Ignored) => {}
            Err(reason) => self.counters.drop(reason),
        }
    }

    /// The link-layer address for `dst`: known, or `None` while ARP resolves
    /// it (a request goes out now if none is pending; retries run in
    /// [`Interface::poll`]). Also `None` when there is no route.
    pub fn resolve(
        &mut self,
        dst: Ipv4Addr,
        now: Instant,
        tx: &mut impl TxSink,
    ) -> Option<EthernetAddress> {
        let hop = self.config.ipv4.next_hop(dst)?;
        match self.arp.resolve(hop, now) {
            (Resolution::Known(mac), _) => Some(mac),
            (Resolution::Pending, request_now) => {
                if request_now {
                    self.send_arp_request(tx, hop);
                }
                None
            }
        }
    }

    /// When [`Interface::poll`] next has work.
    pub fn poll_at(&self) -> Option<Instant> {
        self.arp.poll_at()
    }

    /// Runs due timers: ARP retries and failures.
    pub fn poll(&mut self, now: Instant, tx: &mut impl TxSink) {
        let mut requests = [Ipv4Addr::UNSPECIFIED; 16];
        let mut n = 0;
        let counters = &mut self.counters;
        self.arp.poll(now, |action| match action {
            ArpTimerAction::Request(ip) if n < requests.len() => {
                requests[n] = ip;
                n += 1;
            }
            ArpTimerAction::Request(_) => {}
            ArpTimerAction::Failed(_) => counters.arp_resolve_failed += 1,
        });
        for &ip in &requests[..n] {
            self.send_arp_request(tx, ip);
        }
    }

    fn send_arp_request(&mut self, tx: &mut impl TxSink, target: Ipv4Addr) {
        let req = arp::request(self.config.mac, self.config.ipv4.addr, target);
        if self.send_arp(tx, EthernetAddress::BROADCAST, &req) {
            self.counters.arp_requests_out += 1;
        }
    }

    fn send_arp(&mut self, tx: &mut impl TxSink, dst: EthernetAddress, repr: &ArpRepr) -> bool {
        match arp::send(tx, self.config.mac, dst, repr) {
            Ok(()) => {
                self.count_tx(arp::ARP_FRAME_LEN);
                true
            }
            Err(e) => {
                self.count_tx_error(e);
                false
            }
        }
    }

    fn count_tx(&mut self, len: usize) {
        self.counters.tx_frames += 1;
        self.counters.tx_bytes += len as u64;
    }

    fn count_tx_error(&mut self, e: TxError) {
        self.counters.drop(match e {
            TxError::NoBuffer => DropReason::TxNoBuffer,
            TxError::TooLong => DropReason::TxTooLong,
        });
    }
}
