//! Micro-benchmarks of the TCP engine, each against smoltcp 0.12 doing the
//! same work in the same run where it can (absolute numbers drift between
//! runs on noisy machines):
//!
//! * `segment_in_ack_out`: two in-order full-sized data segments (1448 bytes
//!   of payload beside the timestamp option) arrive on an ESTABLISHED
//!   connection, the application consumes the bytes (no copy), and the one
//!   ACK that the every-second-segment rule calls for goes out, serialized
//!   with its checksum. Per iteration: 2 segments in, 1 ACK out.
//!   - `bypass_connection`: `Connection::process` twice on a prebuilt
//!     `TcpRepr` (no parsing, no checksum check), `readable` + `consume`,
//!     `Connection::dispatch` with `TcpRepr::emit` into one reused buffer.
//!   - `bypass_interface`: the whole engine: two Ethernet frames through
//!     `Interface::receive_frame` (Ethernet, IPv4 and TCP parsed, both
//!     checksums verified, 4-tuple lookup), the read through
//!     `Shard::get_mut`, then `Interface::poll` framing the ACK (Ethernet,
//!     IPv4, TCP, both checksums) into a `Capture`.
//!   - `smoltcp_interface`: the same two frames through smoltcp's
//!     `Interface::poll_ingress_single` (checksums verified), `recv` without
//!     copying, then `poll_egress` framing the ACK into the same `Capture`.
//! * `handshake`: SYN in, SYN-ACK out, final ACK in (ESTABLISHED), then
//!   ABORT and its RST out, so the next iteration starts from a bare
//!   listener; the same client 4-tuple is reused each time. Virtual time
//!   moves 10 µs per iteration (a server taking 100k connections a second),
//!   so timers a connection leaves behind expire as they would.
//!   - `bypass_shard`: TCP segments (no Ethernet or IPv4) through
//!     `Shard::receive` and `Shard::dispatch`, output serialized with
//!     checksums, plus `accept`, `abort`, `release`, `take_events`. Each
//!     connection allocates its send and receive buffers (256 KiB each with
//!     the default `TcpConfig`).
//!   - `bypass_interface`: the same as Ethernet frames through
//!     `Interface::receive_frame` and `Interface::poll`.
//!   - `smoltcp_interface`: the same frames through smoltcp's `Interface::poll`
//!     to one listening socket, `abort`, `listen` again (its buffers are the
//!     socket's, allocated once).
//! * `send_64k`: 64 KiB queued on an ESTABLISHED connection whose windows
//!   (the peer's: 8 MiB; congestion: opened beforehand) let all of it go,
//!   cut into 46 segments of 1448 bytes (the last one 376) and serialized
//!   with checksums. Only the queueing and the output are timed; the peer's
//!   cumulative ACK between iterations is not.
//!   - `bypass_connection`: `Connection::send` (a copy into the send buffer)
//!     and one `Connection::dispatch`, each segment into one reused buffer.
//!   - `bypass_interface`: `Connection::send` through `Shard::get_mut`, then
//!     one `Interface::poll` framing 46 Ethernet frames into a `Capture`.
//!   - `smoltcp_interface`: `send_slice`, then `Interface::poll` until it has
//!     nothing left (smoltcp sends one segment per socket per poll), into
//!     the same `Capture`.
//!
//! Both stacks run CUBIC, timestamps, SACK-permitted and window scaling,
//! with 256 KiB buffers, Nagle off, checksums computed and verified in
//! software. smoltcp 0.12 does not take the timestamp option out of the
//! MSS (later versions do), so its peer announces an MSS of 1448 instead of
//! 1460: both stacks then send 1448-byte payloads in 1500-byte packets.
//!
//! The peer's frames are built once; each iteration patches only their
//! sequence, acknowledgment or TSecr field, with an incremental checksum
//! update (RFC 1624), a few nanoseconds for both stacks alike. In
//! `send_64k` the 64 KiB source sits 2 KiB off the page offset of the send
//! buffer's write position for every stack: glibc copies 64 KiB with
//! `rep movsb`, which on this AMD EPYC runs about three times slower when
//! source and destination share a page offset (4K aliasing), so without
//! this the result depended on where malloc happened to put the buffers.
//!
//! Before timing, every variant is checked: the ACK acknowledges exactly
//! what arrived, the handshake reaches ESTABLISHED, and 64 KiB leaves as 46
//! segments whose payloads concatenate to the input. The timed loops keep
//! asserting the frame counts and sequence numbers, so a dropped segment
//! cannot go unnoticed.
//!
//! Run with `cargo bench -p bypass-bench --bench tcp`.

use std::{
    collections::VecDeque,
    hint::black_box,
    net::SocketAddrV4,
    time::{Duration, Instant as WallClock},
};

use bypass_stack::{
    counters::Counters,
    driver::{capture::Capture, TxSink},
    iface::Interface,
    ipv4,
    tcp::{
        config::TcpConfig,
        connection::{Connection, State},
        isn::IsnGenerator,
        shard::{ConnectionHandle, Outgoing, Shard, ShardConfig},
        syncookie::SynCookies,
    },
    testkit::{self, Host},
    time::Instant,
    wire::{
        ethernet, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet,
        Ipv4Repr, SeqNumber, TcpControl, TcpPacket, TcpRepr, TcpTimestamp,
    },
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smoltcp::{
    iface::{
        Config as SmolConfig, Interface as SmolInterface, PollIngressSingleResult, PollResult,
        SocketHandle, SocketSet,
    },
    phy::{self, DeviceCapabilities, Medium},
    socket::tcp as smol_tcp,
    time::Instant as SmolInstant,
    wire::{EthernetAddress as SmolMac, HardwareAddress, IpAddress, IpCidr},
};

/// The stack's side.
const STACK: Host = Host {
    mac: EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]),
    ip: std::net::Ipv4Addr::new(10, 99, 0, 1),
};

/// The peer's side.
const PEER: Host = Host {
    mac: EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]),
    ip: std::net::Ipv4Addr::new(10, 99, 0, 2),
};

const SERVER_PORT: u16 = 80;
const PEER_PORT: u16 = 40_000;
const PEER_ISS: SeqNumber = SeqNumber(0x1000_0000);
const PEER_TSVAL: u32 = 0x7000_0000;
/// The MSS the peer announces to us (Ethernet MTU less 40).
const MSS: u16 = 1460;
/// What the peer announces to smoltcp 0.12, which does not subtract the
/// timestamp option itself (see the module docs).
const SMOLTCP_PEER_MSS: u16 = 1448;
/// Payload of a full-sized segment beside the 12-byte timestamp option.
const SEG_PAYLOAD: usize = 1448;
/// Per-connection buffers for both stacks (our `TcpConfig` default).
const BUFFER: usize = 256 * 1024;
const SEND_LEN: usize = 64 * 1024;
const SEND_SEGMENTS: usize = SEND_LEN.div_ceil(SEG_PAYLOAD);
/// Where TCP starts in a frame (Ethernet, IPv4 without options).
const TCP_AT: usize = ethernet::HEADER_LEN + bypass_stack::wire::ipv4::HEADER_LEN;
/// Virtual time per handshake.
const HANDSHAKE_STEP: Duration = Duration::from_micros(10);
/// Where the clocks start.
const START: Instant = Instant::from_millis(1_000);

const ACK: u8 = 0x10;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;

/// Deterministic filler bytes (xorshift64), so checksums see real data.
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

// ---------------------------------------------------------------------------
// The peer: segments and frames it sends, and reading what it receives
// ---------------------------------------------------------------------------

/// A Linux-like SYN: MSS, SACK-permitted, timestamps, window scale 7.
fn peer_syn(mss: u16) -> TcpRepr<'static> {
    TcpRepr {
        src_port: PEER_PORT,
        dst_port: SERVER_PORT,
        control: TcpControl::Syn,
        seq_number: PEER_ISS,
        ack_number: None,
        window_len: 64_240,
        window_scale: Some(7),
        max_seg_size: Some(mss),
        sack_permitted: true,
        sack_ranges: [None; 3],
        timestamp: Some(TcpTimestamp {
            tsval: PEER_TSVAL,
            tsecr: 0,
        }),
        urgent_pointer: None,
        payload: &[],
    }
}

/// A segment after the handshake; the window (65535 << 7) is 8 MiB.
fn peer_segment(ack: SeqNumber, tsecr: u32, payload: &[u8]) -> TcpRepr<'_> {
    TcpRepr {
        src_port: PEER_PORT,
        dst_port: SERVER_PORT,
        control: TcpControl::None,
        seq_number: PEER_ISS + 1,
        ack_number: Some(ack),
        window_len: u16::MAX,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: Some(TcpTimestamp {
            tsval: PEER_TSVAL,
            tsecr,
        }),
        urgent_pointer: None,
        payload,
    }
}

/// The TCP segment alone, checksummed (for the shard).
fn segment(repr: &TcpRepr) -> Vec<u8> {
    let mut bytes = vec![0; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut bytes[..]),
        PEER.ip,
        STACK.ip,
    );
    bytes
}

/// The segment in an Ethernet frame from the peer to the stack.
fn frame(repr: &TcpRepr) -> Vec<u8> {
    let ip = ipv4::repr(PEER.ip, STACK.ip, IpProtocol::Tcp, repr.buffer_len());
    let mut bytes = vec![0; ethernet::HEADER_LEN + ip.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut bytes[..]);
    EthernetRepr {
        src_addr: PEER.mac,
        dst_addr: STACK.mac,
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut eth);
    let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet);
    repr.emit(
        &mut TcpPacket::new_unchecked(packet.payload_mut()),
        PEER.ip,
        STACK.ip,
    );
    bytes
}

/// A frame the stack sent to the peer, fully validated (both checksums).
fn parse_frame(bytes: &[u8]) -> TcpRepr<'_> {
    let eth = EthernetFrame::new_checked(bytes).expect("Ethernet frame");
    assert_eq!(
        (eth.src_addr(), eth.dst_addr(), eth.ethertype()),
        (STACK.mac, PEER.mac, EtherType::Ipv4)
    );
    let packet = Ipv4Packet::new_checked(eth.payload()).expect("IPv4 packet");
    let ip = Ipv4Repr::parse(&packet).expect("valid IPv4 header");
    assert_eq!(
        (ip.src_addr, ip.dst_addr, ip.next_header),
        (STACK.ip, PEER.ip, IpProtocol::Tcp)
    );
    let tcp = TcpPacket::new_checked(packet.payload()).expect("TCP segment");
    TcpRepr::parse(&tcp, STACK.ip, PEER.ip).expect("valid TCP segment")
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Sets the big-endian word at `at` of the TCP segment `tcp` and updates its
/// checksum incrementally (RFC 1624 eqn. 3), so the peer's side of a timed
/// loop costs a few nanoseconds instead of a checksum over the segment.
fn set_u32(tcp: &mut [u8], at: usize, value: u32) {
    let old = read_u32(tcp, at);
    tcp[at..at + 4].copy_from_slice(&value.to_be_bytes());
    let mut sum = u32::from(!u16::from_be_bytes([tcp[16], tcp[17]]));
    for (o, n) in [(old >> 16, value >> 16), (old & 0xffff, value & 0xffff)] {
        sum += u32::from(!(o as u16)) + n;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    tcp[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Offset of the TSval in the TCP segment `tcp` (its timestamp option).
fn tsval_at(tcp: &[u8]) -> usize {
    let header_len = usize::from(tcp[12] >> 4) * 4;
    let mut i = 20;
    while i < header_len {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            8 => return i + 2,
            _ => i += usize::from(tcp[i + 1]).max(2),
        }
    }
    panic!("no timestamp option");
}

/// (sequence number, payload length) of a TCP frame, unchecked.
fn seq_and_len(frame: &[u8]) -> (u32, usize) {
    let ip = &frame[ethernet::HEADER_LEN..];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let ip_header = usize::from(ip[0] & 0x0f) * 4;
    let tcp = &ip[ip_header..];
    let tcp_header = usize::from(tcp[12] >> 4) * 4;
    (read_u32(tcp, 4), total - ip_header - tcp_header)
}

/// TCP flags of a frame.
fn flags(frame: &[u8]) -> u8 {
    frame[TCP_AT + 13]
}

/// Serializes one of the shard's outgoing segments into `out`, checksum
/// included, as the interface would after its Ethernet and IPv4 headers.
fn emit_outgoing(seg: &Outgoing, out: &mut [u8]) {
    let len = seg.repr.buffer_len();
    seg.repr.emit(
        &mut TcpPacket::new_unchecked(&mut out[..len]),
        STACK.ip,
        seg.dst,
    );
}

// ---------------------------------------------------------------------------
// Our stack: one connection, a shard, a whole interface
// ---------------------------------------------------------------------------

fn shard() -> Shard {
    Shard::new(
        TcpConfig::default(),
        ShardConfig::default(),
        STACK.ip,
        IsnGenerator::new([0x1234, 0x5678]),
        SynCookies::new([[1, 2], [3, 4]]),
    )
}

fn engine() -> Interface {
    let mut iface =
        Interface::new(testkit::host_config(STACK.ip, STACK.mac.0[5])).with_tcp(shard());
    iface
        .tcp_mut()
        .expect("has TCP")
        .listen(SERVER_PORT)
        .expect("port free");
    iface
}

/// A connection taken through the handshake by hand: (the connection, its
/// next sequence number, its TSval).
fn established_connection(now: Instant, cfg: &TcpConfig) -> (Connection, SeqNumber, u32) {
    let local = SocketAddrV4::new(STACK.ip, SERVER_PORT);
    let remote = SocketAddrV4::new(PEER.ip, PEER_PORT);
    let syn = peer_syn(MSS);
    let mut conn = Connection::accept(cfg, local, remote, &syn, SeqNumber(0xabcd_0000), now);
    let mut synack = None;
    conn.dispatch(now, |r| {
        synack = Some((r.control, r.seq_number, r.ack_number, r.timestamp));
        Ok(())
    })
    .expect("no transmit error");
    let (control, iss, ack, ts) = synack.expect("a SYN-ACK");
    assert_eq!((control, ack), (TcpControl::Syn, Some(PEER_ISS + 1)));
    let tsval = ts.expect("timestamps negotiated").tsval;
    assert!(conn
        .process(now, &peer_segment(iss + 1, tsval, &[]))
        .is_none());
    assert_eq!(conn.state(), State::Established);
    (conn, iss + 1, tsval)
}

// ---------------------------------------------------------------------------
// smoltcp over an in-memory device
// ---------------------------------------------------------------------------

/// Prepared frames delivered in a given order, and a `Capture` for output
/// (the same sink our interface writes into).
struct SmolDevice {
    frames: Vec<Vec<u8>>,
    queue: VecDeque<usize>,
    tx: Capture,
}

struct SmolRx<'a>(&'a [u8]);

struct SmolTx<'a>(&'a mut Capture);

impl phy::RxToken for SmolRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

impl phy::TxToken for SmolTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut result = None;
        self.0
            .send(len, |buf| result = Some(f(buf)))
            .expect("the capture has no limit");
        result.expect("filled")
    }
}

impl phy::Device for SmolDevice {
    type RxToken<'a> = SmolRx<'a>;
    type TxToken<'a> = SmolTx<'a>;

    fn receive(&mut self, _now: SmolInstant) -> Option<(SmolRx<'_>, SmolTx<'_>)> {
        let i = self.queue.pop_front()?;
        Some((SmolRx(&self.frames[i]), SmolTx(&mut self.tx)))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<SmolTx<'_>> {
        Some(SmolTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

fn smol_tsval() -> u32 {
    0x0bad_cafe
}

fn smol_now(now: Instant) -> SmolInstant {
    SmolInstant::from_micros(now.total_micros() as i64)
}

/// smoltcp's interface with one TCP socket listening on the server port,
/// the peer's MAC already learned (smoltcp learns it from ARP only).
struct Smol {
    iface: SmolInterface,
    dev: SmolDevice,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
    now: SmolInstant,
    /// Where the socket's transmit ring starts (its write positions stay
    /// at multiples of 64 KiB here, so at this page offset).
    tx_buffer: usize,
}

impl Smol {
    fn new(now: Instant) -> Smol {
        let now = smol_now(now);
        let mut dev = SmolDevice {
            frames: Vec::new(),
            queue: VecDeque::with_capacity(16),
            tx: Capture::new(),
        };
        let mut config = SmolConfig::new(HardwareAddress::Ethernet(SmolMac(STACK.mac.0)));
        config.random_seed = 0x5eed;
        let mut iface = SmolInterface::new(config, &mut dev, now);
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::Ipv4(STACK.ip), 24))
                .expect("room for an address")
        });
        let tx = vec![0; BUFFER];
        let tx_buffer = tx.as_ptr() as usize;
        let mut socket = smol_tcp::Socket::new(
            smol_tcp::SocketBuffer::new(vec![0; BUFFER]),
            smol_tcp::SocketBuffer::new(tx),
        );
        socket.set_nagle_enabled(false);
        socket.set_tsval_generator(Some(smol_tsval));
        socket.set_congestion_control(smol_tcp::CongestionControl::Cubic);
        socket.listen(SERVER_PORT).expect("listen");
        let mut sockets = SocketSet::new(Vec::new());
        let handle = sockets.add(socket);
        let mut smol = Smol {
            iface,
            dev,
            sockets,
            handle,
            now,
            tx_buffer,
        };
        smol.pass(&[&testkit::arp_request(PEER, STACK.ip)]);
        assert_eq!(smol.dev.tx.frames().len(), 1, "ARP reply");
        smol.dev.tx.clear();
        smol
    }

    fn socket(&mut self) -> &mut smol_tcp::Socket<'static> {
        self.sockets.get_mut::<smol_tcp::Socket>(self.handle)
    }

    /// Keeps `bytes` as a frame the device can deliver; returns its index.
    fn keep(&mut self, bytes: Vec<u8>) -> usize {
        self.dev.frames.push(bytes);
        self.dev.frames.len() - 1
    }

    /// Setup only: delivers copies of `frames` and polls once.
    fn pass(&mut self, frames: &[&[u8]]) {
        for f in frames {
            let i = self.keep(f.to_vec());
            self.dev.queue.push_back(i);
        }
        self.iface.poll(self.now, &mut self.dev, &mut self.sockets);
    }
}

/// Either interface, for setup.
trait FrameStack {
    /// Frames in, then whatever the stack sends into its capture.
    fn pass(&mut self, frames: &[&[u8]]);
    fn capture(&mut self) -> &mut Capture;
}

impl FrameStack for Smol {
    fn pass(&mut self, frames: &[&[u8]]) {
        Smol::pass(self, frames);
    }
    fn capture(&mut self) -> &mut Capture {
        &mut self.dev.tx
    }
}

/// Our interface and its output.
struct Ours {
    iface: Interface,
    cap: Capture,
    now: Instant,
}

impl FrameStack for Ours {
    fn pass(&mut self, frames: &[&[u8]]) {
        for f in frames {
            self.iface.receive_frame(f, self.now, &mut self.cap);
        }
        self.iface.poll(self.now, &mut self.cap);
    }
    fn capture(&mut self) -> &mut Capture {
        &mut self.cap
    }
}

/// The peer's side of a handshake through frames: SYN in, SYN-ACK out
/// (checked), ACK in. Returns the stack's next sequence number and TSval.
fn handshake_frames(stack: &mut impl FrameStack, mss: u16) -> (SeqNumber, u32) {
    stack.capture().clear();
    stack.pass(&[&frame(&peer_syn(mss))]);
    let (iss, tsval) = {
        let out = stack.capture().frames();
        assert_eq!(out.len(), 1, "one SYN-ACK");
        let synack = parse_frame(&out[0]);
        assert_eq!(synack.control, TcpControl::Syn);
        assert_eq!(synack.ack_number, Some(PEER_ISS + 1));
        assert_eq!(synack.max_seg_size, Some(MSS));
        assert!(synack.sack_permitted && synack.window_scale.is_some());
        let ts = synack.timestamp.expect("timestamps negotiated");
        assert_eq!(ts.tsecr, PEER_TSVAL);
        (synack.seq_number, ts.tsval)
    };
    stack.capture().clear();
    stack.pass(&[&frame(&peer_segment(iss + 1, tsval, &[]))]);
    assert!(
        stack.capture().frames().is_empty(),
        "nothing answers the ACK"
    );
    (iss + 1, tsval)
}

/// Our interface with one ESTABLISHED connection, accepted.
fn ours_established(now: Instant) -> (Ours, ConnectionHandle, SeqNumber, u32) {
    let mut ours = Ours {
        iface: engine(),
        cap: Capture::new(),
        now,
    };
    let (next, tsval) = handshake_frames(&mut ours, MSS);
    let shard = ours.iface.tcp_mut().expect("has TCP");
    let h = shard.accept(SERVER_PORT).expect("established");
    assert_eq!(
        shard.get(h).map(Connection::state),
        Some(State::Established)
    );
    shard.take_events(|_, _, _| {});
    (ours, h, next, tsval)
}

/// smoltcp with its socket ESTABLISHED.
fn smol_established(now: Instant) -> (Smol, SeqNumber, u32) {
    let mut smol = Smol::new(now);
    let (next, tsval) = handshake_frames(&mut smol, SMOLTCP_PEER_MSS);
    assert_eq!(smol.socket().state(), smol_tcp::State::Established);
    assert_eq!(tsval, smol_tsval());
    (smol, next, tsval)
}

// ---------------------------------------------------------------------------
// segment_in_ack_out
// ---------------------------------------------------------------------------

/// Two segments in, consumed, one ACK out into `out`: (segments sent, last
/// ACK number).
fn conn_two_segments(
    conn: &mut Connection,
    seg: &mut TcpRepr,
    now: Instant,
    out: &mut [u8],
) -> (u32, Option<SeqNumber>) {
    for _ in 0..2 {
        let reply = conn.process(now, seg);
        debug_assert!(reply.is_none());
        seg.seq_number += seg.payload.len();
    }
    let readable = {
        let (a, b) = conn.readable();
        a.len() + b.len()
    };
    conn.consume(readable);
    let (mut sent, mut ack) = (0, None);
    conn.dispatch(now, |repr| {
        let len = repr.buffer_len();
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut out[..len]),
            STACK.ip,
            PEER.ip,
        );
        sent += 1;
        ack = repr.ack_number;
        Ok(())
    })
    .expect("no transmit error");
    (sent, ack)
}

/// Two consecutive data frames from the peer, the first at `PEER_ISS + 1`
/// (moved on with [`advance`]).
fn data_frames(ack: SeqNumber, tsecr: u32, payload: &[u8]) -> [Vec<u8>; 2] {
    let mut first = peer_segment(ack, tsecr, payload);
    let a = frame(&first);
    first.seq_number += payload.len();
    [a, frame(&first)]
}

/// Moves both data frames on by two segments.
fn advance(frames: &mut [Vec<u8>], seq: SeqNumber) {
    set_u32(&mut frames[0][TCP_AT..], 4, seq.0);
    set_u32(&mut frames[1][TCP_AT..], 4, (seq + SEG_PAYLOAD).0);
}

fn bench_segment_in(c: &mut Criterion) {
    let payload = filler(SEG_PAYLOAD);
    let now = START;

    // Ours, one connection: check, then time.
    let cfg = TcpConfig::default();
    let (mut conn, next, tsval) = established_connection(now, &cfg);
    let mut seg = peer_segment(next, tsval, &payload);
    let mut out = vec![0u8; 2048];
    for _ in 0..3 {
        let r = conn_two_segments(&mut conn, &mut seg, now, &mut out);
        assert_eq!(r, (1, Some(seg.seq_number)), "one ACK for both");
        let ack = TcpRepr::parse(
            &TcpPacket::new_checked(&out[..32]).expect("ACK"),
            STACK.ip,
            PEER.ip,
        )
        .expect("valid ACK");
        assert_eq!(ack.ack_number, Some(seg.seq_number));
        assert!(ack.payload.is_empty() && ack.timestamp.is_some());
    }

    // Ours, the whole interface.
    let (mut ours, h, next, tsval) = ours_established(now);
    let mut ours_frames = data_frames(next, tsval, &payload);
    let mut ours_seq = PEER_ISS + 1;
    let ours_step = |ours: &mut Ours, frames: &mut [Vec<u8>], seq: &mut SeqNumber| {
        advance(frames, *seq);
        ours.cap.clear();
        for f in frames.iter() {
            ours.iface.receive_frame(f, ours.now, &mut ours.cap);
        }
        let conn = ours.iface.tcp_mut().and_then(|s| s.get_mut(h));
        let conn = conn.expect("connection");
        let readable = {
            let (a, b) = conn.readable();
            a.len() + b.len()
        };
        conn.consume(readable);
        ours.iface.poll(ours.now, &mut ours.cap);
        *seq += 2 * SEG_PAYLOAD;
        let out = ours.cap.frames();
        assert_eq!(out.len(), 1, "one ACK for both");
        assert_eq!(read_u32(&out[0], TCP_AT + 8), seq.0);
    };
    for _ in 0..3 {
        ours_step(&mut ours, &mut ours_frames, &mut ours_seq);
        let ack = parse_frame(&ours.cap.frames()[0]);
        assert_eq!(ack.ack_number, Some(ours_seq));
        assert!(ack.payload.is_empty());
    }

    // smoltcp.
    let (mut smol, next, tsval) = smol_established(now);
    let frames = data_frames(next, tsval, &payload);
    let first = smol.keep(frames[0].clone());
    assert_eq!(smol.keep(frames[1].clone()), first + 1);
    let mut smol_seq = PEER_ISS + 1;
    let smol_step = |smol: &mut Smol, seq: &mut SeqNumber| {
        advance(&mut smol.dev.frames[first..first + 2], *seq);
        smol.dev.tx.clear();
        smol.dev.queue.extend([first, first + 1]);
        for _ in 0..2 {
            let r = smol
                .iface
                .poll_ingress_single(smol.now, &mut smol.dev, &mut smol.sockets);
            assert!(r != PollIngressSingleResult::None);
        }
        let socket = smol.socket();
        while let Ok(n) = socket.recv(|b| (b.len(), b.len())) {
            if n == 0 {
                break;
            }
        }
        smol.iface
            .poll_egress(smol.now, &mut smol.dev, &mut smol.sockets);
        *seq += 2 * SEG_PAYLOAD;
        let out = smol.dev.tx.frames();
        assert_eq!(out.len(), 1, "one ACK for both");
        assert_eq!(read_u32(&out[0], TCP_AT + 8), seq.0);
    };
    for _ in 0..3 {
        smol_step(&mut smol, &mut smol_seq);
        let ack = parse_frame(&smol.dev.tx.frames()[0]);
        assert_eq!(ack.ack_number, Some(smol_seq));
        assert!(ack.payload.is_empty());
        assert_eq!(smol.socket().recv_queue(), 0);
    }

    let mut group = c.benchmark_group("segment_in_ack_out");
    group.throughput(Throughput::Elements(2));
    group.bench_function("bypass_connection", |b| {
        b.iter(|| {
            let r = conn_two_segments(&mut conn, &mut seg, now, &mut out);
            assert!(r == (1, Some(seg.seq_number)));
            black_box(&out);
        })
    });
    group.bench_function("bypass_interface", |b| {
        b.iter(|| ours_step(&mut ours, &mut ours_frames, &mut ours_seq))
    });
    group.bench_function("smoltcp_interface", |b| {
        b.iter(|| smol_step(&mut smol, &mut smol_seq))
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// handshake
// ---------------------------------------------------------------------------

/// Our shard: SYN and final ACK as TCP segments, output serialized.
struct ShardHandshake {
    shard: Shard,
    counters: Counters,
    syn: Vec<u8>,
    ack: Vec<u8>,
    tsecr_at: usize,
    out: Vec<u8>,
    now: Instant,
}

impl ShardHandshake {
    fn new() -> Self {
        let mut shard = shard();
        shard.listen(SERVER_PORT).expect("port free");
        let ack = segment(&peer_segment(SeqNumber(0), 0, &[]));
        ShardHandshake {
            shard,
            counters: Counters::default(),
            syn: segment(&peer_syn(MSS)),
            tsecr_at: tsval_at(&ack) + 4,
            ack,
            out: vec![0; 128],
            now: START,
        }
    }

    /// One handshake and abort; returns the flags of what went out.
    fn run(&mut self) -> [u8; 2] {
        self.now += HANDSHAKE_STEP;
        let now = self.now;
        let ShardHandshake {
            shard,
            counters,
            syn,
            ack,
            tsecr_at,
            out,
            ..
        } = self;
        shard.receive(now, PEER.mac, PEER.ip, syn, counters, |_| {
            panic!("nothing goes out before dispatch")
        });
        let mut synack = None;
        shard.dispatch(now, |seg| {
            emit_outgoing(&seg, out);
            synack = Some((seg.repr.seq_number, seg.repr.timestamp));
            Ok(())
        });
        let (iss, ts) = synack.expect("a SYN-ACK");
        set_u32(ack, 8, (iss + 1).0);
        set_u32(ack, *tsecr_at, ts.expect("timestamps").tsval);
        let synack_flags = out[13];
        shard.receive(now, PEER.mac, PEER.ip, ack, counters, |_| {
            panic!("the final ACK is acceptable")
        });
        shard.dispatch(now, |_| panic!("nothing answers the final ACK"));
        let h = shard.accept(SERVER_PORT).expect("established");
        shard.get_mut(h).expect("connection").abort();
        let mut rst = 0;
        shard.dispatch(now, |seg| {
            emit_outgoing(&seg, out);
            rst = out[13];
            Ok(())
        });
        shard.release(h);
        shard.take_events(|_, _, _| {});
        assert_eq!(shard.connection_count(), 0);
        [synack_flags, rst]
    }
}

/// Our interface: the same as frames.
struct IfaceHandshake {
    ours: Ours,
    syn: Vec<u8>,
    ack: Vec<u8>,
    tsecr_at: usize,
}

impl IfaceHandshake {
    fn new() -> Self {
        let ack = frame(&peer_segment(SeqNumber(0), 0, &[]));
        IfaceHandshake {
            ours: Ours {
                iface: engine(),
                cap: Capture::new(),
                now: START,
            },
            syn: frame(&peer_syn(MSS)),
            tsecr_at: tsval_at(&ack[TCP_AT..]) + 4,
            ack,
        }
    }

    fn run(&mut self) -> [u8; 2] {
        self.ours.now += HANDSHAKE_STEP;
        let Ours { iface, cap, now } = &mut self.ours;
        let now = *now;
        cap.clear();
        iface.receive_frame(&self.syn, now, cap);
        iface.poll(now, cap);
        let synack = &cap.frames()[0];
        let iss = read_u32(synack, TCP_AT + 4);
        let tsval = read_u32(synack, TCP_AT + tsval_at(&synack[TCP_AT..]));
        set_u32(&mut self.ack[TCP_AT..], 8, iss.wrapping_add(1));
        set_u32(&mut self.ack[TCP_AT..], self.tsecr_at, tsval);
        iface.receive_frame(&self.ack, now, cap);
        iface.poll(now, cap);
        let shard = iface.tcp_mut().expect("has TCP");
        let h = shard.accept(SERVER_PORT).expect("established");
        shard.get_mut(h).expect("connection").abort();
        iface.poll(now, cap);
        let shard = iface.tcp_mut().expect("has TCP");
        shard.release(h);
        shard.take_events(|_, _, _| {});
        assert_eq!(shard.connection_count(), 0);
        let out = cap.frames();
        assert_eq!(out.len(), 2, "SYN-ACK and RST");
        [flags(&out[0]), flags(&out[1])]
    }
}

/// smoltcp: one listening socket, aborted and listening again each time.
struct SmolHandshake {
    smol: Smol,
    syn: usize,
    ack: usize,
    arp: usize,
    tsecr_at: usize,
    now: Instant,
    count: u64,
}

impl SmolHandshake {
    fn new() -> Self {
        let mut smol = Smol::new(START);
        let ack_frame = frame(&peer_segment(SeqNumber(0), 0, &[]));
        let tsecr_at = tsval_at(&ack_frame[TCP_AT..]) + 4;
        let syn = smol.keep(frame(&peer_syn(SMOLTCP_PEER_MSS)));
        let ack = smol.keep(ack_frame);
        let arp = smol.keep(testkit::arp_request(PEER, STACK.ip));
        SmolHandshake {
            smol,
            syn,
            ack,
            arp,
            tsecr_at,
            now: START,
            count: 0,
        }
    }

    fn run(&mut self) -> [u8; 2] {
        self.now += HANDSHAKE_STEP;
        self.count += 1;
        let smol = &mut self.smol;
        smol.now = smol_now(self.now);
        if self.count % 1_000_000 == 0 {
            // smoltcp forgets a neighbour after 60 s (6M iterations here)
            // and learns one only from ARP: refresh it now and then.
            smol.dev.queue.push_back(self.arp);
            smol.iface
                .poll_ingress_single(smol.now, &mut smol.dev, &mut smol.sockets);
        }
        smol.dev.tx.clear();
        smol.dev.queue.push_back(self.syn);
        smol.iface.poll(smol.now, &mut smol.dev, &mut smol.sockets);
        let synack = &smol.dev.tx.frames()[0];
        let iss = read_u32(synack, TCP_AT + 4);
        let tsval = read_u32(synack, TCP_AT + tsval_at(&synack[TCP_AT..]));
        let ack = &mut smol.dev.frames[self.ack][TCP_AT..];
        set_u32(ack, 8, iss.wrapping_add(1));
        set_u32(ack, self.tsecr_at, tsval);
        smol.dev.queue.push_back(self.ack);
        smol.iface.poll(smol.now, &mut smol.dev, &mut smol.sockets);
        let socket = smol.socket();
        assert_eq!(socket.state(), smol_tcp::State::Established);
        socket.abort();
        smol.iface.poll(smol.now, &mut smol.dev, &mut smol.sockets);
        smol.socket().listen(SERVER_PORT).expect("listen again");
        let out = smol.dev.tx.frames();
        assert_eq!(out.len(), 2, "SYN-ACK and RST");
        [flags(&out[0]), flags(&out[1])]
    }
}

fn bench_handshake(c: &mut Criterion) {
    let mut shard = ShardHandshake::new();
    let mut iface = IfaceHandshake::new();
    let mut smol = SmolHandshake::new();
    // Check: the SYN-ACK and RST are what they should be, several times over
    // (the slot, the 4-tuple and the socket are reused).
    for _ in 0..3 {
        assert_eq!(shard.run(), [SYN | ACK, RST]);
        let rst = TcpRepr::parse(
            &TcpPacket::new_checked(&shard.out[..20]).expect("RST"),
            STACK.ip,
            PEER.ip,
        )
        .expect("valid RST");
        assert_eq!(rst.control, TcpControl::Rst);
        for [a, b] in [iface.run(), smol.run()] {
            assert_eq!(a, SYN | ACK);
            assert!(b & RST != 0);
        }
        let out = iface.ours.cap.frames();
        assert_eq!(parse_frame(&out[0]).control, TcpControl::Syn);
        assert_eq!(parse_frame(&out[1]).control, TcpControl::Rst);
        let out = smol.smol.dev.tx.frames();
        assert_eq!(parse_frame(&out[0]).control, TcpControl::Syn);
        assert_eq!(parse_frame(&out[1]).control, TcpControl::Rst);
    }

    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bypass_shard", |b| b.iter(|| black_box(shard.run())));
    group.bench_function("bypass_interface", |b| b.iter(|| black_box(iface.run())));
    group.bench_function("smoltcp_interface", |b| b.iter(|| black_box(smol.run())));
    group.finish();
}

// ---------------------------------------------------------------------------
// send_64k
// ---------------------------------------------------------------------------

/// A sender under test: the timed part is `send`; the peer's ACKs are not.
trait Sender {
    /// Queues all of `data` and emits what the windows allow: the number of
    /// segments.
    fn send(&mut self, data: &[u8]) -> usize;
    /// Emits what the windows allow now.
    fn flush(&mut self) -> usize;
    /// (sequence number, payload) of what the last `send` or `flush`
    /// emitted; payloads only while recording.
    fn emitted(&self) -> Vec<(u32, Vec<u8>)>;
    /// Keep payloads for [`Sender::emitted`] (the interfaces always do).
    fn record(&mut self, _on: bool) {}
    /// The peer acknowledges everything before `ack`.
    fn ack(&mut self, ack: u32);
    /// The end of the last segment emitted.
    fn last_end(&self) -> u32;
    /// The address the next `send` copies to (its send buffer's write
    /// position), found with one more 64 KiB round of `data`.
    fn ring(&mut self, data: &[u8]) -> usize;
}

struct ConnSender {
    conn: Connection,
    now: Instant,
    out: Vec<u8>,
    ack: TcpRepr<'static>,
    log: Vec<(u32, usize)>,
    keep: bool,
    kept: Vec<u8>,
    tsval: u32,
    /// Where the first segment of the last flush sat in the send buffer.
    ring: usize,
}

impl ConnSender {
    fn new(now: Instant) -> Self {
        let (conn, next, _) = established_connection(now, &TcpConfig::default());
        ConnSender {
            conn,
            now,
            out: vec![0; 2048],
            ack: peer_segment(next, 0, &[]),
            log: Vec::with_capacity(64),
            keep: false,
            kept: Vec::new(),
            tsval: 0,
            ring: 0,
        }
    }
}

impl Sender for ConnSender {
    fn send(&mut self, data: &[u8]) -> usize {
        assert_eq!(self.conn.send(data), Ok(data.len()));
        self.flush()
    }

    fn flush(&mut self) -> usize {
        let ConnSender {
            conn,
            now,
            out,
            log,
            keep,
            kept,
            tsval,
            ring,
            ..
        } = self;
        log.clear();
        kept.clear();
        conn.dispatch(*now, |repr| {
            let len = repr.buffer_len();
            repr.emit(
                &mut TcpPacket::new_unchecked(&mut out[..len]),
                STACK.ip,
                PEER.ip,
            );
            log.push((repr.seq_number.0, repr.payload.len()));
            if log.len() == 1 {
                *ring = repr.payload.as_ptr() as usize;
            }
            if let Some(ts) = repr.timestamp {
                *tsval = ts.tsval;
            }
            if *keep {
                kept.extend_from_slice(repr.payload);
            }
            Ok(())
        })
        .expect("no transmit error");
        black_box(&self.out);
        self.log.len()
    }

    fn emitted(&self) -> Vec<(u32, Vec<u8>)> {
        let mut at = 0;
        self.log
            .iter()
            .map(|&(seq, len)| {
                let payload = if self.keep {
                    at += len;
                    self.kept[at - len..at].to_vec()
                } else {
                    vec![0; len]
                };
                (seq, payload)
            })
            .collect()
    }

    fn record(&mut self, on: bool) {
        self.keep = on;
    }

    fn ack(&mut self, ack: u32) {
        self.ack.ack_number = Some(SeqNumber(ack));
        self.ack.timestamp = Some(TcpTimestamp {
            tsval: PEER_TSVAL,
            tsecr: self.tsval,
        });
        assert!(self.conn.process(self.now, &self.ack).is_none());
    }

    fn last_end(&self) -> u32 {
        self.log
            .last()
            .map_or(0, |&(seq, len)| seq.wrapping_add(len as u32))
    }

    fn ring(&mut self, data: &[u8]) -> usize {
        assert_eq!(self.send(data), SEND_SEGMENTS);
        self.ack(self.last_end());
        self.ring
    }
}

/// Frames out of a capture, for both interfaces.
fn emitted_frames(cap: &Capture) -> Vec<(u32, Vec<u8>)> {
    cap.frames()
        .iter()
        .map(|f| {
            let seg = parse_frame(f);
            (seg.seq_number.0, seg.payload.to_vec())
        })
        .collect()
}

fn last_frame_end(cap: &Capture) -> u32 {
    cap.frames().last().map_or(0, |f| {
        let (seq, len) = seq_and_len(f);
        seq.wrapping_add(len as u32)
    })
}

/// The peer's ACK frame, patched for each use.
struct AckFrame {
    bytes: Vec<u8>,
    tsecr_at: usize,
}

impl AckFrame {
    fn new(ack: SeqNumber, tsecr: u32) -> Self {
        let bytes = frame(&peer_segment(ack, tsecr, &[]));
        AckFrame {
            tsecr_at: tsval_at(&bytes[TCP_AT..]) + 4,
            bytes,
        }
    }

    fn set(tcp: &mut [u8], tsecr_at: usize, ack: u32, tsecr: u32) {
        set_u32(tcp, 8, ack);
        set_u32(tcp, tsecr_at, tsecr);
    }
}

struct IfaceSender {
    ours: Ours,
    h: ConnectionHandle,
    ack: AckFrame,
    last_end: u32,
    tsval: u32,
}

impl IfaceSender {
    fn new(now: Instant) -> Self {
        let (ours, h, next, tsval) = ours_established(now);
        IfaceSender {
            ours,
            h,
            ack: AckFrame::new(next, tsval),
            last_end: 0,
            tsval,
        }
    }

    fn note(&mut self) -> usize {
        let cap = &self.ours.cap;
        if let Some(f) = cap.frames().last() {
            self.last_end = last_frame_end(cap);
            self.tsval = read_u32(f, TCP_AT + tsval_at(&f[TCP_AT..]));
        }
        cap.frames().len()
    }
}

impl Sender for IfaceSender {
    fn send(&mut self, data: &[u8]) -> usize {
        let Ours { iface, cap, now } = &mut self.ours;
        cap.clear();
        let conn = iface.tcp_mut().and_then(|s| s.get_mut(self.h));
        assert_eq!(conn.expect("connection").send(data), Ok(data.len()));
        iface.poll(*now, cap);
        self.note()
    }

    fn flush(&mut self) -> usize {
        let Ours { iface, cap, now } = &mut self.ours;
        cap.clear();
        iface.poll(*now, cap);
        self.note()
    }

    fn emitted(&self) -> Vec<(u32, Vec<u8>)> {
        emitted_frames(&self.ours.cap)
    }

    fn ack(&mut self, ack: u32) {
        let tcp = &mut self.ack.bytes[TCP_AT..];
        AckFrame::set(tcp, self.ack.tsecr_at, ack, self.tsval);
        let Ours { iface, cap, now } = &mut self.ours;
        let before = cap.frames().len();
        iface.receive_frame(&self.ack.bytes, *now, cap);
        assert_eq!(cap.frames().len(), before, "no immediate answer");
    }

    fn last_end(&self) -> u32 {
        self.last_end
    }

    fn ring(&mut self, data: &[u8]) -> usize {
        // The interface hides the connection's output: dispatch this one
        // round on the connection itself to see where its payload sits.
        let Ours { iface, now, .. } = &mut self.ours;
        let conn = iface.tcp_mut().and_then(|s| s.get_mut(self.h));
        let conn = conn.expect("connection");
        assert_eq!(conn.send(data), Ok(data.len()));
        let (mut ring, mut end, mut count) = (0, 0, 0);
        conn.dispatch(*now, |repr| {
            if count == 0 {
                ring = repr.payload.as_ptr() as usize;
            }
            count += 1;
            end = (repr.seq_number + repr.payload.len()).0;
            Ok(())
        })
        .expect("no transmit error");
        assert_eq!(count, SEND_SEGMENTS);
        self.ack(end);
        self.flush();
        ring
    }
}

struct SmolSender {
    smol: Smol,
    ack: usize,
    tsecr_at: usize,
    last_end: u32,
}

impl SmolSender {
    fn new(now: Instant) -> Self {
        let (mut smol, next, tsval) = smol_established(now);
        let ack = AckFrame::new(next, tsval);
        SmolSender {
            tsecr_at: ack.tsecr_at,
            ack: smol.keep(ack.bytes),
            smol,
            last_end: 0,
        }
    }

    fn drain(&mut self) -> usize {
        let smol = &mut self.smol;
        while smol.iface.poll(smol.now, &mut smol.dev, &mut smol.sockets) != PollResult::None {}
        self.last_end = last_frame_end(&smol.dev.tx);
        smol.dev.tx.frames().len()
    }
}

impl Sender for SmolSender {
    fn send(&mut self, data: &[u8]) -> usize {
        self.smol.dev.tx.clear();
        assert_eq!(self.smol.socket().send_slice(data), Ok(data.len()));
        self.drain()
    }

    fn flush(&mut self) -> usize {
        self.smol.dev.tx.clear();
        self.drain()
    }

    fn emitted(&self) -> Vec<(u32, Vec<u8>)> {
        emitted_frames(&self.smol.dev.tx)
    }

    fn ack(&mut self, ack: u32) {
        let smol = &mut self.smol;
        let tcp = &mut smol.dev.frames[self.ack][TCP_AT..];
        AckFrame::set(tcp, self.tsecr_at, ack, smol_tsval());
        smol.dev.queue.push_back(self.ack);
        let r = smol
            .iface
            .poll_ingress_single(smol.now, &mut smol.dev, &mut smol.sockets);
        assert!(r != PollIngressSingleResult::None);
    }

    fn last_end(&self) -> u32 {
        self.last_end
    }

    fn ring(&mut self, data: &[u8]) -> usize {
        assert_eq!(self.send(data), SEND_SEGMENTS);
        self.ack(self.last_end());
        self.smol.tx_buffer
    }
}

/// The 64 KiB to send, placed 2 KiB off the page offset of the send
/// buffer's write position (see the module docs): each stack gets the same,
/// harmless, relation between source and destination.
struct Source {
    buf: Vec<u8>,
    at: usize,
}

impl Source {
    fn new(data: &[u8], ring: usize) -> Source {
        let mut buf = vec![0; data.len() + 4096];
        let base = buf.as_ptr() as usize;
        let at = ring.wrapping_sub(base).wrapping_sub(2048) & 4095;
        buf[at..at + data.len()].copy_from_slice(data);
        Source { buf, at }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.at..self.at + SEND_LEN]
    }
}

fn segment_ends(s: &impl Sender, ends: &mut VecDeque<u32>) {
    let emitted = s.emitted();
    ends.extend(
        emitted
            .iter()
            .map(|(seq, p)| seq.wrapping_add(p.len() as u32)),
    );
}

/// Runs 64 KiB exchanges, the peer acknowledging each segment as it
/// arrives, until the congestion window lets all of it go at once.
fn open_windows(s: &mut impl Sender, data: &[u8]) {
    for _ in 0..32 {
        let first = s.send(data);
        let mut ends: VecDeque<u32> = VecDeque::new();
        segment_ends(s, &mut ends);
        while let Some(end) = ends.pop_front() {
            s.ack(end);
            s.flush();
            segment_ends(s, &mut ends);
        }
        if first == SEND_SEGMENTS {
            return;
        }
    }
    panic!("the congestion window never opened to 64 KiB");
}

/// 64 KiB leaves as 46 full-sized segments (the last shorter) whose
/// payloads, in sequence, are the input.
fn check_send(s: &mut impl Sender, data: &[u8]) {
    s.record(true);
    assert_eq!(s.send(data), SEND_SEGMENTS);
    let segs = s.emitted();
    assert_eq!(segs.len(), SEND_SEGMENTS);
    let mut seq = segs[0].0;
    let mut all = Vec::new();
    for (i, (s_seq, payload)) in segs.iter().enumerate() {
        assert_eq!(*s_seq, seq, "segment {i} in sequence");
        if i + 1 < segs.len() {
            assert_eq!(payload.len(), SEG_PAYLOAD, "segment {i} full-sized");
        }
        seq = seq.wrapping_add(payload.len() as u32);
        all.extend_from_slice(payload);
    }
    assert_eq!(all, data);
    assert_eq!(s.last_end(), seq);
    s.ack(seq);
    s.record(false);
}

/// Times `send` alone: the ACK that frees the buffer for the next round is
/// outside the measurement.
fn time_sends(s: &mut impl Sender, data: &[u8], iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = WallClock::now();
        let n = s.send(black_box(data));
        total += start.elapsed();
        assert_eq!(n, SEND_SEGMENTS);
        let end = s.last_end();
        s.ack(end);
    }
    total
}

fn bench_send(c: &mut Criterion) {
    let data = filler(SEND_LEN);
    let mut conn = ConnSender::new(START);
    let mut iface = IfaceSender::new(START);
    let mut smol = SmolSender::new(START);
    open_windows(&mut conn, &data);
    open_windows(&mut iface, &data);
    open_windows(&mut smol, &data);
    let conn_src = Source::new(&data, conn.ring(&data));
    let iface_src = Source::new(&data, iface.ring(&data));
    let smol_src = Source::new(&data, smol.ring(&data));
    for _ in 0..2 {
        check_send(&mut conn, conn_src.data());
        check_send(&mut iface, iface_src.data());
        check_send(&mut smol, smol_src.data());
    }
    assert_eq!(
        conn.ring(conn_src.data()) & 4095,
        (conn_src.data().as_ptr() as usize + 2048) & 4095
    );

    let mut group = c.benchmark_group("send_64k");
    group.throughput(Throughput::Bytes(SEND_LEN as u64));
    group.bench_function("bypass_connection", |b| {
        b.iter_custom(|iters| time_sends(&mut conn, conn_src.data(), iters))
    });
    group.bench_function("bypass_interface", |b| {
        b.iter_custom(|iters| time_sends(&mut iface, iface_src.data(), iters))
    });
    group.bench_function("smoltcp_interface", |b| {
        b.iter_custom(|iters| time_sends(&mut smol, smol_src.data(), iters))
    });
    group.finish();
}

criterion_group! {
    name = tcp;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = bench_segment_in, bench_handshake, bench_send
}
criterion_main!(tcp);
