//! Frames a peer sends, built with the wire module, for tests, fuzzing
//! seeds and benchmarks: an ARP request and an ICMP echo request, plus a
//! parser for the echo replies the stack sends back; and the engines and
//! virtual-time stepping that the simulated-network tests share.

use std::net::Ipv4Addr;

use crate::{
    arp,
    wire::{
        ethernet, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame,
        Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    },
};

/// One side of a conversation: its link and IP addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub mac: EthernetAddress,
    pub ip: Ipv4Addr,
}

/// An ARP request from `from` asking for `target`.
pub fn arp_request(from: Host, target: Ipv4Addr) -> Vec<u8> {
    let mut cap = crate::driver::capture::Capture::new();
    arp::send(
        &mut cap,
        from.mac,
        EthernetAddress::BROADCAST,
        &arp::request(from.mac, from.ip, target),
    )
    .expect("capture accepts");
    cap.frames()[0].clone()
}

/// An ARP reply from `from` to `to`.
pub fn arp_reply(from: Host, to: Host) -> Vec<u8> {
    let mut cap = crate::driver::capture::Capture::new();
    let repr = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: from.mac,
        source_protocol_addr: from.ip,
        target_hardware_addr: to.mac,
        target_protocol_addr: to.ip,
    };
    arp::send(&mut cap, from.mac, to.mac, &repr).expect("capture accepts");
    cap.frames()[0].clone()
}

/// An ICMP echo request from `from` to `to` (an echo reply from the other
/// side has the same shape, so the stack's own reply builder writes it).
pub fn echo_request(from: Host, to: Host, ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    };
    let ip = Ipv4Repr {
        src_addr: from.ip,
        dst_addr: to.ip,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let mut frame = vec![0u8; ethernet::HEADER_LEN + ip.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_src_addr(from.mac);
    eth.set_dst_addr(to.mac);
    eth.set_ethertype(EtherType::Ipv4);
    let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()));
    frame
}

/// An echo reply as the peer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReply {
    pub eth_src: EthernetAddress,
    pub eth_dst: EthernetAddress,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub ttl: u8,
    pub ident: u16,
    pub seq_no: u16,
    pub data: Vec<u8>,
}

/// Parses `frame` as an echo reply with every checksum valid.
pub fn parse_echo_reply(frame: &[u8]) -> Option<EchoReply> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let ip = Ipv4Repr::parse(&packet).ok()?;
    let msg = Icmpv4Packet::new_checked(packet.payload()).ok()?;
    match Icmpv4Repr::parse(&msg).ok()? {
        Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        } => Some(EchoReply {
            eth_src: eth.src_addr(),
            eth_dst: eth.dst_addr(),
            ip_src: ip.src_addr,
            ip_dst: ip.dst_addr,
            ttl: ip.hop_limit,
            ident,
            seq_no,
            data: data.to_vec(),
        }),
        _ => None,
    }
}

/// Parses `frame` as an ARP packet: (Ethernet destination, ARP).
pub fn parse_arp(frame: &[u8]) -> Option<(EthernetAddress, ArpRepr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Arp {
        return None;
    }
    let repr = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
    Some((eth.dst_addr(), repr))
}

/// An interface that owns `ip` (/24), with the MAC 02:00:00:00:00:`mac_last`.
pub fn host_config(ip: Ipv4Addr, mac_last: u8) -> crate::iface::InterfaceConfig {
    crate::iface::InterfaceConfig {
        mac: EthernetAddress([0x02, 0, 0, 0, 0, mac_last]),
        ipv4: crate::ipv4::Ipv4Config {
            addr: ip,
            prefix_len: 24,
            gateway: None,
        },
        owns_ip: true,
        arp: arp::ArpConfig::default(),
    }
}

/// A whole engine with TCP for `host_config(ip, mac_last)`, its ISN and
/// SYN-cookie keys derived from `seed` (so runs replay exactly).
pub fn tcp_engine(
    ip: Ipv4Addr,
    mac_last: u8,
    tcp: crate::tcp::config::TcpConfig,
    shard: crate::tcp::shard::ShardConfig,
    seed: u64,
) -> crate::iface::Interface {
    crate::iface::Interface::new(host_config(ip, mac_last)).with_tcp(crate::tcp::shard::Shard::new(
        tcp,
        shard,
        ip,
        crate::tcp::isn::IsnGenerator::new([seed, !seed]),
        crate::tcp::syncookie::SynCookies::new([[seed, 1], [2, seed]]),
    ))
}

/// Moves virtual time to the earliest of the link's next delivery and the
/// given deadlines, never standing still (a deadline at `now` was just
/// handled); false when nothing is pending.
pub fn advance(
    link: &crate::driver::memlink::MemLink,
    now: &mut crate::time::Instant,
    deadlines: impl IntoIterator<Item = Option<crate::time::Instant>>,
) -> bool {
    let next = std::iter::once(link.next_delivery())
        .chain(deadlines)
        .flatten()
        .min();
    match next {
        Some(t) => {
            *now = t.max(*now + std::time::Duration::from_micros(1));
            link.set_now(*now);
            true
        }
        None => false,
    }
}

/// One pass of a run-to-completion loop on the memory link, as a core
/// does it on the wire: every frame waiting on `port` in, then the
/// application, then whatever the engine has to send out.
pub fn pass<H: crate::api::events::Handler>(
    iface: &mut crate::iface::Interface,
    port: &mut crate::driver::memlink::MemPort,
    app: &mut crate::api::events::EventApp<H>,
    now: crate::time::Instant,
) {
    use crate::{driver::Device, runtime::App};
    while port.receive(64, |frame, tx| iface.receive_frame(frame, now, tx)) > 0 {}
    app.poll(iface.tcp_mut().expect("an engine with TCP"), now);
    iface.poll(now, &mut port.transmitter());
}
