//! The RFC 793 user interface from ordinary threads, over the threaded
//! in-memory link: the stack runs its own core threads, and the peer is a
//! second engine on its own core thread running an event-API application
//! (echo, an aborting service, and clients that connect to the stack).
//!
//! One stack per process, so the tests take turns.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::{Arc, Mutex, MutexGuard},
    thread,
    time::Duration,
};

use bypass_stack::{
    api::{
        events::{Conn, Core, EventApp, Handler},
        user::{HandleState, InitError, Stack, StackConfig, StackDevice, TcpConnection, UserError},
    },
    driver::{
        memlink::Faults,
        threadlink::{ThreadLink, ThreadPort},
    },
    iface::InterfaceConfig,
    runtime::{CoreSpec, PollMode, Runtime, TcpSetup},
    tcp::{
        config::TcpConfig,
        connection::{Error, State},
        shard::ShardConfig,
    },
};

const STACK_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const ECHO: u16 = 7;
/// The peer resets connections to this port once data arrives.
const RESETTER: u16 = 11;
const HTTP: u16 = 80;
/// A liveness guard for blocking calls, not a timing check: generous, since
/// a SYN lost a few times at 2% loss already waits 1 + 2 + 4 + 8 s.
const WAIT: Duration = Duration::from_secs(90);

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn iface(ip: Ipv4Addr, mac_last: u8) -> InterfaceConfig {
    bypass_stack::testkit::host_config(ip, mac_last)
}

fn tcp_setup() -> TcpSetup {
    let mut t = TcpSetup::new(
        TcpConfig {
            time_wait: Duration::from_millis(100),
            ..TcpConfig::default()
        },
        ShardConfig {
            max_connections: 512,
            ..ShardConfig::default()
        },
    );
    t.shutdown_grace = Duration::from_millis(500);
    t
}

fn pattern(len: usize, salt: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(salt);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// What the peer's clients got back from the stack, per connection.
type Results = Arc<Mutex<Vec<(usize, Vec<u8>, Option<Error>)>>>;

/// The peer: echo on 7, reset on 11, and clients to the stack's port 80.
struct Peer {
    clients: Vec<Vec<u8>>,
    results: Results,
}

enum PeerConn {
    Echo {
        peer_closed: bool,
    },
    Resetter,
    Client {
        id: usize,
        data: Vec<u8>,
        written: usize,
        got: Vec<u8>,
    },
}

fn echo(peer_closed: bool, conn: &mut Conn<'_>) {
    let mut bounce = [0u8; 4096];
    loop {
        let (a, _) = conn.readable();
        let n = a.len().min(bounce.len()).min(conn.send_capacity());
        if n == 0 {
            break;
        }
        bounce[..n].copy_from_slice(&a[..n]);
        match conn.send(&bounce[..n]) {
            Ok(k) if k > 0 => {
                conn.consume(k);
            }
            _ => break,
        }
    }
    if peer_closed && conn.readable().0.is_empty() {
        let _ = conn.shutdown_write();
    }
}

fn client_write(id: &usize, data: &[u8], written: &mut usize, conn: &mut Conn<'_>) {
    let _ = id;
    while *written < data.len() {
        match conn.send(&data[*written..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => *written += n,
        }
    }
    let _ = conn.shutdown_write();
}

impl Handler for Peer {
    type Conn = PeerConn;

    fn start(&mut self, core: &mut Core<'_, PeerConn>) {
        core.listen(ECHO).unwrap();
        core.listen(RESETTER).unwrap();
        for (id, data) in std::mem::take(&mut self.clients).into_iter().enumerate() {
            core.connect(
                SocketAddrV4::new(STACK_IP, HTTP),
                PeerConn::Client {
                    id,
                    data,
                    written: 0,
                    got: Vec::new(),
                },
            )
            .unwrap();
        }
    }

    fn accepted(&mut self, conn: &mut Conn<'_>) -> PeerConn {
        if conn.local().port() == RESETTER {
            PeerConn::Resetter
        } else {
            PeerConn::Echo { peer_closed: false }
        }
    }

    fn connected(&mut self, state: &mut PeerConn, conn: &mut Conn<'_>) {
        if let PeerConn::Client {
            id, data, written, ..
        } = state
        {
            client_write(id, data, written, conn);
        }
    }

    fn readable(&mut self, state: &mut PeerConn, conn: &mut Conn<'_>) {
        match state {
            PeerConn::Echo { peer_closed } => echo(*peer_closed, conn),
            PeerConn::Resetter => conn.abort(),
            PeerConn::Client { got, .. } => {
                let (a, b) = conn.readable();
                got.extend_from_slice(a);
                got.extend_from_slice(b);
                let n = a.len() + b.len();
                conn.consume(n);
            }
        }
    }

    fn writable(&mut self, state: &mut PeerConn, conn: &mut Conn<'_>) {
        match state {
            PeerConn::Echo { peer_closed } => echo(*peer_closed, conn),
            PeerConn::Client {
                id, data, written, ..
            } => client_write(id, data, written, conn),
            PeerConn::Resetter => {}
        }
    }

    fn peer_closed(&mut self, state: &mut PeerConn, conn: &mut Conn<'_>) {
        if let PeerConn::Echo { peer_closed } = state {
            *peer_closed = true;
            echo(true, conn);
        }
    }

    fn closed(&mut self, state: PeerConn, why: Option<Error>) {
        if let PeerConn::Client { id, got, .. } = state {
            self.results.lock().unwrap().push((id, got, why));
        }
    }
}

/// A running peer; stops when dropped.
struct PeerSide {
    runtime: Option<Runtime>,
}

impl Drop for PeerSide {
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.join();
        }
    }
}

fn start_peer(port: ThreadPort, clients: Vec<Vec<u8>>) -> (PeerSide, Results) {
    let results: Results = Arc::default();
    let port = Mutex::new(Some(port));
    let clients = Mutex::new(Some(clients));
    let r = results.clone();
    let (mut runtime, _) = Runtime::spawn(
        &[CoreSpec {
            queue: 0,
            cpu: None,
        }],
        &iface(PEER_IP, 2),
        Some(tcp_setup()),
        PollMode::default(),
        move |_| port.lock().unwrap().take().ok_or("taken".to_string()),
        move |_| {
            EventApp::new(Peer {
                clients: clients.lock().unwrap().take().unwrap_or_default(),
                results: r.clone(),
            })
        },
    )
    .unwrap();
    runtime.go();
    (
        PeerSide {
            runtime: Some(runtime),
        },
        results,
    )
}

/// `Stack::init` on in-memory ports, one core each.
fn init(ports: Vec<ThreadPort>) -> Result<Stack, InitError> {
    Stack::init(StackConfig {
        device: StackDevice::Memory {
            ports,
            iface: iface(STACK_IP, 1),
            poll: PollMode::default(),
        },
        tcp: tcp_setup(),
    })
}

/// The stack on one in-memory link, and the peer (on its own core thread)
/// on the other end.
fn start(faults: Faults, clients: Vec<Vec<u8>>) -> (Stack, PeerSide, Results) {
    let (stack, peer, results, _) = start_traced(faults, clients);
    (stack, peer, results)
}

/// [`start`], with the link recording every segment (for the failure
/// message of a test with faults).
fn start_traced(faults: Faults, clients: Vec<Vec<u8>>) -> (Stack, PeerSide, Results, ThreadLink) {
    let (link, stack_port, peer_port) = ThreadLink::new(faults, 7, 1514);
    link.record();
    let stack = init(vec![stack_port]).unwrap();
    let (peer, results) = start_peer(peer_port, clients);
    (stack, peer, results, link)
}

/// The link's last segments of a connection, to print when it fails.
fn trace_tail(link: &ThreadLink, port: u16) -> String {
    let lines = link.trace_for_port(port);
    let from = lines.len().saturating_sub(60);
    format!(
        "last {} of {} segment events on port {port}:\n{}",
        lines.len() - from,
        lines.len(),
        lines[from..].join("\n")
    )
}

/// Reads until the peer's FIN ("connection closing").
fn read_to_end(conn: &TcpConnection) -> Result<Vec<u8>, UserError> {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match conn.receive_blocking(&mut buf, WAIT) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(UserError::Closing) => return Ok(got),
            Err(e) => return Err(e),
        }
    }
}

/// `read_to_end` on a thread of its own, while the caller sends.
fn read_on_another_thread(
    conn: &Arc<TcpConnection>,
) -> thread::JoinHandle<Result<Vec<u8>, UserError>> {
    let conn = conn.clone();
    thread::spawn(move || read_to_end(&conn))
}

#[test]
fn init_twice_is_refused_and_allowed_again_after_shutdown() {
    let _t = turn();
    let (stack, _peer, _) = start(Faults::none(), Vec::new());
    let (_l, a, _b) = ThreadLink::new(Faults::none(), 1, 1514);
    let second = init(vec![a]);
    assert!(matches!(second, Err(InitError::AlreadyInitialised)));
    assert!(second
        .err()
        .unwrap()
        .to_string()
        .contains("already initialised"));
    let report = stack.shutdown().expect("first shutdown reports");
    assert!(report.errors.is_empty());
    assert!(stack.shutdown().is_none(), "a second shutdown is a no-op");
    assert_eq!(
        stack.open_active(SocketAddrV4::new(PEER_IP, ECHO)).err(),
        Some(UserError::StackDown)
    );
    let (again, _peer2, _) = start(Faults::none(), Vec::new());
    again.shutdown();
}

#[test]
fn many_threads_echo_through_active_opens_byte_exact() {
    let _t = turn();
    let lossy = Faults {
        drop: 0.02,
        duplicate: 0.01,
        reorder: 0.02,
        corrupt: 0.005,
        delay: Duration::from_micros(200),
        jitter: Duration::from_micros(200),
        reorder_delay: Duration::from_millis(1),
        burst: 0,
        ethernet: true,
        max_frame: 0,
    };
    let (stack, _peer, _, link) = start_traced(lossy, Vec::new());
    let sizes = [0usize, 1, 1447, 1448, 1449, 100_000, 1 << 20];
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let stack = stack.clone();
            let link = link.clone();
            thread::spawn(move || {
                let data = pattern(sizes[i % sizes.len()], i as u64);
                let conn = stack.open_active(SocketAddrV4::new(PEER_IP, ECHO)).unwrap();
                conn.wait_established(WAIT).unwrap();
                let status = conn.status().unwrap();
                assert_eq!(status.state, HandleState::Tcp(State::Established));
                assert_eq!(
                    status.tcp.as_ref().unwrap().remote,
                    SocketAddrV4::new(PEER_IP, ECHO)
                );
                let port = status.tcp.as_ref().unwrap().local.port();
                // Reading on another thread while this one sends.
                let conn = Arc::new(conn);
                let reader = read_on_another_thread(&conn);
                conn.send_all(&data, WAIT).unwrap();
                conn.close().unwrap();
                assert_eq!(conn.send(b"late"), Err(UserError::Closing));
                assert_eq!(conn.close(), Err(UserError::Closing));
                let got = match reader.join().unwrap() {
                    Ok(got) => got,
                    Err(e) => panic!(
                        "conn {i}: {e:?}; {:?}\n{}",
                        conn.status(),
                        trace_tail(&link, port)
                    ),
                };
                if got != data {
                    let first = got.iter().zip(&data).position(|(a, b)| a != b);
                    panic!(
                        "conn {i}: {} bytes of {} back, first difference at {first:?}\n{}",
                        got.len(),
                        data.len(),
                        trace_tail(&link, port)
                    );
                }
                assert_eq!(conn.wait_closed(WAIT).unwrap(), None);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = stack.shutdown().unwrap();
    assert_eq!(report.connections_left(), 0, "every slot freed");
    assert!(report.total().tcp_segments_in > 0);
}

#[test]
fn passive_opens_take_one_connection_each_and_receive_by_callback() {
    let _t = turn();
    let clients: Vec<Vec<u8>> = (0..8)
        .map(|i| pattern(50_000 + i * 1000, 100 + i as u64))
        .collect();
    let expected = clients.clone();
    // Passive opens come first, then the peer connects.
    let (_link, stack_port, peer_port) = ThreadLink::new(Faults::none(), 3, 1514);
    let stack = init(vec![stack_port]).unwrap();
    let conns: Vec<Arc<TcpConnection>> = (0..8)
        .map(|_| Arc::new(stack.open_passive(HTTP).unwrap()))
        .collect();
    for c in &conns {
        assert_eq!(c.state(), HandleState::Listen);
        assert_eq!(c.status().unwrap().state, HandleState::Listen);
        // The callback runs on the core thread and echoes with SEND.
        let echo_to = Arc::downgrade(c);
        c.receive(move |bytes| {
            if let Some(c) = echo_to.upgrade() {
                assert_eq!(
                    c.send(bytes),
                    Ok(bytes.len()),
                    "the outbox holds a segment's worth"
                );
            }
        })
        .unwrap();
    }
    let (_peer, results) = start_peer(peer_port, clients);
    for c in &conns {
        c.wait_established(WAIT).unwrap();
    }
    // Each client half-closes after its data: close ours once it is echoed.
    for c in &conns {
        let mut buf = [0u8; 1];
        assert_eq!(c.receive_blocking(&mut buf, WAIT), Err(UserError::Closing));
        c.close().unwrap();
        c.wait_closed(WAIT).unwrap();
    }
    for _ in 0..2000 {
        if results.lock().unwrap().len() == 8 {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let results = results.lock().unwrap();
    assert_eq!(results.len(), 8);
    for (id, got, why) in results.iter() {
        assert_eq!(*why, None, "client {id}");
        assert!(got == &expected[*id], "client {id}: the echo differs");
    }
    drop(results);
    assert_eq!(stack.shutdown().unwrap().connections_left(), 0);
}

#[test]
fn errors_follow_rfc_9293_user_call_semantics() {
    let _t = turn();
    let (stack, _peer, _) = start(Faults::none(), Vec::new());

    // A refused active open.
    let refused = stack.open_active(SocketAddrV4::new(PEER_IP, 4444)).unwrap();
    assert_eq!(refused.wait_established(WAIT), Err(UserError::Refused));
    assert_eq!(refused.send(b"x"), Err(UserError::Refused));

    // A reset from the peer.
    let reset = stack
        .open_active(SocketAddrV4::new(PEER_IP, RESETTER))
        .unwrap();
    reset.wait_established(WAIT).unwrap();
    reset.send(b"hello").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        reset.receive_blocking(&mut buf, WAIT),
        Err(UserError::Reset)
    );
    assert_eq!(reset.send(b"x"), Err(UserError::Reset));
    assert_eq!(reset.close(), Err(UserError::Reset));

    // Abort, then every call: "connection does not exist".
    let aborted = stack.open_active(SocketAddrV4::new(PEER_IP, ECHO)).unwrap();
    aborted.wait_established(WAIT).unwrap();
    aborted.abort().unwrap();
    assert_eq!(aborted.send(b"x"), Err(UserError::DoesNotExist));
    assert_eq!(aborted.close(), Err(UserError::DoesNotExist));
    assert_eq!(aborted.abort(), Err(UserError::DoesNotExist));
    assert_eq!(aborted.status().err(), Some(UserError::DoesNotExist));

    // A passive open withdrawn before anyone connected.
    let listening = stack.open_passive(9999).unwrap();
    listening.close().unwrap();
    assert_eq!(listening.send(b"x"), Err(UserError::DoesNotExist));

    // A blocking receive times out without harming the connection.
    let quiet = stack.open_active(SocketAddrV4::new(PEER_IP, ECHO)).unwrap();
    quiet.wait_established(WAIT).unwrap();
    assert_eq!(
        quiet.receive_blocking(&mut buf, Duration::from_millis(50)),
        Err(UserError::WaitTimeout)
    );
    quiet.send(b"ping").unwrap();
    assert_eq!(quiet.receive_blocking(&mut buf, WAIT), Ok(4));
    assert_eq!(&buf[..4], b"ping");
    assert_eq!(stack.shutdown().unwrap().connections_left(), 0);
}

#[test]
fn abort_races_sends_and_shutdown_frees_live_connections() {
    let _t = turn();
    let (stack, _peer, _) = start(Faults::none(), Vec::new());
    // Senders racing aborts from other threads.
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let stack = stack.clone();
            thread::spawn(move || {
                let conn = Arc::new(stack.open_active(SocketAddrV4::new(PEER_IP, ECHO)).unwrap());
                let sender = {
                    let conn = conn.clone();
                    thread::spawn(move || {
                        let data = pattern(1 << 20, i);
                        match conn.send_all(&data, WAIT) {
                            Ok(()) | Err(UserError::DoesNotExist) => {}
                            Err(e) => panic!("send during abort: {e}"),
                        }
                    })
                };
                thread::sleep(Duration::from_millis(i % 5));
                conn.abort().unwrap();
                sender.join().unwrap();
                assert_eq!(conn.status().err(), Some(UserError::DoesNotExist));
            })
        })
        .collect();
    for r in racers {
        r.join().unwrap();
    }
    // Live connections, mid-transfer, when the stack shuts down.
    let live: Vec<TcpConnection> = (0..10)
        .map(|_| {
            let c = stack.open_active(SocketAddrV4::new(PEER_IP, ECHO)).unwrap();
            c.wait_established(WAIT).unwrap();
            c.send(&pattern(100_000, 5)).unwrap();
            c
        })
        .collect();
    let report = stack.shutdown().unwrap();
    assert_eq!(report.connections_left(), 0, "every slot freed");
    for c in &live {
        // Closed by the shutdown: gracefully or by reset, never left open.
        assert!(c.wait_closed(WAIT).is_ok());
        assert!(matches!(
            c.state(),
            HandleState::Tcp(State::Closed | State::TimeWait)
        ));
    }
}

/// The peer's transmit side on a two-queue "NIC" whose RSS is hostile: a
/// TCP segment goes to the queue of the core that does NOT own its
/// destination port (ephemeral ports are split by parity), and everything
/// else (ARP) to queue 0 only.
struct HostileRss<'a> {
    queues: [&'a mut ThreadPort; 2],
    scratch: Vec<u8>,
}

fn wrong_queue(frame: &[u8]) -> usize {
    let is_tcp = frame.len() > 34 && frame[12..14] == [0x08, 0x00] && frame[23] == 6;
    if !is_tcp {
        return 0;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let at = 14 + ihl + 2;
    let port = u16::from_be_bytes([frame[at], frame[at + 1]]);
    1 - usize::from(port % 2)
}

impl bypass_stack::driver::TxSink for HostileRss<'_> {
    fn send<F: FnOnce(&mut [u8])>(
        &mut self,
        len: usize,
        fill: F,
    ) -> Result<(), bypass_stack::driver::TxError> {
        self.scratch.clear();
        self.scratch.resize(len, 0);
        fill(&mut self.scratch);
        let q = wrong_queue(&self.scratch);
        let HostileRss { queues, scratch } = self;
        use bypass_stack::driver::Device;
        queues[q]
            .transmitter()
            .send(len, |b| b.copy_from_slice(scratch))
    }
}

#[test]
fn active_opens_work_when_replies_land_on_another_core() {
    use bypass_stack::{driver::Device, iface::Interface, runtime::App, tcp::shard::Shard};
    let _t = turn();
    let (_l0, stack0, mut peer0) = ThreadLink::new(Faults::none(), 11, 1514);
    let (_l1, stack1, mut peer1) = ThreadLink::new(Faults::none(), 12, 1514);
    let stack = init(vec![stack0, stack1]).unwrap();
    assert_eq!(stack.cores(), 2);
    // The peer: one engine fed by both queues, driven by its own thread.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peer = {
        let stop = stop.clone();
        thread::spawn(move || {
            let setup = tcp_setup();
            let mut engine = Interface::new(iface(PEER_IP, 2)).with_tcp(Shard::new(
                setup.config,
                setup.shard,
                PEER_IP,
                setup.isn,
                setup.cookies,
            ));
            let mut app = EventApp::new(Peer {
                clients: Vec::new(),
                results: Results::default(),
            });
            let clock = bypass_stack::time::Clock::new();
            app.start(engine.tcp_mut().unwrap(), clock.now());
            let mut frames: Vec<Vec<u8>> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = clock.now();
                peer0.receive(64, |f, _| frames.push(f.to_vec()));
                peer1.receive(64, |f, _| frames.push(f.to_vec()));
                let mut rss = HostileRss {
                    queues: [&mut peer0, &mut peer1],
                    scratch: Vec::new(),
                };
                for f in frames.drain(..) {
                    engine.receive_frame(&f, now, &mut rss);
                }
                app.poll(engine.tcp_mut().unwrap(), now);
                engine.poll(now, &mut rss);
                peer0.wait(Duration::from_micros(200)).unwrap();
            }
        })
    };
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let stack = stack.clone();
            thread::spawn(move || {
                let data = pattern(200_000, 1000 + i);
                let conn = stack.open_active(SocketAddrV4::new(PEER_IP, ECHO)).unwrap();
                conn.wait_established(WAIT).unwrap();
                let conn = Arc::new(conn);
                let reader = read_on_another_thread(&conn);
                conn.send_all(&data, WAIT).unwrap();
                conn.close().unwrap();
                let got = reader.join().unwrap().unwrap();
                assert!(got == data, "conn {i}: the echo differs");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = stack.shutdown().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    peer.join().unwrap();
    let total = report.total();
    assert!(total.forwarded_in > 100, "replies crossed cores: {total}");
    assert_eq!(total.forwarded_in, total.forwarded_out, "{total}");
    assert_eq!(
        total.drops(bypass_stack::counters::DropReason::TcpNoRoute),
        0,
        "no SYN was lost waiting for ARP: {total}"
    );
    assert_eq!(report.connections_left(), 0);
    // Both cores opened connections, and both learned the peer's address
    // although ARP replies only ever reached queue 0.
    for core in &report.cores {
        assert!(
            core.counters.tcp_segments_out > 100,
            "core {}: {}",
            core.queue,
            core.counters
        );
    }
}
