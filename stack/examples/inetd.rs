//! inetd on bypass: the classic small services on the userspace stack,
//! serving real peers (the lab's kernel) to prove the TCP end to end. It is
//! written on the per-core event API (`api::events`): one `Handler`, called
//! on each core for that core's connections.
//!
//! - echo (port 7, RFC 862): sends back what it receives;
//! - discard (port 9, RFC 863): drops what it receives;
//! - chargen (port 19, RFC 864): sends the rotating 72-character lines until
//!   the peer closes;
//! - reset (port 10, a test service): accepts and aborts at once (RST).
//!
//! With `--echo-to ADDR:PORT --bytes N [--connections C]` it also opens C
//! connections itself (active opens, dealt out over the cores), each sends
//! N bytes, half-closes, reads the echo back, checks
//! it byte for byte, and exits.
//!
//! ```sh
//! sudo scripts/lab up --queues 2
//! sudo scripts/lab exec srv target/release/examples/inetd --iface bpx0 --ip 10.99.0.1
//! ```

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bypass_stack::{
    api::events::{Conn, Core, EventApp, Handler},
    counters::Counters,
    launch::{LaunchConfig, Running},
    runtime::TcpSetup,
    tcp::{config::TcpConfig, connection::Error, shard::ShardConfig},
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
    /// Parallel connections for --echo-to, spread over the cores (each
    /// core's replies may arrive on any queue).
    #[arg(long, default_value_t = 1)]
    connections: usize,
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

/// Outcome of the active opens, shared with main: 0 running, 2 failed.
static ACTIVE: AtomicU8 = AtomicU8::new(0);
/// Active opens that came back byte-exact.
static ACTIVE_OK: AtomicUsize = AtomicUsize::new(0);

/// A connection's service, or the active open's progress.
enum Session {
    /// The peer's FIN came: close once everything is echoed.
    Echo {
        peer_closed: bool,
    },
    Discard,
    /// chargen: bytes sent so far.
    Chargen {
        sent: u64,
    },
    Reset,
    Active(ActiveOpen),
}

struct ActiveOpen {
    total: usize,
    written: usize,
    checked: usize,
}

/// inetd as an application of the per-core event API.
struct Inetd {
    /// Active opens to make on this core: (server, bytes, how many).
    echo_to: Option<(SocketAddrV4, usize, usize)>,
    buf: Vec<u8>,
}

fn fail_active(why: &str) {
    eprintln!("inetd: active open: {why}");
    ACTIVE.store(2, Ordering::Relaxed);
}

impl Inetd {
    /// echo: as much as the send buffer takes; the rest stays unread (flow
    /// control) until `writable`. After the peer's FIN, our FIN follows the
    /// last echoed byte.
    fn echo(peer_closed: bool, conn: &mut Conn<'_>) {
        Self::echo_some(conn);
        if peer_closed && conn.readable().0.is_empty() {
            let _ = conn.shutdown_write();
        }
    }

    fn echo_some(conn: &mut Conn<'_>) {
        loop {
            let (a, _) = conn.readable();
            if a.is_empty() {
                return;
            }
            let n = a.len().min(conn.send_capacity());
            if n == 0 {
                return;
            }
            let chunk: &[u8] = &a[..n];
            // `a` borrows the receive buffer; `send` needs the connection:
            // copy through the stack-sized bounce the echo service allows.
            let mut bounce = [0u8; 16 * 1024];
            let k = chunk.len().min(bounce.len());
            bounce[..k].copy_from_slice(&chunk[..k]);
            match conn.send(&bounce[..k]) {
                Ok(0) | Err(_) => return,
                Ok(sent) => {
                    conn.consume(sent);
                }
            }
        }
    }

    fn chargen(sent: &mut u64, conn: &mut Conn<'_>) {
        loop {
            let pos = *sent;
            let Ok(n) = conn.send_with(|room| {
                for (i, b) in room.iter_mut().enumerate() {
                    *b = chargen_byte(pos + i as u64);
                }
                room.len()
            }) else {
                return;
            };
            if n == 0 {
                return;
            }
            *sent += n as u64;
        }
    }

    fn active_write(a: &mut ActiveOpen, conn: &mut Conn<'_>) {
        while a.written < a.total {
            let from = a.written;
            let want = a.total - from;
            match conn.send_with(|room| {
                let n = room.len().min(want);
                for (i, b) in room[..n].iter_mut().enumerate() {
                    *b = pattern_byte(from + i);
                }
                n
            }) {
                Ok(0) | Err(_) => return,
                Ok(n) => a.written += n,
            }
        }
        // Everything queued: half-close, and read the echo to its end.
        let _ = conn.shutdown_write();
    }

    fn active_read(a: &mut ActiveOpen, conn: &mut Conn<'_>) {
        let (x, y) = conn.readable();
        let mut pos = a.checked;
        for &b in x.iter().chain(y) {
            if b != pattern_byte(pos) {
                fail_active(&format!("byte {pos} differs"));
                conn.abort();
                return;
            }
            pos += 1;
        }
        let n = pos - a.checked;
        conn.consume(n);
        a.checked = pos;
    }
}

impl Handler for Inetd {
    type Conn = Session;

    fn start(&mut self, core: &mut Core<'_, Session>) {
        for port in SERVICES {
            core.listen(port).expect("fresh shard");
        }
        if let Some((remote, total, count)) = self.echo_to {
            for _ in 0..count {
                let open = ActiveOpen {
                    total,
                    written: 0,
                    checked: 0,
                };
                if let Err(e) = core.connect(remote, Session::Active(open)) {
                    fail_active(&e.to_string());
                }
            }
        }
    }

    fn accepted(&mut self, conn: &mut Conn<'_>) -> Session {
        match conn.local().port() {
            ECHO => Session::Echo { peer_closed: false },
            DISCARD => Session::Discard,
            CHARGEN => {
                let mut sent = 0;
                Inetd::chargen(&mut sent, conn);
                Session::Chargen { sent }
            }
            _ => {
                conn.abort();
                Session::Reset
            }
        }
    }

    fn connected(&mut self, state: &mut Session, conn: &mut Conn<'_>) {
        if let Session::Active(a) = state {
            Inetd::active_write(a, conn);
        }
    }

    fn readable(&mut self, state: &mut Session, conn: &mut Conn<'_>) {
        match state {
            Session::Echo { peer_closed } => Inetd::echo(*peer_closed, conn),
            // discard, and chargen (RFC 864 ignores what the peer sends).
            Session::Discard | Session::Chargen { .. } => {
                while matches!(conn.read(&mut self.buf), Ok(n) if n > 0) {}
            }
            Session::Active(a) => Inetd::active_read(a, conn),
            Session::Reset => {}
        }
    }

    fn writable(&mut self, state: &mut Session, conn: &mut Conn<'_>) {
        match state {
            Session::Echo { peer_closed } => Inetd::echo(*peer_closed, conn),
            Session::Chargen { sent } => Inetd::chargen(sent, conn),
            Session::Active(a) => Inetd::active_write(a, conn),
            _ => {}
        }
    }

    fn peer_closed(&mut self, state: &mut Session, conn: &mut Conn<'_>) {
        match state {
            Session::Echo { peer_closed } => {
                *peer_closed = true;
                Inetd::echo(true, conn);
            }
            Session::Active(a) => {
                Inetd::active_read(a, conn);
                if a.checked == a.total {
                    ACTIVE_OK.fetch_add(1, Ordering::Relaxed);
                } else {
                    fail_active(&format!(
                        "the echo ended after {} of {} bytes",
                        a.checked, a.total
                    ));
                }
            }
            _ => {
                let _ = conn.shutdown_write();
            }
        }
    }

    fn closed(&mut self, state: Session, why: Option<Error>) {
        if let Session::Active(a) = state {
            if let Some(e) = why {
                fail_active(&format!("{e} after {} of {} bytes", a.checked, a.total));
            } else if a.checked != a.total {
                fail_active(&format!("closed after {} of {} bytes", a.checked, a.total));
            }
        }
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
    let connections = args.connections;
    let cores = match args.queues {
        Some(q) => q as usize,
        None => match bypass_stack::host::InterfaceInfo::query(&args.iface) {
            Ok(info) => info.rx_queues as usize,
            Err(e) => {
                eprintln!("inetd: error: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    .max(1);
    let running = match Running::start_with(&config, Some(tcp), move |queue| {
        // Active opens are dealt out over the cores.
        let q = queue as usize;
        let mine = connections / cores + usize::from(q < connections % cores);
        EventApp::new(Inetd {
            echo_to: echo_to
                .filter(|_| mine > 0)
                .map(|remote| (remote, bytes, mine)),
            buf: vec![0; 64 * 1024],
        })
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
        if echo_to.is_some()
            && (ACTIVE.load(Ordering::Relaxed) != 0
                || ACTIVE_OK.load(Ordering::Relaxed) == connections)
        {
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
    let ok = ACTIVE_OK.load(Ordering::Relaxed);
    match (echo_to, ACTIVE.load(Ordering::Relaxed)) {
        (Some(remote), 0) if ok == connections => {
            eprintln!(
                "inetd: active open to {remote}: {connections} x {bytes} bytes echoed byte-exact"
            )
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
