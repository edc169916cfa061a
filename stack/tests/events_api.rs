//! The per-core event API over the in-memory link, on virtual time: two
//! engines, each running an application through `EventApp`, with seeded
//! loss, duplication, reordering and corruption. Many concurrent
//! connections, the order of callbacks, zero-copy reads and writes, close
//! and abort racing data, and a shutdown with live connections that must
//! free every slot.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use bypass_stack::{
    api::events::{Conn, Core, EventApp, Handler},
    driver::{
        memlink::{Faults, MemLink, MemPort},
        Device,
    },
    iface::Interface,
    runtime::App,
    tcp::{
        config::TcpConfig,
        connection::Error,
        shard::{ConnectionHandle, ShardConfig},
    },
    testkit,
    time::Instant,
};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const ECHO: u16 = 7;

fn engine(ip: Ipv4Addr, mac_last: u8, seed: u64) -> Interface {
    testkit::tcp_engine(
        ip,
        mac_last,
        TcpConfig {
            time_wait: Duration::from_millis(200),
            ..TcpConfig::default()
        },
        ShardConfig {
            max_connections: 256,
            ..ShardConfig::default()
        },
        seed,
    )
}

/// What a handler saw, in order, per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Accepted,
    Connected,
    Readable,
    Writable,
    PeerClosed,
    Closed(Option<Error>),
}

/// Echo, written with the zero-copy calls: read the borrowed slices, send
/// what fits straight into the send buffer, consume what was sent.
#[derive(Default)]
struct EchoServer {
    log: HashMap<SocketAddrV4, Vec<Seen>>,
    echoed: HashMap<SocketAddrV4, usize>,
}

struct EchoConn {
    peer: SocketAddrV4,
    /// The peer's FIN came: close once everything is echoed.
    peer_closed: bool,
}

/// Echoes, and closes our side once the peer has closed and every byte
/// went back.
fn echo_and_maybe_close(state: &EchoConn, conn: &mut Conn<'_>, echoed: &mut usize) {
    echo(conn, echoed);
    if state.peer_closed && conn.readable().0.is_empty() {
        let _ = conn.shutdown_write();
    }
}

impl Handler for EchoServer {
    type Conn = EchoConn;

    fn start(&mut self, core: &mut Core<'_, EchoConn>) {
        core.listen(ECHO).unwrap();
    }

    fn accepted(&mut self, conn: &mut Conn<'_>) -> EchoConn {
        conn.set_nagle(false);
        self.log
            .entry(conn.peer())
            .or_default()
            .push(Seen::Accepted);
        EchoConn {
            peer: conn.peer(),
            peer_closed: false,
        }
    }

    fn readable(&mut self, state: &mut EchoConn, conn: &mut Conn<'_>) {
        self.log.get_mut(&state.peer).unwrap().push(Seen::Readable);
        echo_and_maybe_close(state, conn, self.echoed.entry(state.peer).or_default());
    }

    fn writable(&mut self, state: &mut EchoConn, conn: &mut Conn<'_>) {
        self.log.get_mut(&state.peer).unwrap().push(Seen::Writable);
        echo_and_maybe_close(state, conn, self.echoed.entry(state.peer).or_default());
    }

    fn peer_closed(&mut self, state: &mut EchoConn, conn: &mut Conn<'_>) {
        self.log
            .get_mut(&state.peer)
            .unwrap()
            .push(Seen::PeerClosed);
        state.peer_closed = true;
        echo_and_maybe_close(state, conn, self.echoed.entry(state.peer).or_default());
    }

    fn closed(&mut self, state: EchoConn, why: Option<Error>) {
        self.log
            .get_mut(&state.peer)
            .unwrap()
            .push(Seen::Closed(why));
    }
}

/// Echoes what fits: the received bytes go into the send buffer in place
/// (`send_with`), and only what was sent is consumed.
fn echo(conn: &mut Conn<'_>, echoed: &mut usize) {
    let mut bounce = [0u8; 4096];
    loop {
        let (a, _) = conn.readable();
        let n = a.len().min(bounce.len());
        if n == 0 {
            return;
        }
        bounce[..n].copy_from_slice(&a[..n]);
        let Ok(sent) = conn.send_with(|room| {
            let k = room.len().min(n);
            room[..k].copy_from_slice(&bounce[..k]);
            k
        }) else {
            return;
        };
        if sent == 0 {
            return;
        }
        conn.consume(sent);
        *echoed += sent;
    }
}

/// What a client connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Send everything, half-close, read the echo to the end.
    Echo,
    /// Abort once part of the echo came back (data in flight both ways).
    AbortMidway,
}

struct ClientConn {
    id: usize,
    data: Vec<u8>,
    written: usize,
    got: Vec<u8>,
    plan: Plan,
    log: Vec<Seen>,
}

#[derive(Default)]
struct Clients {
    plans: Vec<(Vec<u8>, Plan)>,
    handles: Vec<ConnectionHandle>,
    /// Finished connections: (id, received, plan, log).
    done: Vec<(usize, Vec<u8>, Plan, Vec<Seen>)>,
}

fn write_some(state: &mut ClientConn, conn: &mut Conn<'_>) {
    while state.written < state.data.len() {
        match conn.send(&state.data[state.written..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => state.written += n,
        }
    }
    if state.plan == Plan::Echo {
        let _ = conn.shutdown_write();
    }
}

impl Handler for Clients {
    type Conn = ClientConn;

    fn start(&mut self, core: &mut Core<'_, ClientConn>) {
        for (id, (data, plan)) in std::mem::take(&mut self.plans).into_iter().enumerate() {
            let state = ClientConn {
                id,
                data,
                written: 0,
                got: Vec::new(),
                plan,
                log: Vec::new(),
            };
            let h = core
                .connect(SocketAddrV4::new(SERVER_IP, ECHO), state)
                .unwrap();
            self.handles.push(h);
        }
    }

    fn accepted(&mut self, _conn: &mut Conn<'_>) -> ClientConn {
        unreachable!("the client does not listen")
    }

    fn connected(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        state.log.push(Seen::Connected);
        write_some(state, conn);
    }

    fn readable(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        state.log.push(Seen::Readable);
        let (a, b) = conn.readable();
        state.got.extend_from_slice(a);
        state.got.extend_from_slice(b);
        let n = a.len() + b.len();
        conn.consume(n);
        if state.plan == Plan::AbortMidway && state.got.len() >= state.data.len() / 4 {
            conn.abort();
        }
    }

    fn writable(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        state.log.push(Seen::Writable);
        write_some(state, conn);
    }

    fn peer_closed(&mut self, state: &mut ClientConn, _conn: &mut Conn<'_>) {
        state.log.push(Seen::PeerClosed);
    }

    fn closed(&mut self, mut state: ClientConn, why: Option<Error>) {
        state.log.push(Seen::Closed(why));
        self.done.push((state.id, state.got, state.plan, state.log));
    }
}

struct Net {
    link: MemLink,
    server: Interface,
    server_port: MemPort,
    server_app: EventApp<EchoServer>,
    client: Interface,
    client_port: MemPort,
    client_app: EventApp<Clients>,
    now: Instant,
}

impl Net {
    fn new(faults: Faults, seed: u64, plans: Vec<(Vec<u8>, Plan)>) -> Net {
        let (link, client_port, server_port) = MemLink::new(faults, seed, 1514);
        let mut server = engine(SERVER_IP, 1, seed);
        let mut client = engine(CLIENT_IP, 2, seed ^ 0xff);
        let mut server_app = EventApp::new(EchoServer::default());
        server_app.start(server.tcp_mut().unwrap(), Instant::ZERO);
        let mut client_app = EventApp::new(Clients {
            plans,
            ..Clients::default()
        });
        client_app.start(client.tcp_mut().unwrap(), Instant::ZERO);
        Net {
            link,
            server,
            server_port,
            server_app,
            client,
            client_port,
            client_app,
            now: Instant::ZERO,
        }
    }

    fn pass(&mut self) {
        testkit::pass(
            &mut self.server,
            &mut self.server_port,
            &mut self.server_app,
            self.now,
        );
        testkit::pass(
            &mut self.client,
            &mut self.client_port,
            &mut self.client_app,
            self.now,
        );
    }

    fn advance(&mut self) -> bool {
        let deadlines = [self.server.poll_at(self.now), self.client.poll_at(self.now)];
        testkit::advance(&self.link, &mut self.now, deadlines)
    }

    /// Runs until `done` or nothing is pending.
    fn run_until(&mut self, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..3_000_000 {
            self.pass();
            if done(self) || !self.advance() {
                return;
            }
        }
        panic!("no end at {}", self.now);
    }
}

fn pattern(len: usize, salt: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(salt);
    (0..len).map(|_| rng.u8(..)).collect()
}

fn lossy() -> Faults {
    Faults {
        drop: 0.05,
        duplicate: 0.02,
        reorder: 0.05,
        corrupt: 0.01,
        delay: Duration::from_millis(1),
        jitter: Duration::from_micros(500),
        reorder_delay: Duration::from_millis(3),
        burst: 0,
        ethernet: true,
        max_frame: 0,
    }
}

/// The events of one connection, in order, must follow the rules: the
/// open first, the end last and once, peer-closed at most once.
fn check_order(log: &[Seen], opened: Seen) {
    assert_eq!(log.first(), Some(&opened), "{log:?}");
    assert!(matches!(log.last(), Some(Seen::Closed(_))), "{log:?}");
    assert_eq!(
        log.iter().filter(|s| matches!(s, Seen::Closed(_))).count(),
        1,
        "{log:?}"
    );
    assert!(
        log.iter().filter(|s| **s == Seen::PeerClosed).count() <= 1,
        "{log:?}"
    );
    if let Some(p) = log.iter().position(|s| *s == Seen::PeerClosed) {
        assert!(
            !log[p..].contains(&Seen::Readable),
            "readable after peer closed: {log:?}"
        );
    }
}

#[test]
fn many_concurrent_echoes_arrive_exact_with_callbacks_in_order() {
    for seed in 1..=4u64 {
        let sizes = [0usize, 1, 1447, 1448, 1449, 65_536, 300_000];
        let plans: Vec<(Vec<u8>, Plan)> = (0..40)
            .map(|i| {
                (
                    pattern(sizes[i % sizes.len()], seed * 100 + i as u64),
                    Plan::Echo,
                )
            })
            .collect();
        let expected: Vec<Vec<u8>> = plans.iter().map(|(d, _)| d.clone()).collect();
        let mut net = Net::new(lossy(), seed, plans);
        net.run_until(|n| {
            n.client_app.handler().done.len() == expected.len() && n.server_app.live() == 0
        });
        let clients = net.client_app.handler();
        assert_eq!(
            clients.done.len(),
            expected.len(),
            "seed {seed}: every connection ended"
        );
        for (id, got, _, log) in &clients.done {
            assert_eq!(
                got.len(),
                expected[*id].len(),
                "seed {seed} conn {id}: length"
            );
            assert!(got == &expected[*id], "seed {seed} conn {id}: bytes differ");
            check_order(log, Seen::Connected);
            assert_eq!(
                log.last(),
                Some(&Seen::Closed(None)),
                "seed {seed} conn {id}: {log:?}"
            );
        }
        let server = net.server_app.handler();
        assert_eq!(server.log.len(), expected.len());
        for log in server.log.values() {
            check_order(log, Seen::Accepted);
            assert_eq!(log.last(), Some(&Seen::Closed(None)), "{log:?}");
        }
        let total: usize = expected.iter().map(Vec::len).sum();
        assert_eq!(server.echoed.values().sum::<usize>(), total);
        assert_eq!(net.server_app.live(), 0);
        assert_eq!(net.client_app.live(), 0);
    }
}

#[test]
fn aborts_racing_data_reset_the_peer_and_free_both_ends() {
    let plans: Vec<(Vec<u8>, Plan)> = (0..20)
        .map(|i| {
            let plan = if i % 2 == 0 {
                Plan::Echo
            } else {
                Plan::AbortMidway
            };
            (pattern(200_000, i), plan)
        })
        .collect();
    let mut net = Net::new(lossy(), 9, plans);
    net.run_until(|n| n.client_app.handler().done.len() == 20 && n.server_app.live() == 0);
    let clients = net.client_app.handler();
    assert_eq!(clients.done.len(), 20);
    for (id, got, plan, log) in &clients.done {
        check_order(log, Seen::Connected);
        match plan {
            Plan::Echo => assert_eq!(got.len(), 200_000, "conn {id}"),
            // Our own abort ends the connection without an error.
            Plan::AbortMidway => assert!(got.len() < 200_000, "conn {id}"),
        }
    }
    let server = net.server_app.handler();
    let resets = server
        .log
        .values()
        .filter(|log| log.last() == Some(&Seen::Closed(Some(Error::Reset))))
        .count();
    let ends: Vec<_> = server
        .log
        .values()
        .map(|log| *log.last().unwrap())
        .collect();
    assert_eq!(
        resets, 10,
        "every aborted client reset its server side: {ends:?}"
    );
    assert_eq!(net.server_app.live(), 0);
    // Everything is freed once TIME-WAIT ends.
    net.run_until(|n| {
        n.server.tcp().unwrap().connection_count() == 0
            && n.client.tcp().unwrap().connection_count() == 0
    });
    assert_eq!(net.server.tcp().unwrap().connection_count(), 0);
    assert_eq!(net.client.tcp().unwrap().connection_count(), 0);
}

#[test]
fn shutdown_with_live_connections_closes_them_and_frees_every_slot() {
    let plans: Vec<(Vec<u8>, Plan)> = (0..30).map(|i| (pattern(1 << 20, i), Plan::Echo)).collect();
    let mut net = Net::new(Faults::none(), 3, plans);
    // Let the transfers get going, then stop the server mid-stream.
    net.run_until(|n| {
        n.server_app.live() == 30 && n.server_app.handler().echoed.values().sum::<usize>() > 1 << 20
    });
    assert_eq!(net.server_app.live(), 30);
    let now = net.now;
    net.server_app.shutdown(net.server.tcp_mut().unwrap(), now);
    assert!(
        net.server.tcp().unwrap().listening().next().is_none(),
        "no more listening"
    );
    let deadline = net.now + Duration::from_secs(2);
    net.run_until(|n| n.now >= deadline || n.server.tcp().unwrap().all_closed_or_time_wait());
    // What is left is reset and freed.
    let now = net.now;
    net.server
        .destroy_tcp(now, &mut net.server_port.transmitter());
    net.run_until(|n| n.client_app.handler().done.len() == 30);
    assert_eq!(
        net.server.tcp().map_or(0, |s| s.connection_count()),
        0,
        "every slot freed"
    );
    let clients = net.client_app.handler();
    assert_eq!(
        clients.done.len(),
        30,
        "every client saw its connection end"
    );
    for (_, _, _, log) in &clients.done {
        check_order(log, Seen::Connected);
    }
}
