//! Connection tests: segments in, segments out, on virtual time; and two
//! connections talking over the seeded faulty in-memory link, serialized to
//! real TCP bytes (checksums included) so corruption is caught the way it
//! is on a wire.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use super::*;
use crate::{
    counters::DropReason,
    driver::memlink::{Faults, MemLink, MemPort},
    wire::TcpPacket,
};

pub(super) const A_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
pub(super) const B_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 7);

fn cfg() -> TcpConfig {
    TcpConfig {
        time_wait: Duration::from_secs(2),
        ..TcpConfig::default()
    }
}

/// A segment as bytes, the way it crosses a wire.
pub(super) fn serialize(repr: &TcpRepr, src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut buf[..]),
        *src.ip(),
        *dst.ip(),
    );
    buf
}

fn parse(bytes: &[u8], src: SocketAddrV4, dst: SocketAddrV4) -> Option<TcpRepr<'_>> {
    let packet = TcpPacket::new_checked(bytes).ok()?;
    TcpRepr::parse(&packet, *src.ip(), *dst.ip()).ok()
}

/// Everything one connection wants to send now, as bytes.
fn drain(c: &mut Connection, now: Instant) -> Vec<Vec<u8>> {
    let (src, dst) = (c.local(), c.remote());
    let mut out = Vec::new();
    c.dispatch(now, |r| {
        out.push(serialize(r, src, dst));
        Ok(())
    })
    .unwrap();
    out
}

/// Parsed view of a segment for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seg {
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    window: u16,
    len: usize,
    wscale: Option<u8>,
    mss: Option<u16>,
    sack_permitted: bool,
    sack: Vec<(u32, u32)>,
    ts: bool,
}

fn seg_of(bytes: &[u8], src: SocketAddrV4, dst: SocketAddrV4) -> Seg {
    let r = parse(bytes, src, dst).expect("we emit valid segments");
    Seg {
        control: r.control,
        seq: r.seq_number.0,
        ack: r.ack_number.map(|a| a.0),
        window: r.window_len,
        len: r.payload.len(),
        wscale: r.window_scale,
        mss: r.max_seg_size,
        sack_permitted: r.sack_permitted,
        sack: r.sack_ranges.iter().flatten().copied().collect(),
        ts: r.timestamp.is_some(),
    }
}

/// Builds a segment from the peer's side by hand.
#[allow(clippy::too_many_arguments)]
pub(super) fn peer_seg(
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    window: u16,
    payload: &[u8],
) -> TcpRepr<'_> {
    TcpRepr {
        src_port: B_ADDR.port(),
        dst_port: A_ADDR.port(),
        control,
        seq_number: SeqNumber(seq),
        ack_number: ack.map(SeqNumber),
        window_len: window,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        urgent_pointer: None,
        payload,
    }
}

pub(super) const ISS: u32 = 1000;
pub(super) const PEER_ISS: u32 = 5000;

/// A connection from A to B driven by hand to ESTABLISHED, without options.
fn established(config: TcpConfig) -> (Connection, Instant) {
    let now = Instant::ZERO;
    let mut c = Connection::connect(&config, A_ADDR, B_ADDR, SeqNumber(ISS), now);
    let syn = drain(&mut c, now);
    assert_eq!(syn.len(), 1);
    let s = seg_of(&syn[0], A_ADDR, B_ADDR);
    assert_eq!((s.control, s.seq, s.ack), (TcpControl::Syn, ISS, None));
    let mut synack = peer_seg(TcpControl::Syn, PEER_ISS, Some(ISS + 1), 65535, b"");
    synack.max_seg_size = Some(1460);
    assert!(c.process(now, &synack).is_none());
    assert_eq!(c.state(), State::Established);
    let ack = drain(&mut c, now);
    let a = seg_of(&ack[0], A_ADDR, B_ADDR);
    assert_eq!(
        (a.control, a.seq, a.ack),
        (TcpControl::None, ISS + 1, Some(PEER_ISS + 1))
    );
    (c, now)
}

#[test]
fn active_open_offers_every_option_and_completes() {
    let now = Instant::ZERO;
    let mut c = Connection::connect(&cfg(), A_ADDR, B_ADDR, SeqNumber(ISS), now);
    let syn = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(syn.mss, Some(1460));
    assert!(syn.sack_permitted && syn.ts);
    assert_eq!(syn.wscale, Some(cfg().recv_window_scale()));
    assert!(c.take_events().is_empty());
    let mut synack = peer_seg(TcpControl::Syn, PEER_ISS, Some(ISS + 1), 65535, b"");
    synack.window_scale = Some(7);
    synack.sack_permitted = true;
    synack.max_seg_size = Some(1400);
    synack.timestamp = Some(TcpTimestamp {
        tsval: 77,
        tsecr: 1,
    });
    c.process(now, &synack);
    assert_eq!(c.state(), State::Established);
    assert!(c.take_events().contains(Events::CONNECTED));
    let st = c.status();
    assert!(st.timestamps && st.sack);
    assert_eq!(st.window_scale, Some((cfg().recv_window_scale(), 7)));
    assert_eq!(st.send_mss, 1400 - 12, "MSS less the timestamp option");
}

#[test]
fn falls_back_cleanly_when_the_peer_offers_no_options() {
    let (c, _) = established(cfg());
    let st = c.status();
    assert!(!st.timestamps && !st.sack);
    assert_eq!(st.window_scale, None);
    assert_eq!(st.send_mss, 1460);
}

#[test]
fn syn_is_retransmitted_with_backoff_then_gives_up() {
    let config = TcpConfig {
        syn_retries: 3,
        ..cfg()
    };
    let mut now = Instant::ZERO;
    let mut c = Connection::connect(&config, A_ADDR, B_ADDR, SeqNumber(ISS), now);
    assert_eq!(drain(&mut c, now).len(), 1);
    let mut gaps = Vec::new();
    let mut last = now;
    while let Some(at) = c.poll_at(now) {
        now = at;
        let out = drain(&mut c, now);
        if c.state() == State::Closed {
            break;
        }
        assert_eq!(seg_of(&out[0], A_ADDR, B_ADDR).control, TcpControl::Syn);
        gaps.push(now.saturating_duration_since(last).as_millis());
        last = now;
    }
    assert_eq!(
        gaps,
        vec![1000, 2000, 4000],
        "RFC 6298 5.5 backoff from the 1 s initial RTO"
    );
    assert_eq!(c.error(), Some(Error::TimedOut));
    assert!(c.take_events().contains(Events::CLOSED));
}

#[test]
fn rst_to_our_syn_is_connection_refused_and_bad_acks_get_a_reset() {
    let now = Instant::ZERO;
    let mut c = Connection::connect(&cfg(), A_ADDR, B_ADDR, SeqNumber(ISS), now);
    drain(&mut c, now);
    // An ACK for something we never sent: RST <SEQ=SEG.ACK>.
    let bogus = peer_seg(TcpControl::None, 1, Some(ISS + 500), 100, b"");
    let rst = c.process(now, &bogus).expect("reset");
    assert_eq!(
        (rst.control, rst.seq_number.0),
        (TcpControl::Rst, ISS + 500)
    );
    assert_eq!(c.state(), State::SynSent);
    // RST without ACK: ignored in SYN-SENT.
    c.process(now, &peer_seg(TcpControl::Rst, 1, None, 0, b""));
    assert_eq!(c.state(), State::SynSent);
    c.process(now, &peer_seg(TcpControl::Rst, 0, Some(ISS + 1), 0, b""));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), Some(Error::Refused));
    assert_eq!(c.send(b"x"), Err(Error::Refused));
}

#[test]
fn rfc5961_challenge_acks_for_in_window_rst_and_syn() {
    let (mut c, now) = established(cfg());
    // RST in the window but not at RCV.NXT: challenge ACK, stay up.
    c.process(now, &peer_seg(TcpControl::Rst, PEER_ISS + 10, None, 0, b""));
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.take_rejection(), Some(DropReason::TcpChallengeAck));
    let out = drain(&mut c, now);
    let ack = seg_of(&out[0], A_ADDR, B_ADDR);
    assert_eq!(
        (ack.control, ack.ack),
        (TcpControl::None, Some(PEER_ISS + 1))
    );
    // SYN in a synchronized state: challenge ACK too (once the rate limit
    // allows another).
    let now = now + CHALLENGE_ACK_INTERVAL;
    c.process(
        now,
        &peer_seg(TcpControl::Syn, PEER_ISS + 100, None, 0, b""),
    );
    assert_eq!(c.state(), State::Established);
    assert_eq!(drain(&mut c, now).len(), 1);
    // RST outside the window: silently dropped.
    c.process(
        now,
        &peer_seg(TcpControl::Rst, PEER_ISS + 1_000_000, None, 0, b""),
    );
    assert!(drain(&mut c, now).is_empty());
    assert_eq!(c.take_rejection(), Some(DropReason::TcpOutOfWindow));
    // The exact RST resets.
    c.process(now, &peer_seg(TcpControl::Rst, PEER_ISS + 1, None, 0, b""));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.error(), Some(Error::Reset));
    assert_eq!(c.recv(&mut [0; 4]), Err(Error::Reset));
}

#[test]
fn rfc5961_section_7_challenge_acks_are_rate_limited() {
    // 200 forged in-window RSTs at once draw one challenge ACK, not 200;
    // the next may go after the interval.
    let (mut c, now) = established(cfg());
    let mut acks = 0;
    for i in 0..200 {
        c.process(
            now,
            &peer_seg(TcpControl::Rst, PEER_ISS + 2 + i, None, 0, b""),
        );
        acks += drain(&mut c, now).len();
    }
    assert_eq!(acks, 1);
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.take_rejection(), Some(DropReason::TcpChallengeAckLimited));
    let later = now + CHALLENGE_ACK_INTERVAL;
    c.process(
        later,
        &peer_seg(TcpControl::Rst, PEER_ISS + 5, None, 0, b""),
    );
    assert_eq!(drain(&mut c, later).len(), 1);
}

/// A passive open with `config`, the SYN-ACK drained: SYN-RECEIVED.
fn syn_received(config: TcpConfig) -> (Connection, Instant, TcpRepr<'static>) {
    let now = Instant::ZERO;
    let syn = peer_seg(TcpControl::Syn, PEER_ISS, None, 65535, b"");
    let mut c = Connection::accept(&config, A_ADDR, B_ADDR, &syn, SeqNumber(ISS), now);
    let out = drain(&mut c, now);
    assert_eq!(seg_of(&out[0], A_ADDR, B_ADDR).control, TcpControl::Syn);
    (c, now, syn)
}

#[test]
fn a_retransmitted_syn_in_syn_received_is_answered_at_once() {
    // The peer lost our SYN-ACK and sends its SYN again (same ISN): it
    // gets the SYN-ACK now, not when our retransmission timer fires.
    let (mut c, now, syn) = syn_received(cfg());
    let now = now + Duration::from_millis(200);
    assert!(c.process(now, &syn).is_none());
    let out = drain(&mut c, now);
    assert_eq!(out.len(), 1);
    let s = seg_of(&out[0], A_ADDR, B_ADDR);
    assert_eq!(
        (s.control, s.seq, s.ack),
        (TcpControl::Syn, ISS, Some(PEER_ISS + 1))
    );
    assert_eq!(c.state(), State::SynReceived);
}

#[test]
fn data_after_a_retransmitted_syn_and_the_ack_in_one_batch_starts_at_iss_plus_1() {
    // The peer's second SYN rewinds SND.NXT to resend the SYN-ACK; its ACK
    // of the first SYN-ACK arrives before we dispatch. The first data
    // octet is ISS + 1, not ISS (it was: the peer trimmed one octet and
    // every byte arrived one place off).
    let (mut c, now, syn) = syn_received(cfg());
    let now = now + Duration::from_millis(200);
    c.process(now, &syn);
    c.process(
        now,
        &peer_seg(TcpControl::None, PEER_ISS + 1, Some(ISS + 1), 65535, b""),
    );
    assert_eq!(c.state(), State::Established);
    c.send(b"first octet").unwrap();
    let out: Vec<_> = drain(&mut c, now)
        .iter()
        .map(|f| seg_of(f, A_ADDR, B_ADDR))
        .collect();
    let data: Vec<_> = out.iter().filter(|s| s.len > 0).collect();
    assert_eq!(data.len(), 1, "{out:?}");
    assert_eq!((data[0].seq, data[0].len), (ISS + 1, 11));
    assert!(out.iter().all(|s| s.control != TcpControl::Syn), "{out:?}");
}

#[test]
fn data_after_a_syn_timeout_whose_resend_failed_starts_at_iss_plus_1() {
    // Active open: the SYN timer fires but the SYN cannot go (no transmit
    // buffer), so SND.NXT stays rewound to ISS; then the SYN-ACK for the
    // first SYN arrives.
    let now = Instant::ZERO;
    let mut c = Connection::connect(&cfg(), A_ADDR, B_ADDR, SeqNumber(ISS), now);
    drain(&mut c, now);
    let t = c.poll_at(now).unwrap();
    let refused = c.dispatch(t, |_| Err(crate::driver::TxError::NoBuffer));
    assert!(refused.is_err());
    let synack = peer_seg(TcpControl::Syn, PEER_ISS, Some(ISS + 1), 65535, b"");
    c.process(t, &synack);
    assert_eq!(c.state(), State::Established);
    c.send(b"hello").unwrap();
    let data: Vec<_> = drain(&mut c, t)
        .iter()
        .map(|f| seg_of(f, A_ADDR, B_ADDR))
        .filter(|s| s.len > 0)
        .collect();
    assert_eq!((data[0].seq, data[0].len), (ISS + 1, 5));
}

#[test]
fn simultaneous_open_completes_between_two_engines() {
    // RFC 9293 §3.5 figure 8: both sides send SYN, both answer SYN-ACK,
    // both reach ESTABLISHED.
    let now = Instant::ZERO;
    let mut a = Connection::connect(&cfg(), A_ADDR, B_ADDR, SeqNumber(ISS), now);
    let mut b = Connection::connect(&cfg(), B_ADDR, A_ADDR, SeqNumber(PEER_ISS), now);
    let syn_a = drain(&mut a, now);
    let syn_b = drain(&mut b, now);
    b.process(now, &parse(&syn_a[0], A_ADDR, B_ADDR).unwrap());
    a.process(now, &parse(&syn_b[0], B_ADDR, A_ADDR).unwrap());
    assert_eq!(
        (a.state(), b.state()),
        (State::SynReceived, State::SynReceived)
    );
    let synack_a = drain(&mut a, now);
    let synack_b = drain(&mut b, now);
    assert_eq!(seg_of(&synack_a[0], A_ADDR, B_ADDR).ack, Some(PEER_ISS + 1));
    b.process(now, &parse(&synack_a[0], A_ADDR, B_ADDR).unwrap());
    a.process(now, &parse(&synack_b[0], B_ADDR, A_ADDR).unwrap());
    assert_eq!(
        (a.state(), b.state()),
        (State::Established, State::Established)
    );
    // And data flows.
    a.send(b"hi").unwrap();
    for bytes in drain(&mut a, now) {
        b.process(now, &parse(&bytes, A_ADDR, B_ADDR).unwrap());
    }
    let mut buf = [0u8; 4];
    assert_eq!(b.recv(&mut buf), Ok(2));
}

#[test]
fn a_fin_ahead_of_its_data_is_taken_when_the_data_arrives() {
    // Bare FIN at X+100 first, then the 100 bytes at X: in order, that is
    // data and FIN, so RCV.NXT moves past the FIN and CLOSE-WAIT follows.
    let (mut c, now) = established(cfg());
    let x = PEER_ISS + 1;
    c.process(
        now,
        &peer_seg(TcpControl::Fin, x + 100, Some(ISS + 1), 65535, b""),
    );
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(ack.ack, Some(x), "out of order: the old RCV.NXT again");
    c.process(
        now,
        &peer_seg(TcpControl::None, x, Some(ISS + 1), 65535, &[9; 100]),
    );
    assert_eq!(c.state(), State::CloseWait);
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(ack.ack, Some(x + 101), "data and FIN acknowledged at once");
}

#[test]
fn a_reset_after_a_go_back_carries_the_highest_sequence_sent() {
    // After a timeout rewinds SND.NXT, an RST from there would fall below
    // what the peer has seen and draw a challenge ACK (RFC 5961 §3.2).
    let (mut c, now) = established(cfg());
    c.send(&[1; 3000]).unwrap();
    assert_eq!(drain(&mut c, now).len(), 3);
    let rto = c.poll_at(now).unwrap();
    let out = drain(&mut c, rto);
    assert_eq!(seg_of(&out[0], A_ADDR, B_ADDR).seq, ISS + 1, "go-back");
    c.abort();
    let rst = seg_of(&drain(&mut c, rto)[0], A_ADDR, B_ADDR);
    assert_eq!((rst.control, rst.seq), (TcpControl::Rst, ISS + 1 + 3000));
}

#[test]
fn the_receive_window_edge_moves_only_in_big_steps() {
    // RFC 9293 §3.8.6.2.2: the right edge advances only when it can by
    // min(buffer / 2, MSS); a read of a few bytes must not announce them.
    let config = TcpConfig {
        recv_buffer: 10_000,
        ..cfg()
    };
    let (mut c, now) = established(config);
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 1,
            Some(ISS + 1),
            65535,
            &[7; 10_000],
        ),
    );
    let now = c.poll_at(now).expect("the delayed ACK");
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!((ack.ack, ack.window), (Some(PEER_ISS + 10_001), 0));
    let mut buf = [0u8; 100];
    assert_eq!(c.recv(&mut buf), Ok(100));
    // A window probe draws an ACK: still a zero window.
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 10_001,
            Some(ISS + 1),
            65535,
            b"z",
        ),
    );
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(ack.window, 0, "100 bytes free is less than one MSS");
    let mut big = [0u8; 2000];
    assert_eq!(c.recv(&mut big), Ok(2000));
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 10_001,
            Some(ISS + 1),
            65535,
            b"z",
        ),
    );
    let out = drain(&mut c, now);
    let ack = seg_of(out.last().unwrap(), A_ADDR, B_ADDR);
    assert_eq!(ack.window, 2100, "a whole MSS and more: the edge moves");
}

#[test]
fn fragmentation_needed_lowers_the_segment_size_and_resends_rfc1191() {
    let (mut c, now) = established(cfg());
    c.send(&[5; 4000]).unwrap();
    let first = drain(&mut c, now);
    assert_eq!(seg_of(&first[0], A_ADDR, B_ADDR).len, 1460);
    // RFC 5927 §4.1: a quote of a sequence number not in flight is
    // ignored (below SND.UNA, at or beyond SND.MAX).
    assert!(!c.path_mtu(now, SeqNumber(ISS), 1000));
    assert!(!c.path_mtu(now, SeqNumber(ISS + 1 + 4000), 1000));
    // A real one: 1000-byte MTU → 960-byte segments, sent again at once.
    assert!(c.path_mtu(now, SeqNumber(ISS + 1 + 1460), 1000));
    let again = drain(&mut c, now);
    let lens: Vec<usize> = again
        .iter()
        .map(|b| seg_of(b, A_ADDR, B_ADDR).len)
        .collect();
    assert_eq!(
        seg_of(&again[0], A_ADDR, B_ADDR).seq,
        ISS + 1,
        "from SND.UNA"
    );
    assert!(lens.iter().all(|&l| l <= 960), "{lens:?}");
    assert_eq!(lens.iter().sum::<usize>(), 4000);
    assert_eq!(c.status().send_mss, 960);
    // Not lower: nothing to do; absurdly low: clamped to 552 - 40.
    assert!(!c.path_mtu(now, SeqNumber(ISS + 1), 1400));
    assert!(c.path_mtu(now, SeqNumber(ISS + 1), 68));
    assert_eq!(c.status().send_mss, 512);
}

#[test]
fn unacceptable_ack_is_answered_and_dropped() {
    let (mut c, now) = established(cfg());
    c.send(b"hello").unwrap();
    drain(&mut c, now);
    // ACK beyond anything sent.
    c.process(
        now,
        &peer_seg(TcpControl::None, PEER_ISS + 1, Some(ISS + 100), 1000, b""),
    );
    assert_eq!(c.status().send_queued, 5, "nothing acknowledged");
    assert_eq!(c.take_rejection(), Some(DropReason::TcpBadAck));
    assert_eq!(drain(&mut c, now).len(), 1, "answered with an ACK");
}

#[test]
fn data_in_order_is_delivered_and_acked_every_second_segment_or_after_40ms() {
    let (mut c, now) = established(cfg());
    let mut seq = PEER_ISS + 1;
    c.process(
        now,
        &peer_seg(TcpControl::None, seq, Some(ISS + 1), 65535, &[1; 1460]),
    );
    seq += 1460;
    assert!(drain(&mut c, now).is_empty(), "first segment: delayed ACK");
    assert_eq!(c.poll_at(now), Some(now + Duration::from_millis(40)));
    c.process(
        now,
        &peer_seg(TcpControl::None, seq, Some(ISS + 1), 65535, &[2; 1460]),
    );
    seq += 1460;
    let out = drain(&mut c, now);
    assert_eq!(
        seg_of(&out[0], A_ADDR, B_ADDR).ack,
        Some(seq),
        "second segment: ACK now"
    );
    c.process(
        now,
        &peer_seg(TcpControl::Psh, seq, Some(ISS + 1), 65535, b"tail"),
    );
    let later = now + Duration::from_millis(40);
    assert!(drain(&mut c, now).is_empty());
    assert_eq!(
        seg_of(&drain(&mut c, later)[0], A_ADDR, B_ADDR).ack,
        Some(seq + 4)
    );
    let mut buf = vec![0; 5000];
    assert_eq!(c.recv(&mut buf), Ok(2924));
    assert!(buf[..1460].iter().all(|&b| b == 1) && &buf[2920..2924] == b"tail");
    assert!(c.take_events().contains(Events::READABLE));
}

#[test]
fn out_of_order_data_is_held_acked_at_once_with_sack_and_delivered_when_the_hole_fills() {
    let now = Instant::ZERO;
    let mut c = Connection::connect(&cfg(), A_ADDR, B_ADDR, SeqNumber(ISS), now);
    drain(&mut c, now);
    let mut synack = peer_seg(TcpControl::Syn, PEER_ISS, Some(ISS + 1), 65535, b"");
    synack.sack_permitted = true;
    c.process(now, &synack);
    drain(&mut c, now);
    let base = PEER_ISS + 1;
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            base + 100,
            Some(ISS + 1),
            65535,
            &[b'b'; 100],
        ),
    );
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(ack.ack, Some(base), "duplicate ACK at once");
    assert_eq!(ack.sack, vec![(base + 100, base + 200)]);
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            base + 300,
            Some(ISS + 1),
            65535,
            &[b'd'; 100],
        ),
    );
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(
        ack.sack,
        vec![(base + 300, base + 400), (base + 100, base + 200)],
        "most recent block first"
    );
    assert_eq!(c.recv(&mut [0; 10]), Ok(0));
    c.process(
        now,
        &peer_seg(TcpControl::None, base, Some(ISS + 1), 65535, &[b'a'; 100]),
    );
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(
        ack.ack,
        Some(base + 200),
        "hole filled: cumulative ACK at once"
    );
    assert_eq!(ack.sack, vec![(base + 300, base + 400)]);
    let mut buf = [0; 400];
    assert_eq!(c.recv(&mut buf), Ok(200));
    assert_eq!(&buf[..200], [[b'a'; 100], [b'b'; 100]].concat().as_slice());
}

#[test]
fn overlapping_and_duplicate_segments_are_trimmed() {
    let (mut c, now) = established(cfg());
    let base = PEER_ISS + 1;
    c.process(
        now,
        &peer_seg(TcpControl::None, base, Some(ISS + 1), 65535, b"abcdef"),
    );
    c.process(
        now,
        &peer_seg(TcpControl::None, base + 3, Some(ISS + 1), 65535, b"defghi"),
    );
    c.process(
        now,
        &peer_seg(TcpControl::None, base, Some(ISS + 1), 65535, b"abc"),
    );
    let mut buf = [0; 20];
    assert_eq!(c.recv(&mut buf), Ok(9));
    assert_eq!(&buf[..9], b"abcdefghi");
}

#[test]
fn graceful_close_both_ways_ends_in_time_wait_then_closed() {
    let (mut c, mut now) = established(cfg());
    c.send(b"bye").unwrap();
    c.close().unwrap();
    assert_eq!(c.state(), State::FinWait1);
    assert_eq!(c.send(b"more"), Err(Error::Closing));
    let out = drain(&mut c, now);
    let s = seg_of(&out[0], A_ADDR, B_ADDR);
    assert_eq!(
        (s.control, s.len),
        (TcpControl::Fin, 3),
        "data and FIN together"
    );
    let fin_ack = ISS + 1 + 3 + 1;
    c.process(
        now,
        &peer_seg(TcpControl::None, PEER_ISS + 1, Some(fin_ack), 65535, b""),
    );
    assert_eq!(c.state(), State::FinWait2);
    // Half-close: data still flows to us.
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 1,
            Some(fin_ack),
            65535,
            b"still",
        ),
    );
    c.process(
        now,
        &peer_seg(TcpControl::Fin, PEER_ISS + 6, Some(fin_ack), 65535, b""),
    );
    assert_eq!(c.state(), State::TimeWait);
    let ack = seg_of(drain(&mut c, now).last().unwrap(), A_ADDR, B_ADDR);
    assert_eq!(ack.ack, Some(PEER_ISS + 7));
    let mut buf = [0; 8];
    assert_eq!(c.recv(&mut buf), Ok(5));
    assert_eq!(c.recv(&mut buf), Err(Error::Closing));
    // Timers until CLOSED (the empty rings are freed on the way).
    while c.state() != State::Closed {
        now = c.poll_at(now).unwrap();
        drain(&mut c, now);
    }
    assert_eq!(now, Instant::ZERO + cfg().time_wait);
    assert_eq!(c.buffer_bytes(), 0);
    assert_eq!(c.error(), None);
}

#[test]
fn passive_close_goes_through_close_wait_and_last_ack() {
    let (mut c, now) = established(cfg());
    c.process(
        now,
        &peer_seg(TcpControl::Fin, PEER_ISS + 1, Some(ISS + 1), 65535, b""),
    );
    assert_eq!(c.state(), State::CloseWait);
    assert!(c.take_events().contains(Events::PEER_CLOSED));
    drain(&mut c, now);
    c.send(b"last words").unwrap();
    c.close().unwrap();
    assert_eq!(c.state(), State::LastAck);
    let s = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(s.control, TcpControl::Fin);
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 2,
            Some(ISS + 1 + 10 + 1),
            65535,
            b"",
        ),
    );
    assert_eq!(c.state(), State::Closed);
    assert!(c.is_closed());
}

#[test]
fn simultaneous_close_goes_through_closing() {
    let (mut c, now) = established(cfg());
    c.close().unwrap();
    drain(&mut c, now);
    c.process(
        now,
        &peer_seg(TcpControl::Fin, PEER_ISS + 1, Some(ISS + 1), 65535, b""),
    );
    assert_eq!(c.state(), State::Closing);
    c.process(
        now,
        &peer_seg(TcpControl::None, PEER_ISS + 2, Some(ISS + 2), 65535, b""),
    );
    assert_eq!(c.state(), State::TimeWait);
}

#[test]
fn abort_sends_a_reset_and_discards_queued_data() {
    let (mut c, now) = established(cfg());
    c.send(&[0; 5000]).unwrap();
    c.abort();
    let out = drain(&mut c, now);
    assert_eq!(out.len(), 1);
    let s = seg_of(&out[0], A_ADDR, B_ADDR);
    assert_eq!((s.control, s.seq), (TcpControl::Rst, ISS + 1));
    assert!(c.is_closed());
    assert_eq!(c.send(b"x"), Err(Error::DoesNotExist));
}

#[test]
fn zero_window_is_probed_with_backoff_and_sending_resumes() {
    let (mut c, mut now) = established(cfg());
    c.process(
        now,
        &peer_seg(TcpControl::None, PEER_ISS + 1, Some(ISS + 1), 0, b""),
    );
    c.send(b"waiting").unwrap();
    assert!(drain(&mut c, now).is_empty(), "nothing fits a zero window");
    let mut probes = Vec::new();
    for _ in 0..3 {
        now = c.poll_at(now).unwrap();
        let out = drain(&mut c, now);
        let s = seg_of(&out[0], A_ADDR, B_ADDR);
        assert_eq!((s.seq, s.len), (ISS, 0), "probe below SND.UNA");
        probes.push(now.total_micros() / 1000);
    }
    assert!(
        probes[2] - probes[1] > probes[1] - probes[0],
        "backoff: {probes:?}"
    );
    c.process(
        now,
        &peer_seg(TcpControl::None, PEER_ISS + 1, Some(ISS + 1), 1000, b""),
    );
    let s = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(s.len, 7);
}

#[test]
fn retransmission_timeout_goes_back_and_aborts_after_max_retransmits() {
    let config = TcpConfig {
        max_retransmits: 4,
        ..cfg()
    };
    let (mut c, mut now) = established(config);
    c.send(b"lost").unwrap();
    assert_eq!(drain(&mut c, now).len(), 1);
    let mut resent = 0;
    while let Some(at) = c.poll_at(now) {
        now = at;
        let out = drain(&mut c, now);
        if c.state() == State::Closed {
            let s = seg_of(&out[0], A_ADDR, B_ADDR);
            assert_eq!(s.control, TcpControl::Rst);
            break;
        }
        let s = seg_of(&out[0], A_ADDR, B_ADDR);
        assert_eq!((s.seq, s.len), (ISS + 1, 4));
        resent += 1;
    }
    assert_eq!(resent, 4);
    assert_eq!(c.error(), Some(Error::TimedOut));
}

#[test]
fn user_timeout_aborts_a_dead_peer() {
    let config = TcpConfig {
        user_timeout: Some(Duration::from_secs(5)),
        ..cfg()
    };
    let (mut c, mut now) = established(config);
    c.send(b"anyone?").unwrap();
    drain(&mut c, now);
    while c.state() != State::Closed {
        now = c.poll_at(now).unwrap();
        drain(&mut c, now);
    }
    assert_eq!(c.error(), Some(Error::TimedOut));
    assert!(now <= Instant::ZERO + Duration::from_secs(6));
}

#[test]
fn keepalive_probes_then_drops_a_silent_peer() {
    let (mut c, mut now) = established(cfg());
    c.set_keepalive(
        Some(super::super::config::KeepAlive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            probes: 3,
        }),
        now,
    );
    let mut probes = 0;
    while c.state() != State::Closed {
        now = c.poll_at(now).unwrap();
        probes += drain(&mut c, now).len();
    }
    assert_eq!(probes, 3);
    assert_eq!(c.error(), Some(Error::TimedOut));
    assert_eq!(now, Instant::ZERO + Duration::from_secs(13));
}

#[test]
fn three_duplicate_acks_trigger_fast_retransmit() {
    let (mut c, now) = established(cfg());
    c.send(&vec![7u8; 1460 * 8]).unwrap();
    let out = drain(&mut c, now);
    assert!(
        out.len() >= 4,
        "initial window sends several segments: {}",
        out.len()
    );
    for _ in 0..3 {
        c.process(
            now,
            &peer_seg(TcpControl::None, PEER_ISS + 1, Some(ISS + 1), 65535, b""),
        );
    }
    let out = drain(&mut c, now);
    let s = seg_of(&out[0], A_ADDR, B_ADDR);
    assert_eq!(
        (s.seq, s.len),
        (ISS + 1, 1460),
        "the lost segment, before any timeout"
    );
    assert_eq!(c.status().retransmits, 1);
}

/// [`established`] with SACK permitted both ways and one RTT sample of
/// 10 ms taken (100 bytes acknowledged 10 ms after they went), so RACK
/// has its clock; returns the time of that ACK.
fn established_with_sack() -> (Connection, Instant) {
    let now = Instant::ZERO;
    let mut c = Connection::connect(&cfg(), A_ADDR, B_ADDR, SeqNumber(ISS), now);
    drain(&mut c, now);
    let mut synack = peer_seg(TcpControl::Syn, PEER_ISS, Some(ISS + 1), 65535, b"");
    synack.max_seg_size = Some(1460);
    synack.sack_permitted = true;
    c.process(now, &synack);
    drain(&mut c, now);
    assert!(c.status().sack);
    c.send(&[1u8; 100]).unwrap();
    assert_eq!(drain(&mut c, now).len(), 1);
    let now = now + Duration::from_millis(10);
    c.process(
        now,
        &peer_seg(TcpControl::None, PEER_ISS + 1, Some(ISS + 101), 65535, b""),
    );
    assert_eq!(c.rtt.srtt(), Some(Duration::from_millis(10)));
    (c, now)
}

/// A peer's ACK at SND.UNA SACKing `[left, right)` (sequence offsets from
/// `una`) with the window `window`.
fn sack_ack(una: u32, blocks: &[(u32, u32)], window: u16) -> TcpRepr<'static> {
    let mut ack = peer_seg(TcpControl::None, PEER_ISS + 1, Some(una), window, b"");
    for (slot, &(l, r)) in ack.sack_ranges.iter_mut().zip(blocks) {
        *slot = Some((una + l, una + r));
    }
    ack
}

#[test]
fn rfc6675_duplicate_acks_may_change_the_window_and_release_limited_transmit() {
    // RFC 6675 §2: with SACK, an ACK at SND.UNA without data that SACKs new
    // data is a duplicate whatever its window (a receiver holding
    // out-of-order data shrinks it, as Linux's does). RFC 3042 §2: each of
    // the first two sends one new segment beyond cwnd.
    let (mut c, now) = established_with_sack();
    let una = ISS + 101;
    c.send(&vec![7u8; 1460 * 40]).unwrap();
    let flight = drain(&mut c, now).len() as u32;
    assert!(flight >= 2, "a cwnd-limited flight: {flight}");
    let end = flight * 1460;
    for (k, window) in [(1u32, 65535 - 1460), (2, 65535 - 2 * 1460)] {
        // The segment at SND.UNA was lost; the next k arrived.
        c.process(now, &sack_ack(una, &[(1460, 1460 * (k + 1))], window));
        let out = drain(&mut c, now);
        assert_eq!(out.len(), 1, "duplicate ACK {k}: one new segment");
        let s = seg_of(&out[0], A_ADDR, B_ADDR);
        assert_eq!(s.seq, una + end + (k - 1) * 1460, "new data, not a resend");
    }
    assert_eq!(c.status().retransmits, 0);
}

#[test]
fn rack_repairs_a_lost_segment_below_too_few_sacks_a_reordering_window_later() {
    // Two segments are all there is to send; the first is lost and the peer
    // SACKs the second. DupThresh can never be reached. RFC 8985 §6.2: the
    // first is lost once now >= its send time + RACK.rtt + reo_wnd, with
    // reo_wnd = min_rtt / 4: 10 ms + 2.5 ms after it went, long before the
    // tail loss probe (2·SRTT) or the RTO (200 ms at least).
    let (mut c, sent) = established_with_sack();
    let una = ISS + 101;
    c.send(&[7u8; 2 * 1460]).unwrap();
    assert_eq!(drain(&mut c, sent).len(), 2);
    let acked = sent + Duration::from_millis(10);
    c.process(acked, &sack_ack(una, &[(1460, 2920)], 65535));
    assert!(
        drain(&mut c, acked).is_empty(),
        "not yet: reordering is possible"
    );
    let due = sent + Duration::from_micros(12_500);
    assert_eq!(c.poll_at(acked), Some(due), "RACK's reordering timer");
    let out = drain(&mut c, due);
    assert_eq!(out.len(), 1);
    let s = seg_of(&out[0], A_ADDR, B_ADDR);
    assert_eq!((s.seq, s.len), (una, 1460), "the lost segment");
    assert_eq!((c.rto_count(), c.loss_probes()), (0, 0));
    // Its ACK ends the recovery.
    c.process(due, &sack_ack(una + 2920, &[], 65535));
    assert!(c.recovery.is_none());
    assert_eq!(c.status().send_queued, 0);
}

/// Six segments out and nothing comes back: a tail loss probe, then the
/// timeout, whose go-back sends the first segment (cwnd is one segment).
/// Returns the time of the timeout and what it sent.
fn six_out_until_the_timeout() -> (Connection, Instant, Vec<Vec<u8>>) {
    let (mut c, mut now) = established_with_sack();
    c.send(&vec![7u8; 1460 * 6]).unwrap();
    assert_eq!(drain(&mut c, now).len(), 6);
    loop {
        now = c.poll_at(now).expect("a timer");
        let out = drain(&mut c, now);
        if c.rto_count() == 1 {
            return (c, now, out);
        }
    }
}

#[test]
fn a_go_back_retransmission_lost_again_goes_once_more_before_another_timeout() {
    // After a timeout, RFC 6675 §5.1 starts no new recovery before the old
    // SND.MAX is acknowledged. A go-back retransmission lost again is still
    // found (here by RACK's time test, RFC 8985 §6.2: an ACK with news 5/4
    // of an RTT after it went does not cover it) and sent once more, as
    // Linux does in its Loss state, not left for a second timeout.
    let una = ISS + 101;
    let (mut c, mut now, resent) = six_out_until_the_timeout();
    assert_eq!(seg_of(&resent[0], A_ADDR, B_ADDR).seq, una);
    now += Duration::from_millis(10);
    c.process(now, &sack_ack(una + 1460, &[], 65535));
    let goback: Vec<u32> = drain(&mut c, now)
        .iter()
        .map(|b| seg_of(b, A_ADDR, B_ADDR).seq)
        .collect();
    assert_eq!(goback, [una + 1460, una + 2920], "two more (slow start)");
    // The first of them is lost again; the second arrives, and its ACK
    // comes 15 ms later (SRTT is 10 ms).
    now += Duration::from_millis(15);
    c.process(now, &sack_ack(una + 1460, &[(1460, 2920)], 65535));
    let again: Vec<(u32, usize)> = drain(&mut c, now)
        .iter()
        .map(|b| seg_of(b, A_ADDR, B_ADDR))
        .map(|s| (s.seq, s.len))
        .collect();
    assert_eq!(again[0], (una + 1460, 1460), "sent once more, now");
    // Then the go-back goes on (limited transmit's one segment), never
    // over what the peer SACKed.
    assert_eq!(again[1..], [(una + 4380, 1460)]);
    assert_eq!(c.rto_count(), 1);
}

#[test]
fn sack_recovery_ends_with_cwnd_at_ssthresh_whatever_the_flight_rfc6675() {
    // RFC 6675 §5 sets cwnd = ssthresh when recovery starts and never
    // inflates it, so there is nothing to deflate when it ends (that is
    // NewReno's RFC 6582 §3.2 step 6). The ACK that ends this recovery
    // leaves nothing in flight; cwnd must stay ssthresh, not fall to
    // FlightSize + SMSS (Linux's tcp_end_cwnd_reduction does the same).
    let (mut c, now) = established_with_sack();
    let una = ISS + 101;
    // The first is lost; the peer SACKs the other nine.
    recovery_for_the_first_of_ten(&mut c, now);
    let ssthresh = c.status().ssthresh;
    assert!(c.recovery.is_some() && ssthresh > 2 * 1460);
    c.process(now, &sack_ack(una + 1460 * 10, &[], 65535));
    assert!(c.recovery.is_none());
    assert_eq!(c.status().cwnd, ssthresh);
}

#[test]
fn a_segment_received_twice_is_reported_first_as_a_dsack_rfc2883() {
    // RFC 2883 §4: when duplicate data arrives, the first SACK block of the
    // ACK reports it (a D-SACK), ahead of the usual blocks; the next ACK
    // carries it no more.
    let (mut c, now) = established_with_sack();
    drain(&mut c, now);
    let base = PEER_ISS + 1;
    fn data(seq: u32, bytes: &[u8]) -> TcpRepr<'_> {
        peer_seg(TcpControl::None, seq, Some(ISS + 101), 65535, bytes)
    }
    c.process(now, &data(base, &[b'a'; 100]));
    drain(&mut c, now);
    // The same segment again: wholly old.
    c.process(now, &data(base, &[b'a'; 100]));
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(
        (ack.ack, ack.sack.clone()),
        (Some(base + 100), vec![(base, base + 100)])
    );
    // Out-of-order data held, then a segment whose front is old: the
    // D-SACK (its old part) first, then the held block.
    c.process(now, &data(base + 300, &[b'd'; 100]));
    drain(&mut c, now);
    c.process(now, &data(base + 50, &[b'b'; 150]));
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(ack.ack, Some(base + 200));
    assert_eq!(
        ack.sack,
        vec![(base + 50, base + 100), (base + 300, base + 400)]
    );
    // Reported once.
    c.process(now, &data(base + 200, &[b'c'; 100]));
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!((ack.ack, ack.sack), (Some(base + 400), vec![]));
    // Out-of-order data held, received again: the D-SACK lies inside the
    // SACK block that follows it (RFC 2883 §4).
    c.process(now, &data(base + 500, &[b'f'; 100]));
    drain(&mut c, now);
    c.process(now, &data(base + 500, &[b'f'; 100]));
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(
        ack.sack,
        vec![(base + 500, base + 600), (base + 500, base + 600)]
    );
    c.process(now, &data(base + 400, &[b'e'; 100]));
    drain(&mut c, now);
    // Two duplicates before one ACK: one block where they touch.
    c.process(now, &data(base, &[b'a'; 60]));
    c.process(now, &data(base + 60, &[b'a'; 40]));
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(ack.sack, vec![(base, base + 100)]);
}

/// [`established_with_sack`] with ten full segments sent (the initial
/// window), none acknowledged yet.
fn ten_out() -> (Connection, Instant) {
    let (mut c, now) = established_with_sack();
    c.send(&vec![7u8; 1460 * 10]).unwrap();
    assert_eq!(drain(&mut c, now).len(), 10);
    (c, now)
}

/// Ten segments out and a recovery for the first, which the peer SACKs
/// the other nine around: returns cwnd and ssthresh from before it.
fn recovery_for_the_first_of_ten(c: &mut Connection, now: Instant) -> (usize, usize) {
    let una = ISS + 101;
    c.send(&vec![7u8; 1460 * 10]).unwrap();
    assert_eq!(drain(c, now).len(), 10);
    let before = (c.status().cwnd, c.status().ssthresh);
    c.process(now, &sack_ack(una, &[(1460, 1460 * 10)], 65535));
    let again = drain(c, now);
    assert_eq!(seg_of(&again[0], A_ADDR, B_ADDR).seq, una, "retransmitted");
    assert!(c.status().cwnd < before.0, "cwnd cut");
    before
}

#[test]
fn a_recovery_every_retransmission_of_which_arrived_twice_is_undone_rfc3708() {
    // The first segment was only late (reordered): the original and the
    // retransmission both arrive, and the peer's ACK D-SACKs the second
    // copy (RFC 2883 §5). The cut was for nothing: cwnd and ssthresh go
    // back (RFC 3708; Linux's tcp_try_undo_dsack), and RACK's reordering
    // window widens by a quarter of the minimum RTT (RFC 8985 §6.2 step 4).
    let (mut c, now) = established_with_sack();
    let una = ISS + 101;
    let reo = c.reo_wnd().unwrap();
    let (cwnd, ssthresh) = recovery_for_the_first_of_ten(&mut c, now);
    let mut ack = sack_ack(una + 1460 * 10, &[], 65535);
    ack.sack_ranges[0] = Some((una, una + 1460));
    c.process(now, &ack);
    // Undone first; then the ACK's ten segments grow the window restored
    // as any ACK does (slow start: by at most 2 SMSS, RFC 3465).
    assert_eq!(c.status().ssthresh, ssthresh);
    assert_eq!(c.status().cwnd, cwnd + 2 * 1460);
    assert!(c.recovery.is_none());
    assert_eq!(c.take_spurious(), (1, 1), "one D-SACK, one undo");
    assert_eq!(c.reo_wnd(), Some(reo * 2));
}

#[test]
fn an_undo_in_the_middle_of_a_recovery_ends_it_and_a_later_loss_cuts_again() {
    // The first of ten looks lost (four later ones SACKed) and goes again;
    // it was only late: the peer ACKs up to the fifth, then D-SACKs the
    // copy while the rest is still on its way. The cut is undone and the
    // recovery ends there (Linux leaves Recovery after tcp_try_undo_dsack).
    // Then the sixth really is lost: that is a new recovery, cut again.
    let (mut c, now) = ten_out();
    let una = ISS + 101;
    let before = (c.status().cwnd, c.status().ssthresh);
    c.process(now, &sack_ack(una, &[(1460, 1460 * 5)], 65535));
    let again = drain(&mut c, now);
    assert_eq!(seg_of(&again[0], A_ADDR, B_ADDR).seq, una);
    assert!(c.recovery.is_some() && c.status().cwnd < before.0);
    let mut dsack = sack_ack(una + 1460 * 5, &[], 65535);
    dsack.sack_ranges[0] = Some((una, una + 1460));
    c.process(now, &dsack);
    assert!(c.recovery.is_none(), "undone, so over");
    assert_eq!(c.status().ssthresh, before.1);
    assert!(c.status().cwnd >= before.0);
    assert_eq!(c.take_spurious(), (1, 1));
    drain(&mut c, now);
    // The sixth is lost; the four after it arrive.
    c.process(now, &sack_ack(una + 1460 * 5, &[(1460, 1460 * 5)], 65535));
    let repair = drain(&mut c, now);
    assert_eq!(seg_of(&repair[0], A_ADDR, B_ADDR).seq, una + 1460 * 5);
    assert!(c.recovery.is_some());
    assert!(c.status().ssthresh < before.0, "cut again");
}

#[test]
fn a_timeout_whose_every_copy_came_back_twice_is_undone_rfc3708() {
    // Six segments and then silence: the loss probe resends the last, the
    // RTO the first (one-segment window). Nothing was lost, only delayed:
    // the peer ACKs all six and D-SACKs both copies. Only after the second
    // D-SACK is every retransmission accounted for; then cwnd and
    // ssthresh are back and the go-back is over (RFC 4015: on from
    // SND.MAX).
    let una = ISS + 101;
    let before = {
        let (c, _) = established_with_sack();
        (c.status().cwnd, c.status().ssthresh)
    };
    let (mut c, now, _) = six_out_until_the_timeout();
    assert_eq!((c.loss_probes(), c.status().cwnd), (1, 1460));
    let all = una + 1460 * 6;
    let mut first = sack_ack(all, &[], 65535);
    first.sack_ranges[0] = Some((una, una + 1460));
    c.process(now, &first);
    assert_eq!(
        c.take_spurious(),
        (1, 0),
        "the probe's copy is not yet back"
    );
    let mut second = sack_ack(all, &[], 65535);
    second.sack_ranges[0] = Some((all - 1460, all));
    c.process(now, &second);
    assert_eq!(c.take_spurious(), (1, 1));
    assert_eq!((c.status().cwnd, c.status().ssthresh), before);
    assert_eq!(c.snd_nxt, c.snd_max);
}

#[test]
fn a_recovery_with_a_retransmission_not_reported_twice_stands() {
    // Two segments lost and retransmitted; a D-SACK for one of them only:
    // the other was a real loss, so the cut stays.
    let (mut c, now) = ten_out();
    let una = ISS + 101;
    c.process(now, &sack_ack(una, &[(2920, 1460 * 10)], 65535));
    let again: Vec<u32> = drain(&mut c, now)
        .iter()
        .map(|b| seg_of(b, A_ADDR, B_ADDR).seq)
        .collect();
    assert_eq!(again[..2], [una, una + 1460], "both sent again");
    let cut = (c.status().cwnd, c.status().ssthresh);
    let mut ack = sack_ack(una + 1460 * 10, &[], 65535);
    ack.sack_ranges[0] = Some((una, una + 1460));
    c.process(now, &ack);
    assert_eq!(c.take_spurious(), (1, 0));
    assert_eq!(
        (c.status().cwnd, c.status().ssthresh).1,
        cut.1,
        "ssthresh stays"
    );
}

#[test]
fn a_dsack_inside_the_second_block_counts_and_one_for_old_data_does_not_undo() {
    // RFC 2883 §4: a first block inside the second is a D-SACK too. One
    // below the start of the recovery (older news), or above what it
    // retransmitted (a copy the network made), undoes nothing.
    let (mut c, now) = established_with_sack();
    let una = ISS + 101;
    let (cwnd, _) = recovery_for_the_first_of_ten(&mut c, now);
    let mut old = sack_ack(una, &[(1460, 1460 * 10)], 65535);
    old.sack_ranges = [Some((una - 50, una)), Some((una + 1460, una + 14600)), None];
    c.process(now, &old);
    assert_eq!(c.take_spurious(), (1, 0), "counted, nothing undone");
    let mut inside = sack_ack(una, &[], 65535);
    inside.sack_ranges = [
        Some((una + 2920, una + 4380)),
        Some((una + 1460, una + 14600)),
        None,
    ];
    c.process(now, &inside);
    assert_eq!(c.take_spurious(), (1, 0));
    assert!(c.status().cwnd < cwnd);
}

#[test]
fn fast_retransmit_still_works_2_gib_after_the_last_recovery() {
    // RFC 6582's "recover" must not turn fast retransmit off once the
    // sequence space has moved on by 2^31 (where a stale mark would compare
    // as ahead of every ACK). After a recovery, move the whole connection
    // 2^31 + 1 bytes further (as 2 GiB of loss-free transfer would) and
    // lose a segment: three duplicates must still retransmit it.
    let (mut c, now) = established(cfg());
    c.send(&[7u8; 1460 * 8]).unwrap();
    drain(&mut c, now);
    let dup = |c: &mut Connection, ack: u32| {
        c.process(
            now,
            &peer_seg(TcpControl::None, PEER_ISS + 1, Some(ack), 65535, b""),
        );
    };
    for _ in 0..3 {
        dup(&mut c, ISS + 1);
    }
    drain(&mut c, now);
    dup(&mut c, ISS + 1 + 1460 * 8);
    assert!(c.recovery.is_none(), "the recovery is over");
    drain(&mut c, now);
    // The next data acknowledged past `recover`, then 2^31 + 1 bytes
    // more, as if sent and acknowledged without loss.
    c.send(&[9u8; 100]).unwrap();
    drain(&mut c, now);
    dup(&mut c, ISS + 1 + 1460 * 8 + 100);
    let far = SeqNumber((ISS + 1 + 1460 * 8 + 100).wrapping_add((1u32 << 31) + 1));
    c.snd_una = far;
    c.snd_nxt = far;
    c.snd_max = far;
    c.snd_wl2 = far;
    let retransmits = c.status().retransmits;
    c.send(&[8u8; 1460 * 8]).unwrap();
    assert!(!drain(&mut c, now).is_empty());
    for _ in 0..3 {
        dup(&mut c, far.0);
    }
    let out = drain(&mut c, now);
    assert_eq!(
        seg_of(&out[0], A_ADDR, B_ADDR).seq,
        far.0,
        "fast retransmit"
    );
    assert_eq!(c.status().retransmits, retransmits + 1);
}

#[test]
fn paws_drops_old_timestamps() {
    let now = Instant::ZERO;
    let mut c = Connection::connect(&cfg(), A_ADDR, B_ADDR, SeqNumber(ISS), now);
    drain(&mut c, now);
    let mut synack = peer_seg(TcpControl::Syn, PEER_ISS, Some(ISS + 1), 65535, b"");
    synack.timestamp = Some(TcpTimestamp {
        tsval: 1000,
        tsecr: 0,
    });
    c.process(now, &synack);
    drain(&mut c, now);
    let mut old = peer_seg(
        TcpControl::None,
        PEER_ISS + 1,
        Some(ISS + 1),
        65535,
        b"stale",
    );
    old.timestamp = Some(TcpTimestamp {
        tsval: 999,
        tsecr: 0,
    });
    c.process(now, &old);
    assert_eq!(c.status().recv_queued, 0, "PAWS rejected it");
    assert_eq!(c.take_rejection(), Some(DropReason::TcpPaws));
    let mut fresh = old;
    fresh.timestamp = Some(TcpTimestamp {
        tsval: 1001,
        tsecr: 0,
    });
    c.process(now, &fresh);
    assert_eq!(c.status().recv_queued, 5);
}

#[test]
fn sequence_numbers_wrap() {
    let now = Instant::ZERO;
    let iss = u32::MAX - 10;
    let mut c = Connection::connect(&cfg(), A_ADDR, B_ADDR, SeqNumber(iss), now);
    drain(&mut c, now);
    let peer_iss = u32::MAX - 3;
    let synack = peer_seg(
        TcpControl::Syn,
        peer_iss,
        Some(iss.wrapping_add(1)),
        65535,
        b"",
    );
    c.process(now, &synack);
    drain(&mut c, now);
    c.send(&[9; 100]).unwrap();
    drain(&mut c, now);
    let data = [5u8; 50];
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            peer_iss.wrapping_add(1),
            Some(iss.wrapping_add(101)),
            65535,
            &data,
        ),
    );
    assert_eq!(c.status().send_queued, 0, "ACK across the wrap");
    assert_eq!(c.status().recv_queued, 50, "data across the wrap");
}

// ---------------------------------------------------------------------------
// Two connections over the faulty link
// ---------------------------------------------------------------------------

/// One side of a transfer: sends `out`, collects what arrives, closes when
/// done sending.
struct Side {
    conn: Connection,
    port: MemPort,
    out: Vec<u8>,
    written: usize,
    got: Vec<u8>,
    closed: bool,
    /// Retransmission timeouts before the handshake completed (a lost SYN
    /// or SYN-ACK has nothing but the timer).
    handshake_rtos: Option<u64>,
}

impl Side {
    /// Retransmission timeouts of data, after the handshake.
    fn data_rtos(&self) -> u64 {
        self.conn.rto_count() - self.handshake_rtos.unwrap_or(self.conn.rto_count())
    }

    fn pump(&mut self, now: Instant) {
        if self.handshake_rtos.is_none() && self.conn.state().is_synchronized() {
            self.handshake_rtos = Some(self.conn.rto_count());
        }
        let (local, remote) = (self.conn.local(), self.conn.remote());
        while let Some(bytes) = self.port.recv() {
            if let Some(seg) = parse(&bytes, remote, local) {
                if let Some(reply) = self.conn.process(now, &seg) {
                    self.port.send_frame(&serialize(&reply, local, remote));
                }
            }
        }
        if self.conn.state().is_synchronized() || self.conn.state() == State::SynReceived {
            while self.written < self.out.len() {
                match self.conn.send(&self.out[self.written..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.written += n,
                }
            }
            if self.written == self.out.len()
                && !self.closed
                && self.conn.state() != State::SynReceived
            {
                self.closed = self.conn.close().is_ok();
            }
        }
        let mut buf = [0u8; 8192];
        while let Ok(n) = self.conn.recv(&mut buf) {
            if n == 0 {
                break;
            }
            self.got.extend_from_slice(&buf[..n]);
        }
        let port = &mut self.port;
        self.conn
            .dispatch(now, |r| {
                port.send_frame(&serialize(r, local, remote));
                Ok(())
            })
            .unwrap();
    }

    fn done(&self) -> bool {
        matches!(self.conn.state(), State::Closed | State::TimeWait)
    }
}

/// Transfers `a_data` from A to B and `b_data` from B to A at once over a
/// link with `faults`; returns what each received and the final states.
fn transfer(a_data: &[u8], b_data: &[u8], faults: Faults, seed: u64) -> (Side, Side, Instant) {
    // The real 2 MSL: a side in TIME-WAIT must outlive the other's FIN
    // retransmissions (no listener here answers a late FIN with a RST).
    transfer_with(&TcpConfig::default(), a_data, b_data, faults, seed)
}

fn transfer_with(
    config: &TcpConfig,
    a_data: &[u8],
    b_data: &[u8],
    faults: Faults,
    seed: u64,
) -> (Side, Side, Instant) {
    let config = config.clone();
    let (link, port_a, port_b) = MemLink::new(faults, seed, 1 << 20);
    let mut now = Instant::ZERO;
    let mut a = Side {
        conn: Connection::connect(
            &config,
            A_ADDR,
            B_ADDR,
            SeqNumber(seed as u32 ^ 0x1234_5678),
            now,
        ),
        port: port_a,
        out: a_data.to_vec(),
        written: 0,
        got: Vec::new(),
        closed: false,
        handshake_rtos: None,
    };
    // B accepts A's first SYN that gets through.
    let mut b_port = port_b;
    let syn_bytes = loop {
        a.pump(now);
        if let Some(bytes) = b_port.recv() {
            if let Some(seg) = parse(&bytes, A_ADDR, B_ADDR) {
                if seg.control == TcpControl::Syn && seg.ack_number.is_none() {
                    break bytes;
                }
            }
        }
        now = [link.next_delivery(), a.conn.poll_at(now)]
            .into_iter()
            .flatten()
            .min()
            .expect("SYN pending");
        link.set_now(now);
    };
    let syn = parse(&syn_bytes, A_ADDR, B_ADDR).unwrap();
    let mut b = Side {
        conn: Connection::accept(
            &config,
            B_ADDR,
            A_ADDR,
            &syn,
            SeqNumber(!(seed as u32)),
            now,
        ),
        port: b_port,
        out: b_data.to_vec(),
        written: 0,
        got: Vec::new(),
        closed: false,
        handshake_rtos: None,
    };
    let mut steps = 0u64;
    while !(a.done() && b.done() && link.in_flight() == 0) {
        a.pump(now);
        b.pump(now);
        steps += 1;
        assert!(
            steps < 5_000_000,
            "seed {seed}: no progress: A {:?} B {:?}",
            a.conn,
            b.conn
        );
        let next = [
            link.next_delivery(),
            a.conn.poll_at(now),
            b.conn.poll_at(now),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(t) if t > now => now = t,
            Some(_) => {}
            None => break,
        }
        link.set_now(now);
    }
    (a, b, now)
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8)
        .collect()
}

fn lossy(loss: f64) -> Faults {
    Faults {
        drop: loss,
        duplicate: 0.02,
        reorder: 0.05,
        corrupt: 0.02,
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(2),
        reorder_delay: Duration::from_millis(3),
        burst: 0,
        ethernet: false,
        max_frame: 0,
    }
}

fn check_transfer(len_a: usize, len_b: usize, faults: Faults, seed: u64) {
    let (a_data, b_data) = (pattern(len_a, 1), pattern(len_b, 2));
    let (a, b, _) = transfer(&a_data, &b_data, faults, seed);
    assert!(
        b.got == a_data,
        "seed {seed}: A->B {} of {} bytes\nA {:#?}\nB {:#?}",
        b.got.len(),
        len_a,
        a.conn.status(),
        b.conn.status()
    );
    assert!(
        a.got == b_data,
        "seed {seed}: B->A {} of {} bytes",
        a.got.len(),
        len_b
    );
    for side in [&a, &b] {
        assert!(side.done(), "seed {seed}: {:?}", side.conn.state());
        assert_eq!(side.conn.error(), None, "seed {seed}");
    }
}

#[test]
fn transfers_of_every_edge_size_arrive_byte_exact_on_a_clean_link() {
    let mss = 1460 - 12;
    for len in [0, 1, mss - 1, mss, mss + 1, 100_000] {
        check_transfer(len, len / 2, Faults::none(), len as u64);
    }
}

#[test]
fn transfers_survive_loss_duplication_reordering_and_corruption() {
    let mss = 1460 - 12;
    for seed in 0..12u64 {
        for len in [0, 1, mss - 1, mss, mss + 1] {
            check_transfer(len, len, lossy(0.10), seed * 100 + len as u64);
        }
    }
}

#[test]
fn a_mebibyte_each_way_at_ten_percent_loss() {
    for seed in 0..8 {
        check_transfer(1 << 20, 1 << 20, lossy(0.10), seed);
    }
}

#[test]
fn sixteen_mebibytes_each_way_at_ten_percent_loss() {
    for seed in 0..2 {
        check_transfer(16 << 20, 16 << 20, lossy(0.10), 1000 + seed);
    }
}

/// A link with only random loss (`drop`, in bursts of `burst`) and a
/// 10 ms one-way delay: what loss recovery is measured on.
fn loss_only(drop: f64, burst: usize) -> Faults {
    Faults {
        drop,
        burst,
        delay: Duration::from_millis(10),
        ..Faults::none()
    }
}

/// 4 MiB from A to B over `faults` for each seed: byte-exact, and the
/// sender's retransmission timeouts and retransmissions, with the link's
/// drops, summed over the seeds.
fn recovery_run(faults: &Faults, seeds: std::ops::Range<u64>) -> (u64, u64, u64) {
    let data = pattern(4 << 20, 5);
    let (mut rtos, mut rexmits, mut dropped) = (0, 0, 0);
    for seed in seeds {
        let (a, b, end) = transfer(&data, &[], faults.clone(), seed);
        assert!(
            b.got == data,
            "seed {seed}: {} of {} bytes",
            b.got.len(),
            data.len()
        );
        eprintln!(
            "seed {seed}: {} RTOs of data, {} loss probes, {} retransmits, done at {:?}",
            a.data_rtos(),
            a.conn.loss_probes(),
            a.conn.retransmits(),
            end
        );
        rtos += a.data_rtos();
        rexmits += a.conn.retransmits();
        dropped += a.port.stats().dropped;
    }
    (rtos, rexmits, dropped)
}

#[test]
fn sack_recovery_repairs_one_percent_random_loss_without_timeouts() {
    // RFC 6675: with the pipe counting only what is in the network, every
    // lost segment that data after it reveals is repaired by fast
    // retransmit; RFC 3042 covers windows too small for three duplicates.
    // What is left to the RTO is a loss with nothing sent after it (the
    // tail), and a retransmission lost with nothing new behind it.
    let (rtos, rexmits, dropped) = recovery_run(&loss_only(0.01, 1), 0..8);
    assert!(dropped > 100, "the link dropped {dropped}");
    // Today: 1 RTO for about 250 drops over the 8 runs (a lost ACK for a
    // whole flight while a retransmission was out: this link delivers a
    // flight at one instant, and the receiver acknowledges the batch with
    // one ACK, as MUST-59 asks); the pipe that counted lost segments gave
    // one for most drops.
    assert!(rtos <= 8, "{rtos} timeouts for {dropped} drops over 8 runs");
    assert!(
        rexmits < dropped * 2,
        "{rexmits} retransmits for {dropped} drops"
    );
}

#[test]
fn sack_recovery_repairs_bursts_of_ten_without_timeouts() {
    // A queue overflowing drops runs of segments: ten in a row, about once
    // per 1000 frames. SACK reports the whole hole; it is retransmitted
    // within one recovery, not one segment per RTO.
    let (rtos, rexmits, dropped) = recovery_run(&loss_only(0.001, 10), 0..8);
    assert!(dropped > 100, "the link dropped {dropped}");
    assert!(rtos <= 4, "{rtos} timeouts for {dropped} drops over 8 runs");
    assert!(
        rexmits < dropped * 2,
        "{rexmits} retransmits for {dropped} drops"
    );
}

#[test]
fn reordering_without_loss_is_learnt_from_dsacks_and_its_cuts_undone() {
    // A link that only reorders (1% of frames held back 3 ms on a 5 ms
    // path) and loses nothing: every fast retransmission it provokes is
    // needless. The receiver D-SACKs the second copies (RFC 2883), the
    // sender undoes those cuts (RFC 3708) and widens RACK's reordering
    // window (RFC 8985 §6.2), so most reorderings stop costing anything.
    let faults = Faults {
        reorder: 0.01,
        delay: Duration::from_millis(5),
        reorder_delay: Duration::from_millis(3),
        ..lossy(0.0)
    };
    let faults = Faults {
        duplicate: 0.0,
        corrupt: 0.0,
        jitter: Duration::ZERO,
        ..faults
    };
    let data = pattern(4 << 20, 9);
    let (mut a, b, _) = transfer(&data, b"", faults, 11);
    assert!(b.got == data, "byte-exact");
    let (dsacks, undos) = a.conn.take_spurious();
    let retransmits = a.conn.retransmits();
    // The README quotes these (run with --nocapture).
    eprintln!("reordering only: {retransmits} retransmissions, {dsacks} D-SACKs, {undos} undos");
    assert!(dsacks > 0 && undos > 0, "{dsacks} D-SACKs, {undos} undos");
    assert_eq!(a.data_rtos(), 0);
    assert!(
        u64::from(undos) * 2 >= retransmits,
        "most cuts undone: {undos} undos for {retransmits} retransmissions"
    );
}

#[test]
fn newreno_without_sack_or_timestamps_also_recovers() {
    // The peer of a connect() offers what the config offers; turning the
    // options off exercises NewReno and RTT timing without timestamps.
    let (a_data, b_data) = (pattern(300_000, 3), pattern(200_000, 4));
    let config = TcpConfig {
        sack: false,
        timestamps: false,
        window_scaling: false,
        congestion: super::super::congestion::Algorithm::NewReno,
        ..TcpConfig::default()
    };
    for seed in 0..4 {
        let (a, b, _) = transfer_with(&config, &a_data, &b_data, lossy(0.10), seed);
        assert!(b.got == a_data && a.got == b_data, "seed {seed}");
        assert!(!a.conn.status().sack && !a.conn.status().timestamps);
    }
}

#[test]
fn a_timeout_into_a_zero_window_still_leaves_a_timer() {
    let (mut c, mut now) = established(cfg());
    c.send(b"hello").unwrap();
    assert_eq!(drain(&mut c, now).len(), 1);
    // The peer's window closes without acknowledging anything.
    c.process(
        now,
        &peer_seg(TcpControl::None, PEER_ISS + 1, Some(ISS + 1), 0, b""),
    );
    now = c.poll_at(now).expect("retransmission timer");
    assert!(drain(&mut c, now).is_empty(), "nothing fits a zero window");
    let next = c.poll_at(now).expect("a persist timer, not a hang");
    let probe = seg_of(&drain(&mut c, next)[0], A_ADDR, B_ADDR);
    assert_eq!(probe.seq, ISS, "a window probe");
}

#[test]
fn a_small_window_is_used_when_nothing_is_in_flight() {
    let (mut c, now) = established(cfg());
    c.process(
        now,
        &peer_seg(TcpControl::None, PEER_ISS + 1, Some(ISS + 1), 1000, b""),
    );
    c.send(&[1; 5000]).unwrap();
    let out = drain(&mut c, now);
    assert_eq!(
        seg_of(&out[0], A_ADDR, B_ADDR).len,
        1000,
        "SWS avoidance must not stall"
    );
}

#[test]
fn acks_are_taken_from_segments_that_hit_a_zero_receive_window() {
    let config = TcpConfig {
        recv_buffer: 1000,
        ..cfg()
    };
    let (mut c, now) = established(config);
    c.send(b"ours").unwrap();
    drain(&mut c, now);
    // The peer fills our receive buffer; our window is now zero.
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 1,
            Some(ISS + 1),
            65535,
            &[7; 1000],
        ),
    );
    drain(&mut c, now);
    // Its next segment (a probe) carries the ACK of our data.
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 1001,
            Some(ISS + 5),
            65535,
            b"x",
        ),
    );
    assert_eq!(
        c.status().send_queued,
        0,
        "the ACK counted though the text did not fit"
    );
    assert_eq!(c.status().recv_queued, 1000);
}

#[test]
fn a_new_syn_may_reuse_a_tuple_in_time_wait_only_going_forward() {
    let (mut c, now) = established(cfg());
    c.close().unwrap();
    drain(&mut c, now);
    c.process(
        now,
        &peer_seg(TcpControl::None, PEER_ISS + 1, Some(ISS + 2), 65535, b""),
    );
    c.process(
        now,
        &peer_seg(TcpControl::Fin, PEER_ISS + 1, Some(ISS + 2), 65535, b""),
    );
    assert_eq!(c.state(), State::TimeWait);
    let newer = peer_seg(TcpControl::Syn, PEER_ISS + 100_000, None, 65535, b"");
    let older = peer_seg(
        TcpControl::Syn,
        PEER_ISS.wrapping_sub(100_000),
        None,
        65535,
        b"",
    );
    assert!(c.time_wait_allows(&newer));
    assert!(!c.time_wait_allows(&older));
}

/// Header prediction must change nothing but speed: two identical
/// connections (timestamps, SACK and window scaling negotiated), one with
/// the fast path and one without, fed the same seeded mix of in-order data,
/// PSH, duplicates, out-of-order segments, stale timestamps, window changes
/// and ACKs of their own data, must send the same bytes, report the same
/// events and status, and deliver the same data, step by step.
#[test]
fn header_prediction_matches_the_full_path() {
    for seed in 1..=20u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let now = Instant::ZERO;
        let open = |predict: bool| {
            let mut c = Connection::connect(&cfg(), A_ADDR, B_ADDR, SeqNumber(ISS), now);
            c.predict = predict;
            drain(&mut c, now);
            let mut synack = peer_seg(TcpControl::Syn, PEER_ISS, Some(ISS + 1), 65535, b"");
            synack.max_seg_size = Some(1460);
            synack.window_scale = Some(7);
            synack.sack_permitted = true;
            synack.timestamp = Some(TcpTimestamp {
                tsval: 100,
                tsecr: 0,
            });
            c.process(now, &synack);
            drain(&mut c, now);
            c
        };
        let (mut fast, mut full) = (open(true), open(false));
        let mut t = now;
        let mut seq = PEER_ISS + 1;
        let mut tsval = 100u32;
        let mut window = 512u16;
        let mut our_acked = ISS + 1;
        let payload: Vec<u8> = (0..1460).map(|i| (i * 7) as u8).collect();
        for step in 0..400 {
            t += Duration::from_millis(rng.u64(0..3));
            // We send a little now and then, so ACKs can acknowledge it.
            if rng.u8(0..10) == 0 {
                let data = [step as u8; 700];
                assert_eq!(fast.send(&data), full.send(&data));
            }
            let len = match rng.u8(0..10) {
                0 => 1,
                1 => 100,
                _ => 1460,
            };
            let mut s = peer_seg(
                TcpControl::None,
                seq,
                Some(our_acked),
                window,
                &payload[..len],
            );
            s.timestamp = Some(TcpTimestamp { tsval, tsecr: 0 });
            match rng.u8(0..20) {
                0 => s.control = TcpControl::Psh,
                1 => s.seq_number = SeqNumber(seq.wrapping_sub(1460)), // duplicate
                2 => s.seq_number = SeqNumber(seq + 1460),             // ahead: a hole
                3 => {
                    s.timestamp = Some(TcpTimestamp {
                        tsval: tsval.wrapping_sub(5),
                        tsecr: 0,
                    })
                }
                4 => window = rng.u16(1..1024),
                5 => {
                    // Acknowledge what we have sent.
                    let sent = fast.status().send_queued;
                    our_acked = our_acked.wrapping_add(sent as u32);
                    s.ack_number = Some(SeqNumber(our_acked));
                }
                _ => {}
            }
            s.window_len = window;
            assert_eq!(
                fast.process(t, &s).is_some(),
                full.process(t, &s).is_some(),
                "seed {seed} step {step}"
            );
            if s.seq_number.0 == seq && s.control != TcpControl::Rst {
                seq = seq.wrapping_add(len as u32);
            }
            tsval = tsval.wrapping_add(rng.u32(0..2));
            assert_eq!(
                drain(&mut fast, t),
                drain(&mut full, t),
                "seed {seed} step {step}: output"
            );
            assert_eq!(
                fast.take_events(),
                full.take_events(),
                "seed {seed} step {step}: events"
            );
            assert_eq!(
                fast.status(),
                full.status(),
                "seed {seed} step {step}: status"
            );
            assert_eq!(
                fast.poll_at(t),
                full.poll_at(t),
                "seed {seed} step {step}: deadline"
            );
            if rng.bool() {
                let (mut a, mut b) = (vec![0; 4096], vec![0; 4096]);
                assert_eq!(fast.recv(&mut a), full.recv(&mut b));
                assert_eq!(a, b, "seed {seed} step {step}: data");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Memory on demand
// ---------------------------------------------------------------------------

#[test]
fn buffers_are_taken_as_data_flows_and_freed_once_idle() {
    let (mut c, now) = established(cfg());
    assert_eq!(c.buffer_bytes(), 0, "an established connection holds none");
    c.send(b"hello").unwrap();
    assert_eq!(c.buffer_bytes(), MIN_RING, "one page for a small response");
    drain(&mut c, now);
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 1,
            Some(ISS + 6),
            65535,
            b"GET /",
        ),
    );
    assert_eq!(c.buffer_bytes(), 2 * MIN_RING);
    let mut buf = [0u8; 16];
    assert_eq!(c.recv(&mut buf), Ok(5));
    // Both rings are empty now: freed TRIM_AFTER after the last segment
    // (the delayed ACK goes first).
    let mut t = now;
    while c.buffer_bytes() > 0 {
        t = c.poll_at(t).expect("a timer");
        drain(&mut c, t);
    }
    assert_eq!(t, now + TRIM_AFTER);
    assert_eq!(
        c.buffer_bytes(),
        0,
        "an idle keep-alive connection holds none"
    );
    // A bigger write grows the ring by doubling, to the configured size.
    let big = vec![1u8; 300_000];
    let n = c.send(&big).unwrap();
    assert_eq!(n, cfg().send_buffer);
    assert_eq!(c.buffer_bytes(), cfg().send_buffer);
}

#[test]
fn the_receive_window_starts_small_and_grows_with_what_the_reader_takes() {
    let (mut c, mut now) = established(cfg());
    assert_eq!(c.rcv_space, INITIAL_RCV_SPACE);
    let advertised = seg_of(
        &{
            c.send(b"x").unwrap();
            drain(&mut c, now).remove(0)
        },
        A_ADDR,
        B_ADDR,
    )
    .window;
    assert_eq!(
        usize::from(advertised),
        INITIAL_RCV_SPACE - 1,
        "64 KiB, not 256"
    );
    // A reader that keeps up takes 40 segments within one round trip
    // (100 ms before an RTT is measured) ...
    let mut seq = PEER_ISS + 1;
    let mut buf = vec![0u8; 2048];
    for _ in 0..40 {
        c.process(
            now,
            &peer_seg(TcpControl::None, seq, Some(ISS + 2), 65535, &[3u8; 1460]),
        );
        seq += 1460;
        while c.recv(&mut buf).unwrap_or(0) > 0 {}
    }
    // ... and the next read, a round trip on, doubles the window (at
    // least: to twice what the reader took if that is more).
    now += Duration::from_millis(150);
    c.process(
        now,
        &peer_seg(TcpControl::None, seq, Some(ISS + 2), 65535, &[3u8; 1460]),
    );
    while c.recv(&mut buf).unwrap_or(0) > 0 {}
    assert_eq!(c.rcv_space, 2 * INITIAL_RCV_SPACE);
}

#[test]
fn under_memory_pressure_out_of_order_data_goes_first() {
    let (mut c, now) = established(cfg());
    c.set_memory_pressure(true);
    // Out of order, with no ring allocated: dropped, and the peer is told
    // where we are.
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 1 + 100,
            Some(ISS + 1),
            65535,
            &[1u8; 100],
        ),
    );
    assert_eq!(c.take_rejection(), Some(DropReason::TcpMemoryPressure));
    assert_eq!(c.buffer_bytes(), 0);
    let ack = seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR);
    assert_eq!(ack.ack, Some(PEER_ISS + 1));
    // In-order data within the window we offered still gets in.
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 1,
            Some(ISS + 1),
            65535,
            &[1u8; 100],
        ),
    );
    assert_eq!(c.take_rejection(), None);
    assert_eq!(c.status().recv_queued, 100);
    // And the window's right edge stays where it was offered (it is never
    // taken back, RFC 9293 §3.8.6, and does not move on).
    let edge = c.rcv_adv;
    assert_eq!(c.rcv_nxt + (c.advertised_window() << c.rcv_wscale), edge);
    assert_eq!(c.rcv_free(), MIN_RING - 100, "one ring, no growth");
}

#[test]
fn repeated_timeouts_of_full_segments_fall_back_to_1024_rfc4821() {
    // A hop drops 1460-byte segments without an ICMP (a path MTU black
    // hole). RFC 4821 §7.4: after three timeouts in a row the segment size
    // falls back, so the connection moves again.
    let (mut c, mut now) = established(cfg());
    c.send(&vec![7u8; 1460 * 6]).unwrap();
    assert!(drain(&mut c, now)
        .iter()
        .all(|b| seg_of(b, A_ADDR, B_ADDR).len == 1460));
    let mut lens = Vec::new();
    for _ in 0..3 {
        now = c.poll_at(now).expect("the retransmission timer");
        lens.push(seg_of(&drain(&mut c, now)[0], A_ADDR, B_ADDR).len);
    }
    assert_eq!(lens, vec![1460, 1460, 1024], "the third timeout falls back");
    assert_eq!(c.black_holes(), 1);
    // The small segments get through: acknowledged, the rest goes at 1024.
    c.process(
        now,
        &peer_seg(
            TcpControl::None,
            PEER_ISS + 1,
            Some(ISS + 1 + 1024),
            65535,
            b"",
        ),
    );
    let out = drain(&mut c, now);
    assert!(!out.is_empty());
    assert!(out.iter().all(|b| seg_of(b, A_ADDR, B_ADDR).len <= 1024));
}

/// [`established_with_sack`] after an ICMP message lowered the segment
/// size to 960 (a 1000-byte MTU) and ten minutes passed with everything
/// acknowledged: the path MTU search (RFC 8899 §5.1.1) is due. With
/// `data` queued, what goes out: SND.UNA before it, and the segments.
fn probing_after_icmp(data: usize) -> (Connection, Instant, u32, Vec<Seg>) {
    let (mut c, mut now) = established_with_sack();
    c.send(&[3u8; 1460]).unwrap();
    drain(&mut c, now);
    assert!(c.path_mtu(now, SeqNumber(ISS + 101), 1000));
    assert_eq!(c.status().send_mss, 960);
    drain(&mut c, now);
    let una = ISS + 101 + 1460;
    c.process(now, &sack_ack(una, &[], 65535));
    now += Duration::from_secs(600);
    c.send(&vec![4u8; data]).unwrap();
    let segs = drain(&mut c, now)
        .iter()
        .map(|b| seg_of(b, A_ADDR, B_ADDR))
        .collect();
    (c, now, una, segs)
}

#[test]
fn an_acknowledged_mtu_probe_raises_the_segment_size_rfc8899() {
    // RFC 8899 §5.1.1: ten minutes after an ICMP message lowered the size,
    // a probe halfway to the full size goes among the data (§5.2), with
    // segments of the size in use behind it; its ACK makes its size the
    // segment size (§5.2: the probed size is confirmed).
    let (mut c, now, una, segs) = probing_after_icmp(960 * 20);
    let retransmits = c.status().retransmits;
    assert_eq!((segs[0].seq, segs[0].len), (una, 1210), "the probe first");
    assert!(segs.len() >= 4, "three segments behind it: {segs:?}");
    assert!(segs[1..].iter().all(|s| s.len == 960), "{segs:?}");
    assert_eq!(c.status().send_mss, 960, "nothing known yet");
    c.process(now, &sack_ack(una + 1210, &[], 65535));
    assert_eq!(c.status().send_mss, 1210);
    assert_eq!(c.take_mtu_probes(), (1, 0));
    assert_eq!(c.status().retransmits, retransmits);
}

#[test]
fn a_lost_mtu_probe_is_sent_again_in_smaller_segments_without_a_cwnd_cut() {
    // RFC 8899 §3 item 7: a lost probe is not congestion. The segments
    // behind it are SACKed, so the probe is lost (RFC 6675 IsLost); its
    // data goes again at the size in use, and cwnd stays.
    let (mut c, now, una, segs) = probing_after_icmp(960 * 20);
    let flight = segs.len() as u32 - 1;
    let cwnd = c.status().cwnd;
    c.process(now, &sack_ack(una, &[(1210, 1210 + 960 * flight)], 65535));
    let again: Vec<Seg> = drain(&mut c, now)
        .iter()
        .map(|b| seg_of(b, A_ADDR, B_ADDR))
        .collect();
    assert_eq!((again[0].seq, again[0].len), (una, 960));
    assert_eq!((again[1].seq, again[1].len), (una + 960, 250));
    assert_eq!(c.take_mtu_probes(), (0, 1));
    assert!(c.status().cwnd >= cwnd, "{} < {cwnd}", c.status().cwnd);
    assert_eq!(c.status().send_mss, 960);
    // Recovery ends; the window is still what it was, not ssthresh.
    let all = una + 1210 + 960 * flight;
    c.process(now, &sack_ack(all, &[], 65535));
    assert!(c.status().cwnd >= cwnd, "{} < {cwnd}", c.status().cwnd);
}

#[test]
fn a_loss_beside_a_lost_mtu_probe_still_cuts_cwnd() {
    // The probe and the segment after it are lost: the second loss is
    // congestion, and the recovery reduces cwnd once (RFC 6675 §5).
    let (mut c, now, una, segs) = probing_after_icmp(960 * 20);
    let flight = segs.len() as u32 - 1;
    let cwnd = c.status().cwnd;
    let sacked = (1210 + 960, 1210 + 960 * flight);
    c.process(now, &sack_ack(una, &[sacked], 65535));
    drain(&mut c, now);
    assert_eq!(c.take_mtu_probes(), (0, 1));
    assert!(c.status().cwnd < cwnd, "the window was reduced");
}

#[test]
fn an_icmp_message_about_an_mtu_probe_bounds_the_search_rfc8899() {
    // RFC 8899 §4.6.2: a router that drops the 1210-byte probe and says
    // its MTU is 1140 (1100 bytes of payload) bounds the search there; the
    // size in use stays 960, the probe's data is repaired as any lost
    // probe's, and the next probe is halfway between 960 and 1100.
    let (mut c, now, una, segs) = probing_after_icmp(960 * 40);
    assert_eq!(segs[0].len, 1210);
    assert!(c.path_mtu(now, SeqNumber(una), 1140));
    assert_eq!(c.status().send_mss, 960);
    let flight = segs.len() as u32 - 1;
    c.process(now, &sack_ack(una, &[(1210, 1210 + 960 * flight)], 65535));
    drain(&mut c, now);
    let all = c.snd_max.0;
    c.process(now, &sack_ack(all, &[], 65535));
    let next = drain(&mut c, now);
    let s = seg_of(&next[0], A_ADDR, B_ADDR);
    assert_eq!((s.seq, s.len), (all, 1030), "the next probe");
}

/// Four segments out with nothing more to send, no ACK: the loss probe
/// (2·SRTT later) sends the last one again. Returns the probe's time and
/// cwnd before it.
fn probe_of_the_last_of_four() -> (Connection, Instant, usize) {
    let (mut c, now) = established_with_sack();
    let una = ISS + 101;
    c.send(&[5u8; 1460 * 4]).unwrap();
    assert_eq!(drain(&mut c, now).len(), 4);
    let cwnd = c.status().cwnd;
    let due = c.poll_at(now).expect("the probe timer");
    let out = drain(&mut c, due);
    let s = seg_of(&out[0], A_ADDR, B_ADDR);
    assert_eq!((s.seq, s.len, c.loss_probes()), (una + 4380, 1460, 1));
    (c, due, cwnd)
}

/// One more segment sent after [`probe_of_the_last_of_four`], and its ACK:
/// the first that goes past the probe's episode.
fn one_more_acked(c: &mut Connection, now: Instant) {
    c.send(&[6u8; 1460]).unwrap();
    drain(c, now);
    c.process(now, &sack_ack(ISS + 101 + 1460 * 5, &[], 65535));
}

#[test]
fn a_loss_the_probe_repaired_cuts_cwnd_rfc8985_7_4() {
    // The last segment was lost and the probe's copy repaired it: the ACK
    // covers all four, and the next ACK goes beyond without a D-SACK for
    // the probe. RFC 8985 §7.4.2: that was a loss, and the congestion
    // response is due as for any other (Linux's tcp_process_tlp_ack).
    let (mut c, now, cwnd) = probe_of_the_last_of_four();
    let una = ISS + 101;
    c.process(now, &sack_ack(una + 1460 * 4, &[], 65535));
    assert_eq!(c.status().cwnd, cwnd, "not yet: a D-SACK may follow");
    one_more_acked(&mut c, now);
    assert!(c.status().cwnd < cwnd, "cut: {} of {cwnd}", c.status().cwnd);
    assert_eq!(c.take_tlp_recoveries(), 1);
}

#[test]
fn a_probe_whose_copy_comes_back_d_sacked_found_no_loss() {
    // The original arrived after all: the peer D-SACKs the probe's copy,
    // so nothing was lost and cwnd stays.
    let (mut c, now, cwnd) = probe_of_the_last_of_four();
    let una = ISS + 101;
    c.process(now, &sack_ack(una + 1460 * 4, &[], 65535));
    let mut dsack = sack_ack(una + 1460 * 4, &[], 65535);
    dsack.sack_ranges[0] = Some((una + 4380, una + 5840));
    let reo = c.reo_wnd();
    c.process(now, &dsack);
    assert_eq!(c.reo_wnd(), reo, "a probe's copy is no sign of reordering");
    one_more_acked(&mut c, now);
    assert!(c.status().cwnd >= cwnd);
    assert_eq!(c.take_tlp_recoveries(), 0);
}

#[test]
fn a_probe_answered_by_a_plain_duplicate_ack_found_no_loss() {
    // A peer that sends no D-SACKs answers the probe's copy of data it
    // had with a plain duplicate ACK: RFC 8985 §7.4.2's last rule, no loss.
    let (mut c, now, cwnd) = probe_of_the_last_of_four();
    let una = ISS + 101;
    c.process(now, &sack_ack(una + 1460 * 4, &[], 65535));
    c.process(now, &sack_ack(una + 1460 * 4, &[], 65535));
    one_more_acked(&mut c, now);
    assert!(c.status().cwnd >= cwnd);
    assert_eq!(c.take_tlp_recoveries(), 0);
}

#[test]
fn a_loss_probe_due_with_the_timeout_goes_in_its_place() {
    // One segment out: PTO = 2·SRTT + the peer's delayed ACK allowance,
    // later than the RTO (200 ms): the probe is scheduled at the RTO's
    // time and goes instead of it (Linux's tcp_schedule_loss_probe), so
    // the window is not collapsed to one segment for a lost tail.
    let (mut c, now) = established_with_sack();
    c.send(&[5u8; 1000]).unwrap();
    assert_eq!(drain(&mut c, now).len(), 1);
    let due = c.poll_at(now).expect("a timer");
    let out = drain(&mut c, due);
    assert_eq!(out.len(), 1, "the probe");
    assert_eq!((c.rto_count(), c.loss_probes()), (0, 1));
}

#[test]
fn a_black_hole_search_finds_the_path_mtu_by_probing_rfc4821() {
    // A path that carries TCP segments of at most 1332 bytes (a 1352-byte
    // IP MTU: 1300 bytes of payload with timestamps) and drops larger ones
    // in silence. Three timeouts find the black hole (RFC 4821 §7.4); the
    // search then probes up from 1024 to within 8 bytes of 1300 (1236,
    // 1289 and 1295 get through; 1342, 1315 and 1302 are each lost three
    // times), and the transfer is byte-exact. Also at 1% loss.
    let data = pattern(4 << 20, 9);
    for (loss, seed) in [(0.0, 1), (0.01, 2), (0.01, 3)] {
        let faults = Faults {
            max_frame: 20 + 12 + 1300,
            ..loss_only(loss, 1)
        };
        let (mut a, b, _) = transfer(&data, &[], faults, seed);
        assert!(b.got == data, "seed {seed}: {} bytes", b.got.len());
        let mss = a.conn.status().send_mss;
        assert!((1292..=1300).contains(&mss), "seed {seed}: ended at {mss}");
        assert_eq!(a.conn.black_holes(), 1, "seed {seed}");
        // The three that find the black hole, and at 1% loss at most one
        // more (a flight whose one ACK was lost: this link delivers a
        // flight at one instant, and its receiver acknowledges the batch).
        let (acked, lost) = a.conn.take_mtu_probes();
        assert!(acked >= 3 && lost >= 6, "seed {seed}: {acked} and {lost}");
        assert!(
            a.data_rtos() <= 3 + 1,
            "seed {seed}: {} timeouts",
            a.data_rtos()
        );
    }
}
