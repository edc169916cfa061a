//! Micro-benchmarks of the receive path, each against a baseline measured in
//! the same run (absolute numbers drift between runs on noisy machines):
//!
//! * `checksum`: `wire::checksum::data` (four 64-bit accumulators, deferred
//!   carries) against a naive RFC 1071 loop over 16-bit words.
//! * `parse`: one ICMP echo request frame validated down to the echo
//!   fields, ours against etherparse 0.16 with its own checksum checks.
//! * `interface`: the whole per-core engine, frame in and answer out, for
//!   an echo request, an ARP request and an early drop.
//!
//! Run with `cargo bench -p bypass-bench --bench frames`.

use std::{hint::black_box, net::Ipv4Addr, time::Duration};

use bypass_stack::{
    driver::capture::Capture,
    iface::Interface,
    testkit::{self, Host},
    time::Instant,
    wire::{
        checksum, EtherType, EthernetAddress, EthernetFrame, Icmpv4Packet, Icmpv4Repr, Ipv4Packet,
        Ipv4Repr,
    },
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use etherparse::{Icmpv4Type, NetSlice, SlicedPacket, TransportSlice};

/// The stack's side.
const STACK: Host = Host {
    mac: EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]),
    ip: Ipv4Addr::new(10, 99, 0, 1),
};

/// The peer's side.
const PEER: Host = Host {
    mac: EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]),
    ip: Ipv4Addr::new(10, 99, 0, 2),
};

/// Bytes of echo data, as `ping` sends by default.
const PING_DATA: usize = 56;

fn ping_data() -> Vec<u8> {
    (0..PING_DATA as u8).collect()
}

/// Deterministic filler bytes (xorshift64), so the checksum input is not all zeros.
fn filler(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Naive RFC 1071 reference: one big-endian 16-bit word at a time into a
/// wide sum, an odd byte padded with zero, folded at the end.
fn checksum_naive(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += (u64::from(bytes[i]) << 8) | u64::from(bytes[i + 1]);
        i += 2;
    }
    if i < bytes.len() {
        sum += u64::from(bytes[i]) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn bench_checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    for len in [20usize, 64, 576, 1500] {
        let buf = filler(len);
        assert_eq!(checksum::data(&buf), checksum_naive(&buf), "len {len}");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("bypass", len), &buf, |b, buf| {
            b.iter(|| checksum::data(black_box(buf.as_slice())))
        });
        group.bench_with_input(BenchmarkId::new("naive", len), &buf, |b, buf| {
            b.iter(|| checksum_naive(black_box(buf.as_slice())))
        });
    }
    group.finish();
}

/// What both parsers extract from an echo request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Echo<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    seq_no: u16,
    data: &'a [u8],
}

/// Ours: lengths, header checksum, no fragment, sane source, ICMP checksum,
/// echo type and code. The echo goes to `visit`, so both parsers are
/// measured the same way (etherparse's slices borrow from its own values).
fn parse_bypass<R>(frame: &[u8], visit: impl FnOnce(Echo<'_>) -> R) -> Option<R> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let packet = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let ip = Ipv4Repr::parse(&packet).ok()?;
    let msg = Icmpv4Packet::new_checked(packet.payload()).ok()?;
    match Icmpv4Repr::parse(&msg).ok()? {
        Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } => Some(visit(Echo {
            src: ip.src_addr,
            dst: ip.dst_addr,
            ident,
            seq_no,
            data,
        })),
        _ => None,
    }
}

/// etherparse: `SlicedPacket::from_ethernet` checks the lengths down to
/// ICMP; it verifies no checksum, so the IPv4 header checksum is recomputed
/// with `Ipv4Header::calc_header_checksum` and the ICMP one with
/// `Icmpv4Type::calc_checksum` (its own APIs), and fragments are refused
/// like ours does. `Icmpv4Type::EchoRequest` implies code 0.
fn parse_etherparse<R>(frame: &[u8], visit: impl FnOnce(Echo<'_>) -> R) -> Option<R> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(NetSlice::Ipv4(ip)) = &packet.net else {
        return None;
    };
    let header = ip.header();
    if header.to_header().calc_header_checksum() != header.header_checksum()
        || ip.is_payload_fragmented()
    {
        return None;
    }
    let src = header.source_addr();
    if src.is_broadcast() || src.is_multicast() {
        return None;
    }
    let Some(TransportSlice::Icmpv4(icmp)) = &packet.transport else {
        return None;
    };
    let icmp_type = icmp.icmp_type();
    if icmp_type.calc_checksum(icmp.payload()) != icmp.checksum() {
        return None;
    }
    match icmp_type {
        Icmpv4Type::EchoRequest(echo) => Some(visit(Echo {
            src,
            dst: header.destination_addr(),
            ident: echo.id,
            seq_no: echo.seq,
            data: icmp.payload(),
        })),
        _ => None,
    }
}

fn bench_parse(c: &mut Criterion) {
    let data = ping_data();
    let frame = testkit::echo_request(PEER, STACK, 0x1234, 7, &data);
    let expected = Echo {
        src: PEER.ip,
        dst: STACK.ip,
        ident: 0x1234,
        seq_no: 7,
        data: &data,
    };
    let same = |echo: Echo<'_>| echo == expected;
    assert_eq!(parse_bypass(&frame, same), Some(true));
    assert_eq!(parse_etherparse(&frame, same), Some(true));
    // Both must reject a corrupted ICMP payload (checksums really checked).
    let mut bad = frame.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    assert_eq!(parse_bypass(&bad, same), None);
    assert_eq!(parse_etherparse(&bad, same), None);
    // ... and a corrupted IPv4 header (the TTL byte).
    let mut bad = frame.clone();
    bad[14 + 8] ^= 0x01;
    assert_eq!(parse_bypass(&bad, same), None);
    assert_eq!(parse_etherparse(&bad, same), None);

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bypass", |b| {
        b.iter(|| parse_bypass(black_box(frame.as_slice()), |e| black_box(e).data.len()))
    });
    group.bench_function("etherparse", |b| {
        b.iter(|| parse_etherparse(black_box(frame.as_slice()), |e| black_box(e).data.len()))
    });
    group.finish();
}

fn interface() -> Interface {
    Interface::new(testkit::host_config(STACK.ip, STACK.mac.0[5]))
}

fn bench_interface(c: &mut Criterion) {
    let now = Instant::ZERO;
    let data = ping_data();
    let echo = testkit::echo_request(PEER, STACK, 0x1234, 7, &data);
    let arp = testkit::arp_request(PEER, STACK.ip);
    let other = Host {
        mac: STACK.mac,
        ip: Ipv4Addr::new(10, 99, 0, 77),
    };
    let not_ours = testkit::echo_request(PEER, other, 0x1234, 7, &data);

    // Check once that each frame does what its name says.
    let mut iface = interface();
    let mut capture = Capture::new();
    iface.receive_frame(&echo, now, &mut capture);
    let reply = testkit::parse_echo_reply(&capture.frames()[0]).expect("echo reply");
    assert_eq!((reply.ip_dst, reply.data.as_slice()), (PEER.ip, &data[..]));
    capture.clear();
    iface.receive_frame(&arp, now, &mut capture);
    let (dst, repr) = testkit::parse_arp(&capture.frames()[0]).expect("arp reply");
    assert_eq!((dst, repr.source_protocol_addr), (PEER.mac, STACK.ip));
    capture.clear();
    iface.receive_frame(&not_ours, now, &mut capture);
    assert!(capture.frames().is_empty());

    let mut group = c.benchmark_group("interface");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in [
        ("echo_request", &echo),
        ("arp_request", &arp),
        ("drop_not_our_ip", &not_ours),
    ] {
        let mut iface = interface();
        let mut capture = Capture::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                capture.clear();
                iface.receive_frame(black_box(frame.as_slice()), now, &mut capture);
                black_box(capture.frames().len())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = frames;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = bench_checksum, bench_parse, bench_interface
}
criterion_main!(frames);
