//! Two whole engines (Ethernet, ARP, IPv4, TCP shards) over the in-memory
//! link with seeded loss, duplication, reordering, corruption and delay, on
//! virtual time: a client opens connections to a server that echoes or
//! discards, and every byte must come back exact.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use bypass_stack::{
    driver::{
        memlink::{Faults, MemLink, MemPort},
        Device,
    },
    iface::Interface,
    tcp::{
        config::TcpConfig,
        connection::{Error, Events, State},
        shard::{ConnectionHandle, ShardConfig},
    },
    testkit,
    time::Instant,
    wire::EthernetAddress,
};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const ECHO: u16 = 7;
const DISCARD: u16 = 9;

fn engine(ip: Ipv4Addr, mac_last: u8, shard: ShardConfig, seed: u64) -> Interface {
    testkit::tcp_engine(ip, mac_last, TcpConfig::default(), shard, seed)
}

/// One pass of a core: frames in, timers and output.
fn run(iface: &mut Interface, port: &mut MemPort, now: Instant) {
    while port.receive(64, |frame, tx| iface.receive_frame(frame, now, tx)) > 0 {}
    iface.poll(now, &mut port.transmitter());
}

/// The server application: echo on 7, discard on 9.
#[derive(Default)]
struct Server {
    conns: HashMap<ConnectionHandle, u16>,
}

impl Server {
    fn step(&mut self, iface: &mut Interface) {
        let shard = iface.tcp_mut().unwrap();
        for port in [ECHO, DISCARD] {
            while let Some(h) = shard.accept(port) {
                self.conns.insert(h, port);
            }
        }
        let conns = &mut self.conns;
        let mut buf = [0u8; 16384];
        shard.take_events(|h, conn, events| {
            let Some(&port) = conns.get(&h) else { return };
            if events.contains(Events::CLOSED) {
                conns.remove(&h);
                return;
            }
            loop {
                let room = if port == ECHO {
                    conn.send_capacity().min(buf.len())
                } else {
                    buf.len()
                };
                if room == 0 {
                    break;
                }
                match conn.recv(&mut buf[..room]) {
                    Ok(0) => break,
                    Ok(n) => {
                        if port == ECHO {
                            assert_eq!(conn.send(&buf[..n]), Ok(n));
                        }
                    }
                    Err(_) => {
                        // The peer closed and everything was read.
                        let _ = conn.close();
                        break;
                    }
                }
            }
        });
    }
}

/// The client application for one connection.
struct Client {
    handle: ConnectionHandle,
    out: Vec<u8>,
    written: usize,
    got: Vec<u8>,
    closed: bool,
    done: bool,
    error: Option<Error>,
}

impl Client {
    fn step(&mut self, iface: &mut Interface) {
        let shard = iface.tcp_mut().unwrap();
        let me = self.handle;
        let mut events_seen = Events::default();
        shard.take_events(|h, _conn, events| {
            if h == me {
                events_seen = events_seen | events;
            }
        });
        if self.done {
            // The application is done with it: the slot is freed once the
            // connection leaves TIME-WAIT.
            shard.release(me);
            return;
        }
        let Some(conn) = shard.get_mut(me) else {
            self.done = true;
            return;
        };
        if events_seen.contains(Events::CLOSED) {
            self.error = conn.error();
            self.done = true;
        }
        if conn.state() == State::Established || conn.state() == State::CloseWait {
            while self.written < self.out.len() {
                match conn.send(&self.out[self.written..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.written += n,
                }
            }
            if self.written == self.out.len() && !self.closed {
                self.closed = conn.close().is_ok();
            }
        }
        let mut buf = [0u8; 16384];
        while let Ok(n) = conn.recv(&mut buf) {
            if n == 0 {
                break;
            }
            self.got.extend_from_slice(&buf[..n]);
        }
        if matches!(conn.state(), State::TimeWait | State::Closed) {
            self.error = conn.error();
            self.done = true;
        }
    }
}

struct Net {
    link: MemLink,
    server: Interface,
    server_port: MemPort,
    client: Interface,
    client_port: MemPort,
    app: Server,
    now: Instant,
}

impl Net {
    fn new(faults: Faults, seed: u64, server_shard: ShardConfig) -> Net {
        let (link, client_port, server_port) = MemLink::new(faults, seed, 1514);
        let mut server = engine(SERVER_IP, 1, server_shard, seed);
        let shard = server.tcp_mut().unwrap();
        shard.listen(ECHO).unwrap();
        shard.listen(DISCARD).unwrap();
        Net {
            link,
            server,
            server_port,
            client: engine(CLIENT_IP, 2, ShardConfig::default(), seed ^ 0xff),
            client_port,
            app: Server::default(),
            now: Instant::ZERO,
        }
    }

    fn pass(&mut self) {
        run(&mut self.server, &mut self.server_port, self.now);
        self.app.step(&mut self.server);
        run(&mut self.server, &mut self.server_port, self.now);
        run(&mut self.client, &mut self.client_port, self.now);
    }

    /// Moves time to the next event; false when nothing is pending.
    fn advance(&mut self) -> bool {
        let deadlines = [self.server.poll_at(self.now), self.client.poll_at(self.now)];
        testkit::advance(&self.link, &mut self.now, deadlines)
    }

    /// Resolves the server's MAC from the client (ARP over the link).
    fn resolve(&mut self) -> EthernetAddress {
        for _ in 0..100_000 {
            let mac = self
                .client
                .resolve(SERVER_IP, self.now, &mut self.client_port.transmitter());
            if let Some(mac) = mac {
                return mac;
            }
            self.pass();
            self.advance();
        }
        panic!("ARP never resolved");
    }

    fn open(&mut self, port: u16, data: Vec<u8>) -> Client {
        let mac = self.resolve();
        let handle = self
            .client
            .tcp_mut()
            .unwrap()
            .connect(SocketAddrV4::new(SERVER_IP, port), Some(mac), self.now)
            .unwrap();
        Client {
            handle,
            out: data,
            written: 0,
            got: Vec::new(),
            closed: false,
            done: false,
            error: None,
        }
    }

    fn drive(&mut self, clients: &mut [Client]) {
        let mut steps = 0u64;
        while clients.iter().any(|c| !c.done) {
            self.pass();
            for c in clients.iter_mut() {
                if !c.done {
                    c.step(&mut self.client);
                    if c.done {
                        c.step(&mut self.client);
                    }
                }
            }
            self.pass();
            steps += 1;
            assert!(steps < 2_000_000, "no progress at {}", self.now);
            if !self.advance() {
                break;
            }
        }
    }

    /// Runs until both shards are empty (TIME-WAIT included).
    fn drain(&mut self) {
        for _ in 0..1_000_000 {
            self.pass();
            let empty = self.server.tcp().unwrap().connection_count() == 0
                && self.client.tcp().unwrap().connection_count() == 0;
            if empty || !self.advance() {
                return;
            }
        }
    }
}

fn pattern(len: usize, salt: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(salt);
    (0..len).map(|_| rng.u8(..)).collect()
}

fn lossy() -> Faults {
    Faults {
        drop: 0.10,
        duplicate: 0.02,
        reorder: 0.05,
        corrupt: 0.02,
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(1),
        reorder_delay: Duration::from_millis(2),
        burst: 0,
        ethernet: true,
        max_frame: 0,
    }
}

#[test]
fn echo_of_every_edge_size_over_a_lossy_link() {
    let mss = 1460 - 12;
    for seed in 0..6u64 {
        let mut net = Net::new(lossy(), seed, ShardConfig::default());
        let mut clients: Vec<Client> = [0, 1, mss - 1, mss, mss + 1, 300_000]
            .iter()
            .map(|&len| net.open(ECHO, pattern(len, seed * 31 + len as u64)))
            .collect();
        net.drive(&mut clients);
        for c in &clients {
            assert_eq!(c.error, None, "seed {seed}");
            assert!(
                c.got == c.out,
                "seed {seed}: echoed {} of {} bytes",
                c.got.len(),
                c.out.len()
            );
        }
        net.drain();
        assert_eq!(
            net.server.tcp().unwrap().connection_count(),
            0,
            "seed {seed}: server slots freed"
        );
        assert_eq!(
            net.client.tcp().unwrap().connection_count(),
            0,
            "seed {seed}: client slots freed"
        );
        let c = net.server.counters();
        assert!(c.tcp_segments_in > 0 && c.tcp_segments_out > 0);
    }
}

#[test]
fn a_mebibyte_discarded_and_a_mebibyte_echoed_at_ten_percent_loss() {
    for seed in 0..2u64 {
        let mut net = Net::new(lossy(), 100 + seed, ShardConfig::default());
        let mut clients = vec![
            net.open(ECHO, pattern(1 << 20, seed)),
            net.open(DISCARD, pattern(1 << 20, seed + 7)),
        ];
        net.drive(&mut clients);
        assert!(clients[0].got == clients[0].out, "seed {seed}: echo");
        assert!(
            clients[1].got.is_empty() && clients[1].error.is_none(),
            "seed {seed}: discard"
        );
        // Loss shows in the retransmit counters, shard and interface alike.
        for iface in [&net.client, &net.server] {
            let total = iface.tcp().unwrap().retransmits_total;
            assert!(total > 0, "seed {seed}: retransmits counted");
            assert_eq!(iface.counters().tcp_retransmits, total);
        }
    }
}

#[test]
fn a_clean_link_retransmits_nothing() {
    let mut net = Net::new(Faults::default(), 5, ShardConfig::default());
    let mut clients = vec![net.open(ECHO, pattern(256 << 10, 5))];
    net.drive(&mut clients);
    assert!(clients[0].got == clients[0].out);
    assert_eq!(net.client.counters().tcp_retransmits, 0);
    assert_eq!(net.server.counters().tcp_retransmits, 0);
}

/// With the SYN queue full every SYN gets a cookie; connections complete
/// from the final ACK with the peer's MSS, window scale and SACK (carried in
/// the timestamp) intact. (Over a lossy link a cookie connection can fail
/// when the handshake's ACK and the first data segment are both lost, as it
/// does on Linux: later segments no longer carry the cookie.)
#[test]
fn syn_cookies_carry_connections_when_the_syn_queue_is_full() {
    let shard = ShardConfig {
        syn_backlog: 0,
        ..ShardConfig::default()
    };
    let mut net = Net::new(Faults::none(), 7, shard);
    let mut clients: Vec<Client> = (0..4)
        .map(|i| net.open(ECHO, pattern(300_000, i)))
        .collect();
    // Check the options on the server side once the connections are up.
    for _ in 0..20 {
        net.pass();
        net.app.step(&mut net.server);
        net.advance();
    }
    let handles: Vec<_> = net.app.conns.keys().copied().collect();
    assert_eq!(handles.len(), 4);
    for h in handles {
        let st = net.server.tcp().unwrap().get(h).unwrap().status();
        assert!(st.timestamps && st.sack, "{st:?}");
        assert!(st.window_scale.is_some(), "{st:?}");
        assert_eq!(st.send_mss, 1460 - 12);
    }
    net.drive(&mut clients);
    for c in &clients {
        assert!(c.got == c.out && c.error.is_none(), "{:?}", c.error);
    }
    let s = net.server.counters();
    assert!(s.tcp_syncookies_sent >= 4, "{s}");
    assert!(s.tcp_syncookies_ok >= 4, "{s}");
}

#[test]
fn a_closed_port_refuses() {
    let mut net = Net::new(Faults::none(), 1, ShardConfig::default());
    let mut clients = vec![net.open(1234, b"nobody home".to_vec())];
    net.drive(&mut clients);
    assert_eq!(clients[0].error, Some(Error::Refused));
    assert!(net.server.counters().tcp_resets_out >= 1);
}

#[test]
fn destroying_a_shard_resets_and_frees_every_connection() {
    let mut net = Net::new(Faults::none(), 3, ShardConfig::default());
    let mut clients: Vec<Client> = (0..5).map(|i| net.open(DISCARD, pattern(10, i))).collect();
    // Let the handshakes complete but not the closes.
    for _ in 0..50 {
        net.pass();
        net.advance();
    }
    assert!(net.server.tcp().unwrap().connection_count() >= 5);
    let now = net.now;
    let shard = net.server.tcp_mut().unwrap();
    let mut resets = 0;
    shard.destroy(now, |seg| {
        resets += usize::from(seg.repr.control == bypass_stack::wire::TcpControl::Rst);
        Ok(())
    });
    assert_eq!(shard.connection_count(), 0, "every slot freed");
    assert!(resets >= 5, "{resets} resets");
    drop(clients.drain(..));
}

#[test]
fn connections_in_time_wait_hold_no_buffers() {
    let mut net = Net::new(Faults::none(), 5, ShardConfig::default());
    let mut clients: Vec<Client> = (0..8)
        .map(|i| net.open(ECHO, pattern(100_000, i)))
        .collect();
    net.drive(&mut clients);
    for c in &clients {
        assert!(c.got == c.out && c.error.is_none());
    }
    // The client closed first, so its connections wait out 2 MSL; they
    // keep their slots but not their buffers.
    let shard = net.client.tcp().unwrap();
    assert_eq!(shard.connection_count(), 8, "in TIME-WAIT");
    assert_eq!(shard.buffer_bytes(), 0, "TIME-WAIT holds no buffer memory");
    // A new connection takes memory as its data comes.
    let mut next = vec![net.open(ECHO, pattern(1000, 99))];
    net.drive(&mut next);
    assert!(next[0].got == next[0].out);
    net.drain();
    assert_eq!(net.client.tcp().unwrap().connection_count(), 0);
}
