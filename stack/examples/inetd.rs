//! inetd on bypass: the classic small services on the userspace stack,
//! serving real peers (the lab's kernel) to prove the TCP end to end.
//!
//! - echo (port 7, RFC 862): sends back what it receives;
//! - discard (port 9, RFC 863): drops what it receives;
//! - chargen (port 19, RFC 864): sends the rotating 72-character lines until
//!   the peer closes;
//! - reset (port 10, a test service): accepts and aborts at once (RST).
//!
//! With `--echo-to ADDR:PORT --bytes N` it also opens a connection itself
//! (active open), sends N bytes, half-closes, reads the echo back, checks
//! it byte for byte, and exits.
//!
//! ```sh
//! sudo scripts/lab up --queues 2
//! sudo scripts/lab exec srv target/release/examples/inetd --iface bpx0 --ip 10.99.0.1
//! ```

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use bypass_stack::{
    counters::Counters,
    launch::{LaunchConfig, Running},
    runtime::{App, TcpSetup},
    tcp::{
        config::TcpConfig,
        connection::{Connection, Events, State},
        shard::{ConnectionHandle, Shard, ShardConfig},
    },
    time::Instant,
};
use clap::Parser;

const ECHO: u16 = 7;
const DISCARD: u16 = 9;
const RESET: u16 = 10;
const CHARGEN: u16 = 19;
const SERVICES: [u16; 4] = [ECHO, DISCARD, RESET, CHARGEN];

#[derive(Parser, Debug)]
#[command(about = "echo, discard and chargen on the bypass userspace TCP/IP stack")]
struct Args {
    /// Interface to serve on.
    #[arg(long)]
    iface: String,
    /// The stack's address (owned: the kernel must not have it).
    #[arg(long)]
    ip: Ipv4Addr,
    /// Receive queues (all of the interface's, by default).
    #[arg(long)]
    queues: Option<u32>,
    /// Also connect to this echo server, send --bytes, check the echo, and
    /// exit.
    #[arg(long, value_name = "ADDR:PORT")]
    echo_to: Option<SocketAddrV4>,
    /// Bytes for --echo-to.
    #[arg(long, default_value_t = 1 << 20)]
    bytes: usize,
    /// Congestion control: cubic or newreno.
    #[arg(long, default_value = "cubic")]
    congestion: String,
}

/// RFC 864's pattern: line n is 72 characters of the 95 printable ASCII
/// characters starting at offset n, then CR LF.
fn chargen_byte(pos: u64) -> u8 {
    let line = pos / 74;
    let col = pos % 74;
    match col {
        72 => b'\r',
        73 => b'\n',
        _ => b' ' + ((line + col) % 95) as u8,
    }
}

/// The byte at `pos` of the active-open test stream.
fn pattern_byte(pos: usize) -> u8 {
    (pos as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0]
}

/// Outcome of the active open, shared with main: 0 running, 1 ok, 2 failed.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

struct Service {
    port: u16,
    /// chargen: bytes sent so far.
    sent: u64,
}

struct ActiveOpen {
    handle: Option<ConnectionHandle>,
    remote: SocketAddrV4,
    total: usize,
    written: usize,
    checked: usize,
    closed: bool,
}

struct Inetd {
    conns: HashMap<ConnectionHandle, Service>,
    active: Option<ActiveOpen>,
    buf: Vec<u8>,
}

impl Inetd {
    fn serve(conn: &mut Connection, service: &mut Service, events: Events, buf: &mut [u8]) {
        match service.port {
            ECHO => loop {
                let room = conn.send_capacity().min(buf.len());
                if room == 0 {
                    break;
                }
                match conn.recv(&mut buf[..room]) {
                    Ok(0) => break,
                    Ok(n) => {
                        let _ = conn.send(&buf[..n]);
                    }
                    Err(_) => {
                        let _ = conn.close();
                        break;
                    }
                }
            },
            DISCARD => loop {
                match conn.recv(buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => {
                        let _ = conn.close();
                        break;
                    }
                }
            },
            CHARGEN => {
                // Whatever the peer sends is thrown away (RFC 864).
                while let Ok(n) = conn.recv(buf) {
                    if n == 0 {
                        break;
                    }
                }
                if events.contains(Events::PEER_CLOSED) || conn.state() == State::CloseWait {
                    let _ = conn.close();
                    return;
                }
                loop {
                    let room = conn.send_capacity().min(buf.len());
                    if room == 0 {
                        break;
                    }
                    for (i, b) in buf[..room].iter_mut().enumerate() {
                        *b = chargen_byte(service.sent + i as u64);
                    }
                    match conn.send(&buf[..room]) {
                        Ok(n) if n > 0 => service.sent += n as u64,
                        _ => break,
                    }
                }
            }
            _ => conn.abort(),
        }
    }

    fn active(&mut self, shard: &mut Shard, now: Instant) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let h = match a.handle {
            Some(h) => h,
            None => match shard.connect(a.remote, None, now) {
                Ok(h) => {
                    a.handle = Some(h);
                    h
                }
                Err(e) => {
                    eprintln!("inetd: active open failed: {e}");
                    ACTIVE.store(2, Ordering::Relaxed);
                    self.active = None;
                    return;
                }
            },
        };
        let Some(conn) = shard.get_mut(h) else { return };
        if conn.state() == State::Closed {
            let ok = a.checked == a.total && conn.error().is_none();
            if !ok {
                eprintln!(
                    "inetd: active open ended after {} of {} bytes: {:?}",
                    a.checked,
                    a.total,
                    conn.error()
                );
            }
            ACTIVE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            shard.release(h);
            self.active = None;
            return;
        }
        if !conn.state().is_synchronized() {
            return;
        }
        while a.written < a.total {
            let n = (a.total - a.written).min(self.buf.len());
            for (i, b) in self.buf[..n].iter_mut().enumerate() {
                *b = pattern_byte(a.written + i);
            }
            match conn.send(&self.buf[..n]) {
                Ok(0) | Err(_) => break,
                Ok(k) => a.written += k,
            }
        }
        if a.written == a.total && !a.closed {
            a.closed = conn.close().is_ok();
        }
        while let Ok(n) = conn.recv(&mut self.buf) {
            if n == 0 {
                break;
            }
            for (i, &b) in self.buf[..n].iter().enumerate() {
                if b != pattern_byte(a.checked + i) {
                    eprintln!("inetd: active open: byte {} differs", a.checked + i);
                    ACTIVE.store(2, Ordering::Relaxed);
                    conn.abort();
                    return;
                }
            }
            a.checked += n;
        }
        if a.checked == a.total && conn.state() == State::TimeWait {
            ACTIVE.store(1, Ordering::Relaxed);
            shard.release(h);
            self.active = None;
        }
    }
}

impl App for Inetd {
    fn start(&mut self, shard: &mut Shard, _now: Instant) {
        for port in SERVICES {
            shard.listen(port).expect("fresh shard");
        }
    }

    fn poll(&mut self, shard: &mut Shard, now: Instant) {
        for port in SERVICES {
            while let Some(h) = shard.accept(port) {
                self.conns.insert(h, Service { port, sent: 0 });
                if port == RESET {
                    if let Some(c) = shard.get_mut(h) {
                        c.abort();
                    }
                }
            }
        }
        let active_handle = self.active.as_ref().and_then(|a| a.handle);
        let Inetd { conns, buf, .. } = self;
        shard.take_events(|h, conn, events| {
            if Some(h) == active_handle {
                return;
            }
            if events.contains(Events::CLOSED) {
                conns.remove(&h);
                return;
            }
            if let Some(service) = conns.get_mut(&h) {
                Inetd::serve(conn, service, events, buf);
            }
        });
        // chargen keeps sending without events: top its buffers up.
        for (&h, service) in self.conns.iter_mut() {
            if service.port == CHARGEN {
                if let Some(conn) = shard.get_mut(h) {
                    if conn.send_capacity() > 0 && conn.state() == State::Established {
                        Inetd::serve(conn, service, Events::default(), &mut self.buf);
                    }
                }
            }
        }
        self.active(shard, now);
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let Ok(congestion) = args.congestion.parse() else {
        eprintln!("inetd: --congestion must be cubic or newreno");
        return ExitCode::from(2);
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).expect("signal handler");
    }
    let config = LaunchConfig {
        queues: args.queues,
        tcp_ports: SERVICES.to_vec(),
        ..LaunchConfig::new(&args.iface, args.ip)
    };
    let tcp = TcpSetup::new(
        TcpConfig {
            congestion,
            ..TcpConfig::default()
        },
        ShardConfig::default(),
    );
    let echo_to = args.echo_to;
    let bytes = args.bytes;
    let running = match Running::start_with(&config, Some(tcp), move |queue| Inetd {
        conns: HashMap::new(),
        // The active open runs on the first core.
        active: echo_to.filter(|_| queue == 0).map(|remote| ActiveOpen {
            handle: None,
            remote,
            total: bytes,
            written: 0,
            checked: 0,
            closed: false,
        }),
        buf: vec![0; 64 * 1024],
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("inetd: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "inetd: serving echo/7 discard/9 reset/10 chargen/19 on {} ({} queue(s), XDP {})",
        args.ip,
        running.queues(),
        running.attach_mode()
    );
    while !stop.load(Ordering::Relaxed) && !running.failed() {
        if echo_to.is_some() && ACTIVE.load(Ordering::Relaxed) != 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = running.stop();
    let mut total = Counters::default();
    for core in &report.cores {
        total.accumulate(&core.counters);
    }
    eprintln!("inetd: total: {total}");
    for e in &report.errors {
        eprintln!("inetd: error: {e}");
    }
    match (echo_to, ACTIVE.load(Ordering::Relaxed)) {
        (Some(remote), 1) => {
            eprintln!("inetd: active open to {remote}: {bytes} bytes echoed byte-exact")
        }
        (Some(remote), _) => {
            eprintln!("inetd: active open to {remote} failed");
            return ExitCode::FAILURE;
        }
        _ => {}
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
