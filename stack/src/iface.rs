//! The per-core protocol engine: Ethernet II in, ARP and IPv4 dispatched,
//! ICMP echo answered, TCP handed to the core's shard; ARP resolution and
//! the timers of both.
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
    hold::HoldQueue,
    icmp::{self, IcmpInput},
    ipv4::{self, Ipv4Config},
    tcp::shard::{Outgoing, Shard},
    time::Instant,
    wire::{
        ethernet, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame,
        EthernetRepr, IpProtocol, Ipv4Packet, TcpControl, TcpPacket, WireError,
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
    /// This core's place among the interface's cores: (index, cores).
    core: (usize, usize),
    arp: ArpCache,
    counters: Counters,
    /// TCP, when the stack serves any.
    tcp: Option<Shard>,
    /// When we last defended our address against a conflicting claim.
    last_defense: Option<Instant>,
    /// TCP frames waiting for ARP to resolve their next hop.
    held: HoldQueue,
}

/// What the caller does with a received frame after
/// [`Interface::receive_frame_routed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Handled here.
    Done,
    /// Belongs to core `n` (a TCP segment for its active open): hand it
    /// over unchanged.
    Forward(usize),
    /// Handled here, and every other core should learn from it
    /// ([`Interface::learn_arp`]).
    Share,
}

/// RFC 5227 §2.4 (b): at most one defensive announcement per this interval.
const DEFEND_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Interface {
    pub fn new(config: InterfaceConfig) -> Self {
        Interface {
            arp: ArpCache::new(config.arp.clone()),
            config,
            counters: Counters::default(),
            core: (0, 1),
            tcp: None,
            last_defense: None,
            held: HoldQueue::default(),
        }
    }

    /// Gives the interface a TCP shard: TCP segments for our address go to
    /// it from now on.
    pub fn with_tcp(mut self, shard: Shard) -> Self {
        self.tcp = Some(shard);
        self
    }

    /// Makes this interface core `index` of `cores` serving the same
    /// address: its active opens use its own share of the ephemeral ports,
    /// and [`Interface::receive_frame_routed`] names the owner of segments
    /// that belong to another core, and ARP news every core should learn.
    pub fn set_core(&mut self, index: usize, cores: usize) {
        self.core = (index, cores.max(1));
        if let Some(shard) = self.tcp.as_mut() {
            shard.set_port_partition(index, cores);
        }
    }

    pub fn tcp(&self) -> Option<&Shard> {
        self.tcp.as_ref()
    }

    pub fn tcp_mut(&mut self) -> Option<&mut Shard> {
        self.tcp.as_mut()
    }

    pub fn config(&self) -> &InterfaceConfig {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// For the runtime, which counts frames it moves between cores.
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
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
    #[inline]
    pub fn receive_frame(&mut self, frame: &[u8], now: Instant, tx: &mut impl TxSink) {
        self.receive_frame_routed(frame, now, tx);
    }

    /// Handles one received Ethernet frame, or says which core must: on a
    /// multi-queue interface the NIC may put a reply to one core's active
    /// open on another core's queue ([`Route::Forward`]), and ARP learned
    /// on one core is news for all ([`Route::Share`], see
    /// [`Interface::learn_arp`]).
    #[inline]
    pub fn receive_frame_routed(
        &mut self,
        frame: &[u8],
        now: Instant,
        tx: &mut impl TxSink,
    ) -> Route {
        self.counters.rx_frames += 1;
        self.counters.rx_bytes += frame.len() as u64;
        self.handle_frame(frame, now, tx)
    }

    /// Handles a frame another core received and handed over (counted
    /// there as received).
    pub fn receive_forwarded(&mut self, frame: &[u8], now: Instant, tx: &mut impl TxSink) {
        self.counters.forwarded_in += 1;
        self.handle_frame(frame, now, tx);
    }

    fn handle_frame(&mut self, frame: &[u8], now: Instant, tx: &mut impl TxSink) -> Route {
        let eth = match EthernetFrame::new_checked(frame) {
            Ok(eth) => eth,
            Err(_) => {
                self.counters.drop(DropReason::EthernetTruncated);
                return Route::Done;
            }
        };
        let dst = eth.dst_addr();
        if dst != self.config.mac && !dst.is_broadcast() {
            self.counters.drop(DropReason::NotOurMac);
            return Route::Done;
        }
        let src_mac = eth.src_addr();
        match eth.ethertype() {
            EtherType::Arp => {
                let learned = self.receive_arp(eth.payload(), now, tx);
                if learned && self.core.1 > 1 {
                    return Route::Share;
                }
                Route::Done
            }
            EtherType::Ipv4 => self.receive_ipv4(src_mac, eth.payload(), now, tx),
            _ => {
                self.counters.drop(DropReason::EtherType);
                Route::Done
            }
        }
    }

    /// Learns from an ARP frame another core received (and answered): the
    /// sender's address goes into this core's cache, nothing is sent.
    pub fn learn_arp(&mut self, frame: &[u8], now: Instant, tx: &mut impl TxSink) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        let Ok(repr) = ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p))
        else {
            return;
        };
        let (ip, mac) = (repr.source_protocol_addr, repr.source_hardware_addr);
        if ip != self.config.ipv4.addr && !ip.is_unspecified() && mac.is_unicast() {
            self.arp.insert(ip, mac, now);
            self.release_held(ip, mac, tx);
        }
    }

    /// Sends the frames that waited for `ip`'s link address.
    fn release_held(&mut self, ip: Ipv4Addr, mac: EthernetAddress, tx: &mut impl TxSink) {
        if self.held.is_empty() {
            return;
        }
        let r = self.held.release(ip, mac, tx);
        self.counters.tx_frames += r.sent as u64;
        self.counters.tx_bytes += r.bytes as u64;
        self.counters.tcp_segments_out += r.sent as u64;
        self.counters
            .drop_n(DropReason::TxNoBuffer, r.failed as u64);
    }

    /// RFC 826 "Packet Reception", for Ethernet and IPv4 only. Returns
    /// whether it learned or refreshed a neighbour.
    fn receive_arp(&mut self, bytes: &[u8], now: Instant, tx: &mut impl TxSink) -> bool {
        let repr = match ArpPacket::new_checked(bytes).and_then(|p| ArpRepr::parse(&p)) {
            Ok(r) => r,
            Err(WireError::Unsupported) => {
                self.counters.drop(DropReason::ArpUnsupported);
                return false;
            }
            Err(_) => {
                self.counters.drop(DropReason::ArpMalformed);
                return false;
            }
        };
        let local = self.config.ipv4.addr;
        let sender_ip = repr.source_protocol_addr;
        let sender_mac = repr.source_hardware_addr;
        if sender_ip == local && sender_mac != self.config.mac {
            // Another host claims our address (RFC 5227 §2.4): count it and,
            // owning the address, defend it with an announcement, at most
            // one per DEFEND_INTERVAL so two defenders cannot storm.
            self.counters.drop(DropReason::ArpConflict);
            let due = self
                .last_defense
                .is_none_or(|t| now.saturating_duration_since(t) >= DEFEND_INTERVAL);
            if self.config.owns_ip && due {
                self.last_defense = Some(now);
                self.send_arp_request(tx, local);
            }
            return false;
        }
        if sender_ip == local || !sender_mac.is_unicast() {
            // Our own announcement looped back, or a bogus sender: nothing
            // to learn or answer.
            self.counters.drop(DropReason::ArpNotForUs);
            return false;
        }
        // A probe (RFC 5227 §2.1.1) has sender 0.0.0.0: answer, don't learn.
        let learnable = !sender_ip.is_unspecified();
        // RFC 826: refresh a known sender whoever the target is ...
        let merged = learnable && self.arp.update_if_present(sender_ip, sender_mac, now);
        if repr.target_protocol_addr != local {
            if merged {
                self.release_held(sender_ip, sender_mac, tx);
            } else {
                self.counters.drop(DropReason::ArpNotForUs);
            }
            return merged;
        }
        // ... and learn a new one only when we are the target.
        if learnable && !merged {
            self.arp.insert(sender_ip, sender_mac, now);
        }
        if learnable {
            self.release_held(sender_ip, sender_mac, tx);
        }
        match repr.operation {
            ArpOperation::Request => {
                self.counters.arp_requests_in += 1;
                if !self.config.owns_ip {
                    // The kernel answers for a shared address.
                    return learnable;
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
        learnable
    }

    fn receive_ipv4(
        &mut self,
        src_mac: EthernetAddress,
        bytes: &[u8],
        now: Instant,
        tx: &mut impl TxSink,
    ) -> Route {
        let (ip, payload) = match ipv4::accept(bytes, self.config.ipv4.addr) {
            Ok(v) => v,
            Err(reason) => {
                self.counters.drop(reason);
                return Route::Done;
            }
        };
        match ip.next_header {
            IpProtocol::Icmp => self.receive_icmp(src_mac, ip.src_addr, payload, now, tx),
            IpProtocol::Tcp => {
                if let Some(owner) = self.foreign_owner(payload) {
                    return Route::Forward(owner);
                }
                let Interface {
                    config,
                    arp,
                    counters,
                    tcp,
                    held,
                    ..
                } = self;
                let Some(shard) = tcp.as_mut() else {
                    counters.drop(DropReason::TcpUnhandled);
                    return Route::Done;
                };
                let mut out = TcpOutput::default();
                shard.receive(now, src_mac, ip.src_addr, payload, counters, |seg| {
                    out.send(tx, config, arp, held, now, seg)
                });
                out.count(&mut self.counters);
            }
            _ => self.counters.drop(DropReason::Ipv4Protocol),
        }
        Route::Done
    }

    /// The core that owns a TCP segment's destination port, when that is
    /// another core: a reply to its active open (ephemeral ports are split
    /// between cores) that the NIC put on our queue. A listener here takes
    /// precedence.
    fn foreign_owner(&self, segment: &[u8]) -> Option<usize> {
        let (index, cores) = self.core;
        if cores < 2 || segment.len() < 4 {
            return None;
        }
        let port = u16::from_be_bytes([segment[2], segment[3]]);
        let owner = crate::tcp::shard::ephemeral_owner(port, cores)?;
        let listening = self.tcp.as_ref().is_some_and(|s| s.is_listening(port));
        (owner != index && !listening).then_some(owner)
    }

    fn receive_icmp(
        &mut self,
        peer_mac: EthernetAddress,
        peer_ip: Ipv4Addr,
        payload: &[u8],
        now: Instant,
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
            Ok(IcmpInput::FragmentationNeeded {
                next_hop_mtu,
                quoted,
            }) => {
                // RFC 5927 §4: act only on a quote of a segment of ours,
                // for a connection we have, whose sequence number is in
                // flight; the connection checks the last part.
                let ours = icmp::quoted_tcp(quoted).filter(|q| q.0 == self.config.ipv4.addr);
                let applied = match (ours, self.tcp.as_mut()) {
                    (Some((_, remote, local_port, remote_port, seq)), Some(shard)) => shard
                        .path_mtu(
                            now,
                            std::net::SocketAddrV4::new(remote, remote_port),
                            local_port,
                            seq,
                            next_hop_mtu,
                        ),
                    _ => false,
                };
                if applied {
                    self.counters.tcp_pmtu_lowered += 1;
                } else {
                    self.counters.drop(DropReason::IcmpFragNeededIgnored);
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

    /// Resets every TCP connection still open and frees them all (the end of
    /// a shutdown, after [`Shard::close_all`] had its grace period).
    pub fn destroy_tcp(&mut self, now: Instant, tx: &mut impl TxSink) {
        if let Some(shard) = self.tcp.as_mut() {
            let mut out = TcpOutput::default();
            let (config, arp, held) = (&self.config, &mut self.arp, &mut self.held);
            shard.destroy(now, |seg| out.send(tx, config, arp, held, now, seg));
            out.count(&mut self.counters);
        }
    }

    /// When [`Interface::poll`] next has work (`now` if it has some now).
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        let tcp = self.tcp.as_ref().and_then(|s| s.poll_at(now));
        [self.arp.poll_at(), tcp].into_iter().flatten().min()
    }

    /// Runs due timers (ARP retries and failures, TCP) and sends what TCP
    /// has queued.
    pub fn poll(&mut self, now: Instant, tx: &mut impl TxSink) {
        if let Some(shard) = self.tcp.as_mut() {
            let mut out = TcpOutput::default();
            let (config, arp, held) = (&self.config, &mut self.arp, &mut self.held);
            shard.dispatch(now, |seg| out.send(tx, config, arp, held, now, seg));
            out.count(&mut self.counters);
            self.counters.tcp_retransmits = shard.retransmits_total;
            self.counters.tcp_timeouts = shard.timeouts_total;
            self.counters.tcp_loss_probes = shard.loss_probes_total;
            self.counters.tcp_pmtu_black_holes = shard.black_holes_total;
            self.counters.tcp_pmtu_probes_acked = shard.mtu_probes_total.0;
            self.counters.tcp_pmtu_probes_lost = shard.mtu_probes_total.1;
            self.counters.tcp_dsacks = shard.spurious_total.0;
            self.counters.tcp_spurious_undos = shard.spurious_total.1;
            self.counters.tcp_loss_probe_recoveries = shard.tlp_recoveries_total;
        }
        let mut requests = [Ipv4Addr::UNSPECIFIED; 16];
        let mut n = 0;
        let (counters, held) = (&mut self.counters, &mut self.held);
        self.arp.poll(now, |action| match action {
            ArpTimerAction::Request(ip) if n < requests.len() => {
                requests[n] = ip;
                n += 1;
            }
            ArpTimerAction::Request(_) => {}
            ArpTimerAction::Failed(ip) => {
                counters.arp_resolve_failed += 1;
                counters.drop_n(DropReason::TcpNoRoute, held.discard(ip) as u64);
            }
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

/// Frames TCP segments (Ethernet, IPv4, TCP with its checksum) straight
/// into transmit buffers, and tallies what happened for the counters.
#[derive(Default)]
struct TcpOutput {
    frames: u64,
    bytes: u64,
    no_buffer: u64,
    no_route: u64,
    too_long: u64,
    resets: u64,
    arp_requests: u64,
}

impl TcpOutput {
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        tx: &mut impl TxSink,
        config: &InterfaceConfig,
        arp: &mut ArpCache,
        held: &mut HoldQueue,
        now: Instant,
        seg: Outgoing,
    ) -> Result<(), TxError> {
        let tcp_len = seg.repr.buffer_len();
        let ip = ipv4::repr(config.ipv4.addr, seg.dst, IpProtocol::Tcp, tcp_len);
        let len = ethernet::HEADER_LEN + ip.buffer_len();
        let write = |buf: &mut [u8], mac: EthernetAddress| {
            let mut frame = EthernetFrame::new_unchecked(&mut *buf);
            EthernetRepr {
                src_addr: config.mac,
                dst_addr: mac,
                ethertype: EtherType::Ipv4,
            }
            .emit(&mut frame);
            let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
            ip.emit(&mut packet);
            seg.repr.emit(
                &mut TcpPacket::new_unchecked(packet.payload_mut()),
                config.ipv4.addr,
                seg.dst,
            );
        };
        let mac = match seg.peer_mac {
            Some(mac) => mac,
            None => {
                let Some(hop) = config.ipv4.next_hop(seg.dst) else {
                    self.no_route += 1;
                    return Ok(());
                };
                match arp.resolve(hop, now) {
                    (Resolution::Known(mac), _) => mac,
                    (Resolution::Pending, request_now) => {
                        // Not resolved yet: the frame waits for the reply
                        // (RFC 1122 §2.3.2.2) while ARP asks (and retries
                        // from Interface::poll).
                        if request_now {
                            let req = arp::request(config.mac, config.ipv4.addr, hop);
                            if arp::send(tx, config.mac, EthernetAddress::BROADCAST, &req).is_ok() {
                                self.arp_requests += 1;
                            }
                        }
                        self.no_route +=
                            held.hold(hop, len, |buf| write(buf, EthernetAddress([0; 6]))) as u64;
                        return Ok(());
                    }
                }
            }
        };
        let sent = tx.send(len, |buf| write(buf, mac));
        match sent {
            Ok(()) => {
                self.frames += 1;
                self.bytes += len as u64;
                self.resets += u64::from(seg.repr.control == TcpControl::Rst);
                Ok(())
            }
            Err(e) => {
                match e {
                    TxError::NoBuffer => self.no_buffer += 1,
                    TxError::TooLong => self.too_long += 1,
                }
                Err(e)
            }
        }
    }

    fn count(&self, c: &mut Counters) {
        c.tx_frames += self.frames;
        c.tx_bytes += self.bytes;
        c.tcp_segments_out += self.frames;
        c.arp_requests_out += self.arp_requests;
        c.tx_frames += self.arp_requests;
        c.tx_bytes += self.arp_requests * arp::ARP_FRAME_LEN as u64;
        c.drop_n(DropReason::TxNoBuffer, self.no_buffer);
        c.drop_n(DropReason::TcpNoRoute, self.no_route);
        c.drop_n(DropReason::TxTooLong, self.too_long);
        c.tcp_resets_out += self.resets;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        driver::capture::Capture,
        testkit::{self, Host},
        wire::Ipv4Packet,
    };

    const STACK: Host = Host {
        mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
        ip: Ipv4Addr::new(10, 99, 0, 1),
    };
    const PEER: Host = Host {
        mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x02]),
        ip: Ipv4Addr::new(10, 99, 0, 2),
    };

    fn iface(owns_ip: bool) -> Interface {
        Interface::new(InterfaceConfig {
            mac: STACK.mac,
            ipv4: Ipv4Config {
                addr: STACK.ip,
                prefix_len: 24,
                gateway: None,
            },
            owns_ip,
            arp: ArpConfig::default(),
        })
    }

    fn feed(iface: &mut Interface, frame: &[u8]) -> Vec<Vec<u8>> {
        let mut cap = Capture::new();
        iface.receive_frame(frame, Instant::ZERO, &mut cap);
        cap.frames().to_vec()
    }

    #[test]
    fn answers_an_arp_request_for_its_address_and_learns_the_sender() {
        let mut i = iface(true);
        let out = feed(&mut i, &testkit::arp_request(PEER, STACK.ip));
        assert_eq!(out.len(), 1);
        let (dst, reply) = testkit::parse_arp(&out[0]).unwrap();
        assert_eq!(dst, PEER.mac);
        assert_eq!(reply.operation, ArpOperation::Reply);
        assert_eq!(reply.source_hardware_addr, STACK.mac);
        assert_eq!(reply.source_protocol_addr, STACK.ip);
        assert_eq!(reply.target_hardware_addr, PEER.mac);
        assert_eq!(reply.target_protocol_addr, PEER.ip);
        assert_eq!(i.arp_cache().lookup(PEER.ip, Instant::ZERO), Some(PEER.mac));
        assert_eq!(i.counters().arp_requests_in, 1);
        assert_eq!(i.counters().arp_replies_out, 1);
        assert_eq!(i.counters().tx_frames, 1);
    }

    #[test]
    fn ignores_arp_for_other_addresses() {
        let mut i = iface(true);
        assert!(feed(
            &mut i,
            &testkit::arp_request(PEER, Ipv4Addr::new(10, 99, 0, 3))
        )
        .is_empty());
        assert_eq!(i.counters().drops(DropReason::ArpNotForUs), 1);
        assert!(
            i.arp_cache().is_empty(),
            "RFC 826: learn only when we are the target"
        );
    }

    #[test]
    fn address_conflicts_are_counted_and_defended_at_most_every_ten_seconds() {
        let mut i = iface(true);
        let impostor = Host {
            mac: PEER.mac,
            ip: STACK.ip,
        };
        let claim = testkit::arp_request(impostor, STACK.ip);
        let mut cap = Capture::new();
        for ms in [0, 5_000, 10_000] {
            i.receive_frame(&claim, Instant::from_millis(ms), &mut cap);
        }
        assert_eq!(i.counters().drops(DropReason::ArpConflict), 3);
        assert_eq!(
            cap.frames().len(),
            2,
            "defended at 0 s and 10 s, not at 5 s"
        );
        let (dst, defense) = testkit::parse_arp(&cap.frames()[0]).unwrap();
        assert!(dst.is_broadcast());
        assert_eq!(
            (defense.source_hardware_addr, defense.source_protocol_addr),
            (STACK.mac, STACK.ip)
        );
        assert!(i.arp_cache().is_empty());
        // Our own announcement coming back is not a conflict.
        let ours = testkit::arp_request(STACK, STACK.ip);
        assert!(feed(&mut i, &ours).is_empty());
        assert_eq!(i.counters().drops(DropReason::ArpNotForUs), 1);
        // In shared-IP mode the kernel defends; we only count.
        let mut shared = iface(false);
        assert!(feed(&mut shared, &claim).is_empty());
        assert_eq!(shared.counters().drops(DropReason::ArpConflict), 1);
    }

    #[test]
    fn shared_ip_mode_leaves_arp_and_icmp_to_the_kernel() {
        let mut i = iface(false);
        assert!(feed(&mut i, &testkit::arp_request(PEER, STACK.ip)).is_empty());
        assert_eq!(i.counters().arp_requests_in, 1);
        assert!(feed(&mut i, &testkit::echo_request(PEER, STACK, 1, 1, b"x")).is_empty());
        assert_eq!(i.counters().drops(DropReason::IcmpNotOwned), 1);
        let mut cap = Capture::new();
        i.start(Instant::ZERO, &mut cap);
        assert!(
            cap.frames().is_empty(),
            "no announcement for a shared address"
        );
    }

    #[test]
    fn announces_its_address_at_start() {
        let mut i = iface(true);
        let mut cap = Capture::new();
        i.start(Instant::ZERO, &mut cap);
        let (dst, arp) = testkit::parse_arp(&cap.frames()[0]).unwrap();
        assert!(dst.is_broadcast());
        assert_eq!(arp.operation, ArpOperation::Request);
        assert_eq!(arp.source_protocol_addr, STACK.ip);
        assert_eq!(arp.target_protocol_addr, STACK.ip);
    }

    #[test]
    fn answers_ping_with_the_same_identifier_sequence_and_data() {
        let mut i = iface(true);
        let data: Vec<u8> = (0..56).collect();
        let out = feed(
            &mut i,
            &testkit::echo_request(PEER, STACK, 0x1234, 7, &data),
        );
        assert_eq!(out.len(), 1);
        let reply =
            testkit::parse_echo_reply(&out[0]).expect("valid echo reply, checksums included");
        assert_eq!(
            reply,
            testkit::EchoReply {
                eth_src: STACK.mac,
                eth_dst: PEER.mac,
                ip_src: STACK.ip,
                ip_dst: PEER.ip,
                ttl: crate::ipv4::DEFAULT_TTL,
                ident: 0x1234,
                seq_no: 7,
                data,
            }
        );
        assert_eq!(
            (i.counters().icmp_echo_in, i.counters().icmp_echo_out),
            (1, 1)
        );
    }

    #[test]
    fn answers_a_padded_minimum_size_ping() {
        let mut i = iface(true);
        let mut frame = testkit::echo_request(PEER, STACK, 1, 1, b"");
        frame.resize(60, 0); // Ethernet minimum: padding after the datagram
        let out = feed(&mut i, &frame);
        assert_eq!(testkit::parse_echo_reply(&out[0]).unwrap().data, b"");
    }

    #[test]
    fn drops_frames_for_other_macs() {
        let mut i = iface(true);
        let mut frame = testkit::echo_request(PEER, STACK, 1, 1, b"x");
        frame[..6].copy_from_slice(&[0x02, 9, 9, 9, 9, 9]);
        assert!(feed(&mut i, &frame).is_empty());
        assert_eq!(i.counters().drops(DropReason::NotOurMac), 1);
    }

    /// Every malformed frame is a counted drop with its own reason.
    #[test]
    fn malformed_frames_are_counted_by_reason() {
        let good = testkit::echo_request(PEER, STACK, 1, 1, b"abcdefgh");
        let ip_at = 14;
        let icmp_at = 34;
        let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = good.clone();
            f(&mut v);
            v
        };
        let refill_ip = |v: &mut Vec<u8>| {
            Ipv4Packet::new_unchecked(&mut v[ip_at..]).fill_checksum();
        };
        let cases: Vec<(Vec<u8>, DropReason)> = vec![
            (good[..10].to_vec(), DropReason::EthernetTruncated),
            (
                mutate(&|v| v[12..14].copy_from_slice(&[0x86, 0xdd])),
                DropReason::EtherType,
            ),
            (good[..ip_at + 12].to_vec(), DropReason::Ipv4Truncated),
            (mutate(&|v| v[ip_at] = 0x55), DropReason::Ipv4Malformed),
            (mutate(&|v| v[ip_at] = 0x44), DropReason::Ipv4Malformed),
            (mutate(&|v| v[ip_at] = 0x4f), DropReason::Ipv4Truncated),
            (
                mutate(&|v| {
                    v[ip_at + 2..ip_at + 4].copy_from_slice(&10u16.to_be_bytes());
                    refill_ip(v)
                }),
                DropReason::Ipv4Malformed,
            ),
            (
                mutate(&|v| {
                    v[ip_at + 2..ip_at + 4].copy_from_slice(&2000u16.to_be_bytes());
                    refill_ip(v)
                }),
                DropReason::Ipv4Truncated,
            ),
            (mutate(&|v| v[ip_at + 10] ^= 1), DropReason::Ipv4Checksum),
            (
                mutate(&|v| {
                    v[ip_at + 19] = 3;
                    refill_ip(v)
                }),
                DropReason::Ipv4NotForUs,
            ),
            (
                mutate(&|v| {
                    v[ip_at + 6] = 0x20; // more fragments
                    refill_ip(v)
                }),
                DropReason::Ipv4Fragment,
            ),
            (
                mutate(&|v| {
                    v[ip_at + 12..ip_at + 16].copy_from_slice(&[224, 0, 0, 1]);
                    refill_ip(v)
                }),
                DropReason::Ipv4BadSource,
            ),
            (
                mutate(&|v| {
                    v[ip_at + 9] = 17;
                    refill_ip(v)
                }),
                DropReason::Ipv4Protocol,
            ),
            (
                mutate(&|v| {
                    v[ip_at + 9] = 6;
                    refill_ip(v)
                }),
                DropReason::TcpUnhandled,
            ),
            (
                mutate(&|v| v[icmp_at + 8] ^= 0xff),
                DropReason::IcmpChecksum,
            ),
            (
                mutate(&|v| {
                    v.truncate(icmp_at + 4);
                    v[ip_at + 2..ip_at + 4].copy_from_slice(&24u16.to_be_bytes());
                    refill_ip(v)
                }),
                DropReason::IcmpTruncated,
            ),
        ];
        for (frame, reason) in cases {
            let mut i = iface(true);
            let out = feed(&mut i, &frame);
            assert!(out.is_empty(), "{reason:?}: no answer");
            assert_eq!(
                i.counters().drops(reason),
                1,
                "{reason:?}: {}",
                i.counters()
            );
            assert_eq!(i.counters().total_drops(), 1, "{reason:?}: only one reason");
        }
    }

    #[test]
    fn resolves_with_retries_and_learns_from_the_reply() {
        let mut i = iface(true);
        let mut cap = Capture::new();
        assert_eq!(i.resolve(PEER.ip, Instant::ZERO, &mut cap), None);
        let (_, req) = testkit::parse_arp(&cap.frames()[0]).unwrap();
        assert_eq!(req.target_protocol_addr, PEER.ip);
        // No answer: one retry after the interval.
        cap.clear();
        let t1 = i.poll_at(Instant::ZERO).unwrap();
        assert_eq!(t1, Instant::ZERO + Duration::from_secs(1));
        i.poll(t1, &mut cap);
        assert_eq!(cap.frames().len(), 1);
        // The answer arrives.
        i.receive_frame(&testkit::arp_reply(PEER, STACK), t1, &mut cap);
        assert_eq!(i.resolve(PEER.ip, t1, &mut cap), Some(PEER.mac));
        assert_eq!(i.poll_at(t1), None);
        assert_eq!(i.counters().arp_replies_in, 1);
        // Off-link without a gateway: no route, no request.
        cap.clear();
        assert_eq!(i.resolve(Ipv4Addr::new(192, 0, 2, 1), t1, &mut cap), None);
        assert!(cap.frames().is_empty());
    }

    #[test]
    fn unanswered_resolution_fails_after_its_retries() {
        let mut i = iface(true);
        let mut cap = Capture::new();
        i.resolve(PEER.ip, Instant::ZERO, &mut cap);
        while let Some(at) = i.poll_at(Instant::ZERO) {
            i.poll(at, &mut cap);
        }
        assert_eq!(cap.frames().len(), 3, "initial request and two retries");
        assert_eq!(i.counters().arp_resolve_failed, 1);
    }

    #[test]
    fn transmit_exhaustion_is_a_counted_drop() {
        let mut i = iface(true);
        let mut cap = Capture::new();
        cap.limit = Some(0);
        i.receive_frame(
            &testkit::echo_request(PEER, STACK, 1, 1, b"x"),
            Instant::ZERO,
            &mut cap,
        );
        assert_eq!(i.counters().drops(DropReason::TxNoBuffer), 1);
        assert_eq!(i.counters().icmp_echo_out, 0);
    }

    /// Random and mutated frames: never a panic, and every frame is either
    /// answered, ignored as valid, or dropped under exactly one reason.
    #[test]
    fn random_frames_never_panic_and_are_accounted_for() {
        let mut rng = fastrand::Rng::with_seed(0xb1a5);
        let seeds = [
            testkit::echo_request(PEER, STACK, 9, 9, b"0123456789"),
            testkit::arp_request(PEER, STACK.ip),
        ];
        let mut i = iface(true);
        let mut cap = Capture::new();
        let mut frame = Vec::new();
        for n in 0..200_000u32 {
            frame.clear();
            if n % 4 == 0 {
                frame.extend((0..rng.usize(0..128)).map(|_| rng.u8(..)));
            } else {
                frame.extend_from_slice(&seeds[rng.usize(..seeds.len())]);
                for _ in 0..rng.usize(1..4) {
                    let at = rng.usize(..frame.len());
                    frame[at] = rng.u8(..);
                }
                if rng.bool() {
                    frame.truncate(rng.usize(..=frame.len()));
                }
            }
            cap.clear();
            i.receive_frame(&frame, Instant::ZERO, &mut cap);
        }
        let c = i.counters();
        assert_eq!(c.rx_frames, 200_000);
        let answered = c.icmp_echo_in + c.arp_requests_in;
        let accounted = c.total_drops() + answered + c.arp_replies_in;
        assert!(accounted <= c.rx_frames);
        assert!(c.total_drops() > 100_000, "{c}");
        assert!(answered > 1000, "{c}");
    }
}
