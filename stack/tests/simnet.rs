//! Deterministic simulated network: the stack's engine on one end of an
//! in-memory link with seeded loss, duplication, reordering, corruption and
//! delay; the test plays the peer on the other end and jumps virtual time to
//! the next event. Same seed, same run.

use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

use bypass_stack::{
    arp::ArpConfig,
    driver::{
        memlink::{Faults, MemLink, MemPort},
        Device,
    },
    iface::{Interface, InterfaceConfig},
    ipv4::Ipv4Config,
    testkit::{self, Host},
    time::Instant,
    wire::{ArpOperation, EthernetAddress},
};

const STACK: Host = Host {
    mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
    ip: Ipv4Addr::new(10, 99, 0, 1),
};
const PEER: Host = Host {
    mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x02]),
    ip: Ipv4Addr::new(10, 99, 0, 2),
};

fn engine() -> Interface {
    Interface::new(InterfaceConfig {
        mac: STACK.mac,
        ipv4: Ipv4Config {
            addr: STACK.ip,
            prefix_len: 24,
            gateway: None,
        },
        owns_ip: true,
        arp: ArpConfig::default(),
    })
}

/// One pass of the per-core loop, as the runtime runs it, at `now`.
fn run_stack(iface: &mut Interface, port: &mut MemPort, now: Instant) {
    while port.receive(64, |frame, tx| iface.receive_frame(frame, now, tx)) > 0 {}
    if iface.poll_at(now).is_some_and(|at| at <= now) {
        iface.poll(now, &mut port.transmitter());
    }
    port.flush().unwrap();
}

fn lossy() -> Faults {
    Faults {
        drop: 0.10,
        duplicate: 0.05,
        reorder: 0.10,
        corrupt: 0.05,
        delay: Duration::from_micros(200),
        jitter: Duration::from_micros(300),
        reorder_delay: Duration::from_millis(2),
        burst: 0,
        ethernet: true,
        max_frame: 0,
    }
}

#[derive(Debug, PartialEq, Eq)]
struct PingRun {
    replies: Vec<(u16, u16)>,
    counters: String,
    garbled_replies: u64,
}

/// The peer sends `count` pings, one every 100 µs, and checks every reply
/// that arrives intact against what it sent.
fn ping_run(faults: Faults, seed: u64, count: u16) -> PingRun {
    let (link, mut stack_port, mut peer_port) = MemLink::new(faults, seed, 1514);
    let mut iface = engine();
    let mut sent: HashMap<(u16, u16), Vec<u8>> = HashMap::new();
    let mut replies = Vec::new();
    let mut garbled = 0;
    let mut next_ping = 0u16;
    let mut now = Instant::ZERO;
    loop {
        if next_ping < count {
            let data: Vec<u8> = (0..(next_ping % 200)).map(|b| b as u8 ^ 0x5a).collect();
            let ident = 0x4242;
            peer_port.send_frame(&testkit::echo_request(PEER, STACK, ident, next_ping, &data));
            sent.insert((ident, next_ping), data);
            next_ping += 1;
        }
        run_stack(&mut iface, &mut stack_port, now);
        while let Some(frame) = peer_port.recv() {
            match testkit::parse_echo_reply(&frame) {
                Some(r) if r.eth_dst == PEER.mac && r.eth_src == STACK.mac => {
                    let data = sent
                        .get(&(r.ident, r.seq_no))
                        .expect("reply to a ping we sent");
                    assert_eq!(&r.data, data, "seed {seed}: echoed data");
                    assert_eq!((r.ip_src, r.ip_dst), (STACK.ip, PEER.ip));
                    replies.push((r.ident, r.seq_no));
                }
                // A reply whose bits flipped on the way back: checksums or
                // the link header caught it.
                _ => garbled += 1,
            }
        }
        let next_event = link.next_delivery();
        if next_ping < count {
            now += Duration::from_micros(100);
        } else if let Some(t) = next_event {
            now = now.max(t);
        } else {
            break;
        }
        link.set_now(now);
    }
    let c = iface.counters();
    let to_stack = link.stats(1);
    let to_peer = link.stats(0);
    // The stack saw every frame the link delivered, answered every intact
    // ping, and only corruption made it drop anything.
    assert_eq!(c.rx_frames, to_stack.delivered, "seed {seed}");
    assert_eq!(c.icmp_echo_in, c.icmp_echo_out, "seed {seed}");
    assert_eq!(
        c.icmp_echo_in + c.total_drops(),
        c.rx_frames,
        "seed {seed}: {c}"
    );
    assert!(c.total_drops() <= to_stack.corrupted, "seed {seed}: {c}");
    assert_eq!(
        replies.len() as u64 + garbled,
        to_peer.delivered,
        "seed {seed}"
    );
    // A reply is garbled by a flip on its way back, or by a flip in the
    // request's link header (no checksum there) that sent it elsewhere.
    assert!(
        garbled <= to_peer.corrupted + to_stack.corrupted,
        "seed {seed}"
    );
    PingRun {
        replies,
        counters: c.to_string(),
        garbled_replies: garbled,
    }
}

#[test]
fn every_ping_is_answered_on_a_perfect_link() {
    let run = ping_run(Faults::none(), 1, 1000);
    let expected: Vec<_> = (0..1000).map(|s| (0x4242, s)).collect();
    assert_eq!(run.replies, expected, "in order, none missing");
    assert_eq!(run.garbled_replies, 0);
}

#[test]
fn pings_survive_loss_duplication_reordering_and_corruption() {
    for seed in 0..16 {
        let run = ping_run(lossy(), seed, 500);
        // Roughly 80% make the round trip (10% loss each way, 5% corruption
        // each way), plus duplicates.
        assert!(
            (330..=560).contains(&run.replies.len()),
            "seed {seed}: {} replies",
            run.replies.len()
        );
    }
}

#[test]
fn a_seed_replays_exactly() {
    assert_eq!(ping_run(lossy(), 42, 300), ping_run(lossy(), 42, 300));
}

/// The stack resolves the peer's address over a lossy link; the peer
/// answers every request that reaches it intact. Resolution either succeeds
/// with the right address or fails after its retries, never anything else.
#[test]
fn arp_resolution_retries_through_loss() {
    let faults = Faults {
        drop: 0.3,
        ..Faults::none()
    };
    let (mut resolved, mut failed) = (0, 0);
    for seed in 0..64 {
        let (link, mut stack_port, mut peer_port) = MemLink::new(faults.clone(), seed, 1514);
        let mut iface = engine();
        let mut now = Instant::ZERO;
        let mut answer = None;
        let mut requests_seen = 0;
        for _ in 0..10_000 {
            run_stack(&mut iface, &mut stack_port, now);
            while let Some(frame) = peer_port.recv() {
                let (_, arp) = testkit::parse_arp(&frame).expect("only ARP on this link");
                assert_eq!(arp.operation, ArpOperation::Request);
                assert_eq!(arp.target_protocol_addr, PEER.ip);
                requests_seen += 1;
                peer_port.send_frame(&testkit::arp_reply(PEER, STACK));
            }
            run_stack(&mut iface, &mut stack_port, now);
            answer = iface.resolve(PEER.ip, now, &mut stack_port.transmitter());
            if answer.is_some() || iface.counters().arp_resolve_failed > 0 {
                break;
            }
            let next = [link.next_delivery(), iface.poll_at(now)]
                .into_iter()
                .flatten()
                .min();
            now = next.expect("something is always pending until resolved or failed");
            link.set_now(now);
        }
        assert!(
            requests_seen <= 3,
            "seed {seed}: at most max_requests requests"
        );
        match answer {
            Some(mac) => {
                assert_eq!(mac, PEER.mac);
                resolved += 1;
            }
            None => {
                assert_eq!(iface.counters().arp_resolve_failed, 1, "seed {seed}");
                failed += 1;
            }
        }
        drop(link);
    }
    // P(fail) per try = 1 - 0.7 * 0.7 = 0.51; three tries: ~13%.
    assert!(
        resolved > 40 && failed > 0,
        "resolved {resolved}, failed {failed}"
    );
}
