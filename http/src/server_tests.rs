//! The HTTP application itself over the in-memory link, on virtual time:
//! its timeouts (header, idle, send, linger) and its refusals (408, 503),
//! deterministically, against a client written on the event API.

use std::{net::SocketAddrV4, time::Duration};

use bypass_stack::{
    api::events::{Conn, Core, Handler},
    driver::memlink::Faults,
    tcp::connection::Error,
    time::Instant,
};

use crate::testnet::{http_config, Net, SERVER_IP};

const PAGE: &[u8] = &[b'p'; 1000];

/// What one client connection does.
#[derive(Debug, Clone)]
struct Plan {
    /// Sent as soon as the connection is up.
    send: Vec<u8>,
    /// Read what arrives (or leave it in the receive buffer, so the
    /// window closes: a client that stopped reading).
    read: bool,
}

/// How a connection ended, seen from the client.
#[derive(Debug, Clone, Default)]
struct Outcome {
    got: Vec<u8>,
    /// When the server's FIN arrived.
    fin_at: Option<Instant>,
    /// When the connection ended, and why.
    closed_at: Option<Instant>,
    why: Option<Error>,
}

#[derive(Default)]
struct Clients {
    plans: Vec<Plan>,
    started: bool,
    outcomes: Vec<Outcome>,
    now: Instant,
}

struct ClientConn {
    id: usize,
    plan: Plan,
    sent: usize,
}

impl Clients {
    fn new(plans: Vec<Plan>) -> Clients {
        let outcomes = vec![Outcome::default(); plans.len()];
        Clients {
            plans,
            outcomes,
            ..Clients::default()
        }
    }

    fn pump(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        while state.sent < state.plan.send.len() {
            match conn.send(&state.plan.send[state.sent..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => state.sent += n,
            }
        }
        if state.plan.read {
            let (a, b) = conn.readable();
            let out = &mut self.outcomes[state.id].got;
            out.extend_from_slice(a);
            out.extend_from_slice(b);
            let n = a.len() + b.len();
            conn.consume(n);
        }
    }

    fn ended(&self) -> bool {
        self.outcomes.iter().all(|o| o.closed_at.is_some())
    }
}

impl Handler for Clients {
    type Conn = ClientConn;

    fn start(&mut self, _core: &mut Core<'_, ClientConn>) {}

    fn accepted(&mut self, _conn: &mut Conn<'_>) -> ClientConn {
        unreachable!("the client does not listen")
    }

    fn connected(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        conn.set_nagle(false);
        self.pump(state, conn);
    }

    fn readable(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        self.pump(state, conn);
    }

    fn writable(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        self.pump(state, conn);
    }

    fn peer_closed(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        self.pump(state, conn);
        self.outcomes[state.id].fin_at = Some(conn.now());
        // A reading client closes too; one that stopped reading does not.
        if state.plan.read {
            let _ = conn.shutdown_write();
        }
    }

    fn closed(&mut self, state: ClientConn, why: Option<Error>) {
        let outcome = &mut self.outcomes[state.id];
        outcome.closed_at = Some(self.now);
        outcome.why = why;
    }

    fn poll(&mut self, core: &mut Core<'_, ClientConn>) {
        self.now = core.now();
        if !self.started {
            self.started = true;
            for (id, plan) in self.plans.clone().into_iter().enumerate() {
                let state = ClientConn { id, plan, sent: 0 };
                core.connect(SocketAddrV4::new(SERVER_IP, 80), state)
                    .unwrap();
            }
        }
    }
}

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
}

fn secs(t: Option<Instant>) -> f64 {
    t.map_or(f64::NAN, |t| t.total_micros() as f64 / 1e6)
}

/// One client connection with `plan` against a server with `config`
/// serving the page, run until it ends or `limit` passes: how it ended,
/// and the server's counters.
fn one(
    config: crate::server::HttpConfig,
    plan: Plan,
    seed: u64,
    limit: Duration,
) -> (Outcome, crate::server::HttpCounters) {
    let mut net = Net::new(
        Faults::none(),
        seed,
        config,
        &[("index.html", PAGE)],
        Clients::new(vec![plan]),
    );
    net.run_until(limit, |c| c.handler().ended());
    let outcome = net.client_app.handler().outcomes[0].clone();
    (outcome, net.counters())
}

#[test]
fn an_unfinished_head_gets_408_after_the_header_timeout() {
    let mut config = http_config(None);
    config.header_timeout = Duration::from_secs(5);
    let plan = Plan {
        send: b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec(),
        read: true,
    };
    let (o, c) = one(config, plan, 1, Duration::from_secs(30));
    assert!(
        o.got.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&o.got)
    );
    // The sweep runs once a second: between 5 and 6.1 s.
    let fin = secs(o.fin_at);
    assert!((5.0..6.1).contains(&fin), "408 and FIN at {fin} s");
    assert_eq!((c.timeouts, c.by_class[4]), (1, 1), "{c}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let mut config = http_config(None);
    config.idle_timeout = Duration::from_secs(10);
    let plan = Plan {
        send: get("/", ""),
        read: true,
    };
    let (o, c) = one(config, plan, 2, Duration::from_secs(60));
    assert!(o.got.starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(
        o.got.windows(4).filter(|w| w == b"HTTP").count(),
        1,
        "no 408"
    );
    let fin = secs(o.fin_at);
    assert!((10.0..11.1).contains(&fin), "closed at {fin} s");
    assert_eq!(o.why, None, "a clean close, not a reset");
    assert_eq!(c.timeouts, 1);
}

#[test]
fn a_client_that_stops_reading_is_reset_after_the_send_timeout() {
    let mut config = http_config(None);
    config.send_timeout = Duration::from_secs(5);
    // 3000 pipelined requests for a 1000-byte page: far more than the
    // client's receive buffer and the server's send buffer hold.
    let plan = Plan {
        send: (0..3000).flat_map(|_| get("/", "")).collect(),
        read: false,
    };
    let (o, c) = one(config, plan, 3, Duration::from_secs(60));
    assert_eq!(o.why, Some(Error::Reset), "{o:?}");
    let closed = secs(o.closed_at);
    assert!((5.0..8.0).contains(&closed), "reset at {closed} s");
    assert_eq!(c.timeouts, 1);
}

#[test]
fn over_the_connection_limit_a_client_gets_503_and_a_close() {
    let mut config = http_config(None);
    config.max_connections = 1;
    let plans = vec![
        Plan {
            send: get("/", ""),
            read: true,
        },
        Plan {
            send: get("/", ""),
            read: true,
        },
    ];
    let mut net = Net::new(
        Faults::none(),
        4,
        config,
        &[("index.html", PAGE)],
        Clients::new(plans),
    );
    net.run_until(Duration::from_secs(5), |c| {
        c.handler().outcomes.iter().any(|o| o.fin_at.is_some())
    });
    let outcomes = net.client_app.handler().outcomes.clone();
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|o| o.got.starts_with(b"HTTP/1.1 503 "))
        .collect();
    assert_eq!(refused.len(), 1, "{outcomes:?}");
    let text = String::from_utf8_lossy(&refused[0].got);
    assert!(
        text.contains("\r\nRetry-After: 1\r\n") && text.contains("\r\nConnection: close\r\n"),
        "{text}"
    );
    assert!(refused[0].fin_at.is_some(), "and closed");
    let c = net.counters();
    assert_eq!((c.accepted, c.refused), (1, 1), "{c}");
}

#[test]
fn a_closing_connection_lingers_for_the_peer_then_resets() {
    // Connection: close: the server answers, sends its FIN, and reads (and
    // drops) what still comes until the client's FIN; a client that never
    // sends one is reset after the linger time (30 s).
    let plan = Plan {
        send: get("/", "Connection: close\r\n"),
        read: false,
    };
    let (o, c) = one(http_config(None), plan, 5, Duration::from_secs(90));
    assert_eq!(c.timeouts, 1, "the linger time counts as a timeout");
    assert!(o.fin_at.is_some(), "the server's FIN after the response");
    assert_eq!(o.why, Some(Error::Reset));
    // `closed` notes the time of the client's previous pass (its handler
    // learns the time in `poll`), up to 1 ms before the reset arrived.
    let closed = secs(o.closed_at);
    assert!((29.998..32.0).contains(&closed), "reset at {closed} s");
}
