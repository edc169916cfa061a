//! The test bench for the HTTP server: the whole server (the stack's
//! engine and the per-core HTTP application) on one engine, a client
//! application on another, joined by the in-memory link with seeded
//! faults, on virtual time. Tests write the client as an event-API
//! handler and read the server's counters at the end.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bypass_stack::{
    api::events::{EventApp, Handler},
    driver::memlink::{Faults, MemLink, MemPort},
    iface::Interface,
    runtime::App,
    tcp::{config::TcpConfig, shard::ShardConfig},
    testkit,
    time::Instant,
};

use crate::{
    metrics::Metrics,
    reload::{Published, SharedSite},
    request::Limits,
    server::{HttpConfig, HttpCounters, HttpServer, Shared, TlsSettings},
    site::Site,
};

pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

/// A fresh directory under the system's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "bypass-net-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The server's settings as `bypass serve` has them by default, with
/// `tls` for HTTPS.
pub fn http_config(tls: Option<TlsSettings>) -> HttpConfig {
    HttpConfig {
        ports: vec![80],
        limits: Limits {
            request_line: 8192,
            header_count: 100,
            head_bytes: 16384,
            body_bytes: 65536,
        },
        max_connections: 100,
        header_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(75),
        send_timeout: Duration::from_secs(60),
        acme_webroot: None,
        acme: None,
        rules: Default::default(),
        serve_dotfiles: false,
        tls,
    }
}

pub struct Net<C: Handler> {
    link: MemLink,
    server: Interface,
    server_port: MemPort,
    server_app: EventApp<HttpServer>,
    client: Interface,
    client_port: MemPort,
    pub client_app: EventApp<C>,
    report: Arc<Mutex<HttpCounters>>,
    pub now: Instant,
    site: PathBuf,
}

impl<C: Handler> Net<C> {
    /// The server with `config`, serving `files` (name, bytes), and
    /// `client` on the other engine.
    pub fn new(
        faults: Faults,
        seed: u64,
        config: HttpConfig,
        files: &[(&str, &[u8])],
        handler: C,
    ) -> Net<C> {
        let site = temp_dir("site");
        for (name, bytes) in files {
            std::fs::write(site.join(name), bytes).unwrap();
        }
        let report = Arc::new(Mutex::new(HttpCounters::default()));
        let shared = Shared {
            site: SharedSite::new(Site::load(&site, 1 << 20).unwrap()),
            config: Published::new(config),
            vhosts: Vec::new(),
            open: Arc::new(AtomicUsize::new(0)),
            report: report.clone(),
            metrics: Arc::new(Metrics::new(None, Vec::new())),
        };
        let tcp = TcpConfig {
            time_wait: Duration::from_millis(200),
            ..TcpConfig::default()
        };
        let (link, client_port, server_port) = MemLink::new(faults, seed, 1514);
        let mut server =
            testkit::tcp_engine(SERVER_IP, 1, tcp.clone(), ShardConfig::default(), seed);
        let mut client = testkit::tcp_engine(CLIENT_IP, 2, tcp, ShardConfig::default(), !seed);
        let mut server_app = EventApp::new(HttpServer::new(&shared, 0, None));
        server_app.start(server.tcp_mut().unwrap(), Instant::ZERO);
        let mut client_app = EventApp::new(handler);
        client_app.start(client.tcp_mut().unwrap(), Instant::ZERO);
        Net {
            link,
            server,
            server_port,
            server_app,
            client,
            client_port,
            client_app,
            report,
            now: Instant::ZERO,
            site,
        }
    }

    /// Runs until `done` says so or virtual time passes `limit`; at least
    /// a pass every millisecond, so clients that act per pass and the
    /// server's once-a-second sweep both get their turns.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&EventApp<C>) -> bool) {
        let end = Instant::ZERO + limit;
        while self.now < end {
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
            if done(&self.client_app) {
                return;
            }
            let deadlines = [
                self.server.poll_at(self.now),
                self.client.poll_at(self.now),
                Some(self.now + Duration::from_millis(1)),
            ];
            testkit::advance(&self.link, &mut self.now, deadlines);
        }
    }

    /// The server's counters (published when its application goes).
    pub fn counters(self) -> HttpCounters {
        drop(self.server_app);
        let c = *self.report.lock().unwrap();
        let _ = std::fs::remove_dir_all(&self.site);
        c
    }
}
