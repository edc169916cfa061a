//! The HTTP/1.1 server as an application of the stack's per-core event API:
//! one instance per core, on the core's own thread, beside TCP; no handoff
//! to other threads and no locks.
//!
//! Per connection: received bytes are gathered into a head buffer (bounded
//! by the head limit; what does not fit stays in TCP's receive buffer, so
//! flow control holds back a client that pipelines too much), parsed
//! incrementally, and answered strictly in order (RFC 9112 §9.3.2): the
//! next request is parsed only once the previous response is entirely in
//! the send buffer. Bodies of cached files are copied from the shared
//! cache straight into the send buffer as room opens up. Head buffers come
//! from a per-core pool, so a request costs no allocation.
//!
//! Timeouts, as nginx has them: a client that opened a connection or
//! started a request has `header_timeout` to finish the head (then 408 and
//! close); an idle keep-alive connection is closed after `idle_timeout`.

use std::{
    os::unix::fs::FileExt,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bypass_stack::{
    api::events::{Conn, Core, Handler},
    tcp::connection::Error,
    time::Instant,
};
use rustls::ServerConfig;

use crate::{
    access_log::AccessLog,
    metrics::Metrics,
    reload::{Published, SharedSite, SiteHandle, Snapshot},
    request::{self, Limits, Method, Parsed, Version},
    response::{self, Body, DateCache, Response},
    rules::{HostNames, SiteRules},
    site::Site,
    tls::{Negotiated, TlsFailure, TlsStream, SUITES},
};

/// Settings shared by every core.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub ports: Vec<u16>,
    pub limits: Limits,
    /// Connections the server serves at once, all cores together; beyond
    /// it a new connection is answered 503 and closed.
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// A connection whose queued output makes no progress (nothing of it
    /// acknowledged) for this long is reset: a client that stopped reading.
    pub send_timeout: Duration,
    /// `--serve-dotfiles`: serve paths with a segment starting with '.'
    /// (hidden by default: `.env`, `.git/`).
    pub serve_dotfiles: bool,
    /// `--acme-webroot`: challenge files are read from here at request
    /// time (certbot writes each just before the CA asks for it).
    pub acme_webroot: Option<std::path::PathBuf>,
    /// `--acme-domain`: the http-01 answers the ACME thread puts up.
    pub acme: Option<Arc<crate::acme::Challenges>>,
    /// The default site's rules: redirects, fallback, error pages, headers,
    /// Cache-Control.
    pub rules: Arc<SiteRules>,
    /// HTTPS: the ports, the shared rustls configuration, and how long a
    /// handshake may take.
    pub tls: Option<TlsSettings>,
}

/// HTTPS settings shared by every core.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub ports: Vec<u16>,
    pub config: Arc<ServerConfig>,
    /// The certificates the configuration's resolver chooses from.
    pub certs: Arc<crate::tls::Certificates>,
    pub handshake_timeout: Duration,
    /// `--redirect-https`: plain requests get a 308 to HTTPS (but the ACME
    /// challenge path).
    pub redirect: bool,
    /// `--hsts SECONDS`.
    pub hsts: Option<u64>,
}

/// Where ACME http-01 challenges are (RFC 8555 §8.3).
const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

/// What a core counted, for the exit report and the stats line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpCounters {
    pub accepted: u64,
    pub refused: u64,
    pub requests: u64,
    /// Responses by status class: 1xx..5xx at index 1..5.
    pub by_class: [u64; 6],
    pub body_bytes: u64,
    pub timeouts: u64,
    pub resets: u64,
    /// TLS handshakes completed: full and resumed.
    pub tls_full: u64,
    pub tls_resumed: u64,
    /// Handshakes by version: TLS 1.2, TLS 1.3.
    pub tls12: u64,
    pub tls13: u64,
    /// Handshakes whose SNI no certificate covers (the default one went).
    pub tls_unknown_sni: u64,
    /// Handshakes by cipher suite, as [`SUITES`] orders them.
    pub tls_suites: [u64; SUITES.len()],
    /// TLS failures by reason, as [`TlsFailure::ALL`] orders them.
    pub tls_failures: [u64; TlsFailure::ALL.len()],
}

impl HttpCounters {
    fn handshake(&mut self, n: Negotiated) {
        if n.resumed {
            self.tls_resumed += 1;
        } else {
            self.tls_full += 1;
        }
        if n.tls13 {
            self.tls13 += 1;
        } else {
            self.tls12 += 1;
        }
        self.tls_suites[n.suite] += 1;
        if n.unknown_name {
            self.tls_unknown_sni += 1;
        }
    }

    fn tls_failed(&mut self, why: TlsFailure) {
        let i = TlsFailure::ALL.iter().position(|&f| f == why).unwrap_or(0);
        self.tls_failures[i] += 1;
    }

    pub fn accumulate(&mut self, o: &HttpCounters) {
        self.accepted += o.accepted;
        self.refused += o.refused;
        self.requests += o.requests;
        for (a, b) in self.by_class.iter_mut().zip(o.by_class) {
            *a += b;
        }
        self.body_bytes += o.body_bytes;
        self.timeouts += o.timeouts;
        self.resets += o.resets;
        self.tls_full += o.tls_full;
        self.tls_resumed += o.tls_resumed;
        self.tls12 += o.tls12;
        self.tls13 += o.tls13;
        self.tls_unknown_sni += o.tls_unknown_sni;
        for (a, b) in self.tls_suites.iter_mut().zip(o.tls_suites) {
            *a += b;
        }
        for (a, b) in self.tls_failures.iter_mut().zip(o.tls_failures) {
            *a += b;
        }
    }
}

impl std::fmt::Display for HttpCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "http_accepted={} http_refused={} http_requests={} http_2xx={} http_3xx={} http_4xx={} http_5xx={} http_body_bytes={} http_timeouts={} http_resets={}",
            self.accepted,
            self.refused,
            self.requests,
            self.by_class[2],
            self.by_class[3],
            self.by_class[4],
            self.by_class[5],
            self.body_bytes,
            self.timeouts,
            self.resets
        )?;
        if self.tls_full + self.tls_resumed + self.tls_failures.iter().sum::<u64>() > 0 {
            write!(
                f,
                " tls_handshakes={} tls_resumed={} tls12={} tls13={} tls_unknown_sni={}",
                self.tls_full + self.tls_resumed,
                self.tls_resumed,
                self.tls12,
                self.tls13,
                self.tls_unknown_sni
            )?;
            for (name, n) in SUITES.iter().zip(self.tls_suites) {
                if n > 0 {
                    write!(f, " {name}={n}")?;
                }
            }
            for (why, n) in TlsFailure::ALL.iter().zip(self.tls_failures) {
                if n > 0 {
                    write!(f, " tls_failed_{}={n}", why.name())?;
                }
            }
        }
        Ok(())
    }
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests and answering them.
    Serving,
    /// Our last response is queued and our FIN follows; incoming bytes are
    /// read and dropped until the peer closes (a lingering close, so a
    /// client still sending does not get a RST that could destroy the
    /// response in its receive buffer), for at most `LINGER`.
    Closing,
}

/// One connection: its HTTP exchange, and its TLS session on an HTTPS
/// port.
pub struct HttpConn {
    x: Exchange,
    tls: Option<Box<TlsStream>>,
}

/// The byte stream HTTP reads requests from and writes responses to: the
/// TCP connection itself, or TLS over it.
struct Stream<'s, 'c, 'd> {
    tls: Option<&'s mut TlsStream>,
    conn: &'c mut Conn<'d>,
}

impl Stream<'_, '_, '_> {
    fn now(&self) -> Instant {
        self.conn.now()
    }

    fn peer(&self) -> std::net::SocketAddrV4 {
        self.conn.peer()
    }

    /// Request bytes that have arrived (decrypted, for TLS).
    fn readable(&mut self) -> &[u8] {
        match self.tls.as_deref_mut() {
            Some(tls) => {
                tls.pull(self.conn);
                tls.readable()
            }
            None => self.conn.readable().0,
        }
    }

    fn consume(&mut self, n: usize) {
        match self.tls.as_deref_mut() {
            Some(tls) => tls.consume(n),
            None => {
                self.conn.consume(n);
            }
        }
    }

    fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        match self.tls.as_deref_mut() {
            Some(tls) => Ok(tls.send(self.conn, data)),
            None => self.conn.send(data),
        }
    }

    /// `write` fills room in the send buffer (for TLS, a scratch buffer
    /// that is then encrypted into it) and says how much it wrote.
    fn send_with(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, Error> {
        match self.tls.as_deref_mut() {
            Some(tls) => {
                let room = tls.send_capacity(self.conn).min(SCRATCH);
                SCRATCH_BUF.with_borrow_mut(|buf| {
                    buf.resize(SCRATCH, 0);
                    let n = write(&mut buf[..room]).min(room);
                    let sent = tls.send(self.conn, &buf[..n]);
                    debug_assert_eq!(sent, n, "send_capacity promised the room");
                    Ok(sent)
                })
            }
            None => self.conn.send_with(write),
        }
    }

    fn send_capacity(&self) -> usize {
        match self.tls.as_deref() {
            Some(tls) => tls.send_capacity(self.conn),
            None => self.conn.send_capacity(),
        }
    }

    /// Ends our side: close_notify first for TLS, then TCP's FIN.
    fn shutdown_write(&mut self) {
        match self.tls.as_deref_mut() {
            Some(tls) => tls.close(self.conn),
            None => {
                let _ = self.conn.shutdown_write();
            }
        }
    }

    fn abort(&mut self) {
        self.conn.abort();
    }
}

/// An ACME http-01 token file, read now (it may have been written a moment
/// ago): 200 with its bytes, or 404. Tokens are base64url (RFC 8555 §8.3),
/// so nothing else can name a file.
fn acme_token(root: &std::path::Path, token: &str) -> Response<'static> {
    let valid = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Response::short(404);
    }
    let path = root.join(".well-known/acme-challenge").join(token);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() <= 4096 => response::text(
            200,
            "application/octet-stream",
            String::from_utf8_lossy(&bytes).into_owned(),
        ),
        _ => Response::short(404),
    }
}

/// Scratch space for a file read that TLS then encrypts.
const SCRATCH: usize = 64 * 1024;
thread_local! {
    static SCRATCH_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How far a head has been looked at, so that a head arriving a byte at a
/// time costs one look at each byte, not one parse per byte: the parser
/// runs only when its answer can have changed (the request line ended, a
/// line ended that may end the head, or a limit was reached).
#[derive(Debug, Default, Clone, Copy)]
struct HeadScan {
    /// Bytes of the head already looked at.
    scanned: usize,
    /// A line feed was seen (the request line is complete, or malformed).
    seen_lf: bool,
}

impl HeadScan {
    fn worth_parsing(&mut self, head: &[u8], limits: &Limits) -> bool {
        let from = self.scanned.min(head.len());
        // Two bytes back: "\n\r\n" or "\n\n" may straddle the previous look.
        let window = &head[from.saturating_sub(2)..];
        self.scanned = head.len();
        let first_lf = !self.seen_lf && window.contains(&b'\n');
        self.seen_lf |= first_lf;
        let blank_line =
            window.windows(2).any(|w| w == b"\n\n") || window.windows(3).any(|w| w == b"\n\r\n");
        let over =
            head.len() >= limits.head_bytes || (!self.seen_lf && head.len() > limits.request_line);
        first_lf || blank_line || over
    }
}

/// One connection's HTTP state.
pub struct Exchange {
    head: Vec<u8>,
    /// Body bytes of the current request still to skip.
    discard: u64,
    /// The response body being queued, and how much of it is queued.
    body: Option<(Body, u64)>,
    /// Close once the current response is queued.
    close_after: bool,
    /// The peer sent FIN: answer what is complete, then close.
    peer_fin: bool,
    phase: Phase,
    /// Start of the current wait: for a head (header timeout), between
    /// requests (idle timeout), for send progress, or for the peer's FIN.
    since: Instant,
    /// Part of a head has arrived and more is awaited.
    mid_request: bool,
    /// No longer counted against `--max-connections` (the server is done
    /// with it; TIME-WAIT or the final handshake may still follow).
    released: bool,
    scan: HeadScan,
    /// Output queued and not yet acknowledged, and since when it has been
    /// that (for the send timeout).
    out: (usize, Instant),
}

/// The per-core server.
pub struct HttpServer {
    /// The site, switched to a reloaded one between events.
    site: SiteHandle,
    /// Virtual hosts, chosen by the request's Host before the default site.
    vhosts: Vec<(HostNames, SiteHandle, Arc<SiteRules>)>,
    /// The settings, switched to reloaded ones (SIGHUP) between events.
    config: Snapshot<HttpConfig>,
    /// Connections open on every core (touched on accept and close only).
    open: Arc<AtomicUsize>,
    /// Where the counters go when the core stops.
    report: Arc<Mutex<HttpCounters>>,
    /// Where the counters are published while running, and the metrics
    /// page.
    metrics: Arc<Metrics>,
    /// This core's index, for its metrics.
    core: usize,
    access_log: Option<AccessLog>,
    date: DateCache,
    /// Reusable response head.
    scratch: Vec<u8>,
    /// Free send-buffer space needed before a request is answered: room for
    /// any head this server writes (a redirect's Location repeats the
    /// target, up to the request-line limit).
    head_room: usize,
    /// Head buffers of closed connections.
    pool: Vec<Vec<u8>>,
    pub counters: HttpCounters,
    /// When timeouts were last swept.
    swept: Instant,
    /// Stop accepting and close after the current responses.
    stopping: bool,
}

/// What every core's server shares: the site, the settings, the count of
/// open connections, and where counters go.
#[derive(Clone)]
pub struct Shared {
    pub site: Arc<SharedSite>,
    pub config: Arc<Published<HttpConfig>>,
    pub vhosts: Vec<VirtualHost>,
    /// Connections open on every core (touched on accept and close only).
    pub open: Arc<AtomicUsize>,
    /// Where the counters go when a core stops.
    pub report: Arc<Mutex<HttpCounters>>,
    /// Where the counters are published while running, and the metrics
    /// page.
    pub metrics: Arc<Metrics>,
}

/// Free send-buffer space needed before a request is answered: room for
/// any head this server writes (a redirect's Location repeats the target,
/// up to the request-line limit).
fn head_room(config: &HttpConfig) -> usize {
    config.limits.request_line + 2048
}

/// A site chosen by the request's Host (`--site`, `[[site]]`).
#[derive(Clone)]
pub struct VirtualHost {
    pub names: HostNames,
    pub site: Arc<SharedSite>,
    pub rules: Arc<SiteRules>,
}

/// Head buffers kept for reuse per core.
const POOL: usize = 1024;
/// How long a lingering close waits for the peer's FIN.
const LINGER: Duration = Duration::from_secs(30);

impl HttpServer {
    /// One core's server; `access_log` is this core's own handle.
    pub fn new(shared: &Shared, core: usize, access_log: Option<AccessLog>) -> Self {
        let Shared {
            site,
            config,
            vhosts,
            open,
            report,
            metrics,
        } = shared.clone();
        let site = SiteHandle::new(site);
        let vhosts = vhosts
            .into_iter()
            .map(|v| (v.names, SiteHandle::new(v.site), v.rules))
            .collect();
        let config = Snapshot::new(config);
        let head_room = head_room(config.get());
        HttpServer {
            site,
            vhosts,
            config,
            open,
            report,
            metrics,
            core,
            access_log,
            date: DateCache::new(),
            scratch: Vec::with_capacity(head_room),
            head_room,
            pool: Vec::new(),
            counters: HttpCounters::default(),
            swept: Instant::ZERO,
            stopping: false,
        }
    }

    /// The server is done with a connection: it no longer counts against
    /// the limit.
    fn release(&mut self, state: &mut Exchange) {
        if !state.released {
            state.released = true;
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Sends our FIN after what is queued and starts the lingering close.
    fn start_closing(&mut self, state: &mut Exchange, conn: &mut Stream<'_, '_, '_>) {
        if state.phase != Phase::Closing {
            state.phase = Phase::Closing;
            state.since = conn.now();
            conn.shutdown_write();
        }
        if state.peer_fin {
            self.release(state);
        }
    }

    /// Queues a response's head (the caller made sure `head_room` is free)
    /// and as much of its body as fits.
    fn start_response(
        &mut self,
        state: &mut Exchange,
        conn: &mut Stream<'_, '_, '_>,
        mut r: Response<'_>,
    ) {
        if conn.tls.is_some() {
            r.hsts = self.config.get().tls.as_ref().and_then(|t| t.hsts);
        }
        self.counters.by_class[usize::from(r.status / 100).min(5)] += 1;
        r.write_head(self.date.get(), &mut self.scratch);
        debug_assert!(self.scratch.len() <= self.head_room);
        let _ = conn.send(&self.scratch);
        if r.close {
            state.close_after = true;
        }
        if r.send_body && r.body.len() > 0 {
            state.body = Some((r.body, 0));
        }
        state.since = conn.now();
        self.pump_body(state, conn);
    }

    /// Moves the current body into the send buffer; once it is all there,
    /// closes if asked to.
    fn pump_body(&mut self, state: &mut Exchange, conn: &mut Stream<'_, '_, '_>) {
        if let Some((body, at)) = state.body.as_mut() {
            while *at < body.len() {
                let sent = match body.from(*at) {
                    Some(rest) => conn.send(rest),
                    // A streamed file: read straight into the send buffer
                    // (pread: one copy, page cache to send buffer).
                    None => {
                        let Body::File(file, range) = &*body else {
                            unreachable!("only files are not in memory")
                        };
                        let offset = range.start + *at;
                        let want = (range.end - offset).min(usize::MAX as u64) as usize;
                        let mut failed = false;
                        let sent = conn.send_with(|room| {
                            let take = room.len().min(want);
                            let room = &mut room[..take];
                            match file.file.read_at(room, offset) {
                                Ok(n) if n > 0 || room.is_empty() => n,
                                _ => {
                                    failed = true;
                                    0
                                }
                            }
                        });
                        if failed {
                            // The file shrank or broke under us: the promised
                            // length cannot be kept, so the connection goes.
                            tracing::warn!(
                                "streamed file ended early or failed; resetting the connection"
                            );
                            conn.abort();
                            state.body = None;
                            return;
                        }
                        sent
                    }
                };
                match sent {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        *at += n as u64;
                        self.counters.body_bytes += n as u64;
                        state.since = conn.now();
                    }
                }
            }
            state.body = None;
            // The idle wait starts once the response is all queued.
            state.since = conn.now();
        }
        if state.close_after {
            self.start_closing(state, conn);
        }
    }

    /// Reads and answers requests while the previous answer is fully
    /// queued and there is room for the next head; closes once the peer
    /// has closed and every complete request was answered.
    fn serve(&mut self, state: &mut Exchange, conn: &mut Stream<'_, '_, '_>) {
        loop {
            if state.phase == Phase::Closing {
                // Drain and drop: the peer's FIN ends it.
                loop {
                    let a = conn.readable();
                    let n = a.len();
                    if n == 0 {
                        break;
                    }
                    conn.consume(n);
                }
                return;
            }
            if state.body.is_some() || conn.send_capacity() < self.head_room {
                return; // `writable` comes back here
            }
            // Skip the body of the previous request.
            while state.discard > 0 {
                let a = conn.readable();
                let n = (a.len() as u64).min(state.discard) as usize;
                if n == 0 {
                    break;
                }
                conn.consume(n);
                state.discard -= n as u64;
            }
            if state.discard > 0 {
                if state.peer_fin {
                    self.start_closing(state, conn);
                }
                return;
            }
            // Gather what fits of the next head.
            let cap = self.config.get().limits.head_bytes + 1;
            loop {
                let room = cap.saturating_sub(state.head.len());
                let a = conn.readable();
                let n = a.len().min(room);
                if n == 0 {
                    break;
                }
                state.head.extend_from_slice(&a[..n]);
                conn.consume(n);
            }
            if state.head.is_empty() {
                if state.peer_fin {
                    self.start_closing(state, conn);
                }
                return;
            }
            let limits = &self.config.get().limits;
            let parsed = if state.scan.worth_parsing(&state.head, limits) {
                request::parse(&state.head, limits)
            } else {
                Parsed::Partial
            };
            match parsed {
                Parsed::Partial => {
                    if !state.mid_request {
                        state.mid_request = true;
                        state.since = conn.now();
                    }
                    if state.peer_fin {
                        // The head will never be finished.
                        self.start_closing(state, conn);
                    }
                    return;
                }
                Parsed::Reject(r) => {
                    self.counters.requests += 1;
                    state.head.clear();
                    state.scan = HeadScan::default();
                    if let Some(log) = self.access_log.as_mut() {
                        let body = Response::rejected(r).body.len();
                        log.record(*conn.peer().ip(), ("-", "", ""), r.status(), body);
                    }
                    state.mid_request = false;
                    self.start_response(state, conn, Response::rejected(r));
                    // Go round: the Closing branch drains what follows.
                }
                Parsed::Complete(req, used) => {
                    self.counters.requests += 1;
                    tracing::debug!(
                        peer = %conn.peer(),
                        method = req.method_token,
                        target = req.target,
                        version = ?req.version,
                        "request"
                    );
                    let body_len = req.body_len;
                    // The response borrows the site, not the request, so
                    // the head buffer is free to move on.
                    let (site, rules) = self.site_for(req.host);
                    let dotfiles = self.config.get().serve_dotfiles;
                    let metrics = self.metrics.clone();
                    let path = req.target.split(['?', '#']).next().unwrap_or("");
                    let mut r = if req.method != Method::NotAllowed
                        && metrics.serves(req.target, *conn.peer().ip())
                    {
                        let page = metrics.render();
                        response::finish(
                            &req,
                            response::text(200, "text/plain; version=0.0.4; charset=utf-8", page),
                        )
                    } else if let Some(special) = conn
                        .tls
                        .is_none()
                        .then(|| self.plain_special(&req))
                        .flatten()
                    {
                        special
                    } else if let Some(to) = rules.redirect(path) {
                        response::finish(
                            &req,
                            Response {
                                location: Some(to.to.clone()),
                                ..Response::short(to.status)
                            },
                        )
                    } else {
                        let mut r = response::respond_with(&req, &site, dotfiles);
                        // try_files $uri /index.html: a path the site does
                        // not have is answered with the fallback page.
                        if let (404, Some(fallback)) = (r.status, rules.fallback.as_deref()) {
                            if req.method != Method::NotAllowed {
                                let mut alternative = req;
                                alternative.target = fallback;
                                r = response::respond_with(&alternative, &site, dotfiles);
                            }
                        }
                        r
                    };
                    response::with_error_page(&mut r, &req, &site, rules.as_ref());
                    r.cache_control = rules.cache_control(path);
                    r.extra_headers = &rules.headers;
                    // A streamed file is read as the response goes out; one
                    // rewritten on disk since it was loaded (truncated,
                    // grown, overwritten) could keep neither the promised
                    // length nor its validators: 500 now rather than a
                    // truncated or mixed body (a reload picks up the new
                    // file; a rename into place leaves the open one intact).
                    if let Body::File(file, _) = &r.body {
                        if r.send_body && !file.unchanged() {
                            tracing::warn!(
                                target = req.target,
                                "streamed file changed on disk since it was loaded: 500"
                            );
                            r = response::finish(
                                &req,
                                Response {
                                    close: true,
                                    ..Response::short(500)
                                },
                            );
                        }
                    }
                    if self.stopping {
                        r.close = true;
                        r.keep_alive = false;
                    }
                    if let Some(log) = self.access_log.as_mut() {
                        let version = match req.version {
                            Version::Http10 => "HTTP/1.0",
                            Version::Http11 => "HTTP/1.1",
                        };
                        let sent = if r.send_body { r.body.len() } else { 0 };
                        log.record_with(
                            *conn.peer().ip(),
                            (req.method_token, req.target, version),
                            r.status,
                            sent,
                            req.referer,
                            req.user_agent,
                        );
                    }
                    // A client waiting for 100 Continue before its body
                    // (RFC 9110 §10.1.1) hears it first, so the body it
                    // then sends (and we discard) keeps the connection's
                    // framing, instead of it deciding to send no body.
                    let buffered_body = (state.head.len() - used) as u64;
                    if req.expect_continue && body_len > buffered_body && !r.close {
                        let _ = conn.send(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    // The request is done with; its body may already be in
                    // the head buffer.
                    state.head.drain(..used);
                    state.scan = HeadScan::default();
                    let buffered = (state.head.len() as u64).min(body_len);
                    state.head.drain(..buffered as usize);
                    state.discard = body_len - buffered;
                    state.mid_request = false;
                    self.start_response(state, conn, r);
                }
            }
        }
    }

    /// The site and rules for a request's Host: the first virtual host
    /// that names it, else the default site.
    fn site_for(&self, host: Option<&str>) -> (Arc<Site>, Arc<SiteRules>) {
        if let Some(host) = host {
            if let Some((_, site, rules)) = self.vhosts.iter().find(|(n, _, _)| n.matches(host)) {
                return (site.get().clone(), rules.clone());
            }
        }
        (self.site.get().clone(), self.config.get().rules.clone())
    }

    /// What the plain ports answer before the site: ACME http-01 tokens
    /// from `--acme-webroot`, and with `--redirect-https` a 308 to the same
    /// URL on HTTPS for everything else.
    fn plain_special(&self, req: &request::Request<'_>) -> Option<Response<'static>> {
        let target = req.target;
        if let Some(token) = target.strip_prefix(ACME_CHALLENGE) {
            let answer = self
                .config
                .get()
                .acme
                .as_ref()
                .and_then(|c| c.http_answer(token));
            if let Some(key_authorization) = answer {
                // RFC 8555 §8.3: the key authorization, as the body.
                return Some(response::finish(
                    req,
                    response::text(200, "application/octet-stream", key_authorization),
                ));
            }
            if let Some(root) = &self.config.get().acme_webroot {
                return Some(response::finish(req, acme_token(root, token)));
            }
            return None;
        }
        let tls = self.config.get().tls.as_ref().filter(|t| t.redirect)?;
        if req.method == Method::NotAllowed {
            return None;
        }
        let host = req.host.filter(|h| !h.is_empty())?;
        // The host without its port (a bracketed IPv6 literal keeps its
        // brackets), then the HTTPS port unless it is the default.
        let name = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        };
        let port = tls.ports.first().copied().unwrap_or(443);
        let location = if port == 443 {
            format!("https://{name}{target}")
        } else {
            format!("https://{name}:{port}{target}")
        };
        Some(response::finish(
            req,
            Response {
                location: Some(location),
                ..Response::short(308)
            },
        ))
    }

    /// Ends connections past a timeout: 408 for a head not finished in
    /// `header_timeout`, a close for a keep-alive connection idle for
    /// `idle_timeout`, a reset for a lingering close past `LINGER` or for
    /// output stuck for `send_timeout`. Once a second, over the table.
    fn sweep(&mut self, core: &mut Core<'_, HttpConn>) {
        let now = core.now();
        if now.saturating_duration_since(self.swept) < Duration::from_secs(1) {
            return;
        }
        self.swept = now;
        let (header, idle) = (
            self.config.get().header_timeout,
            self.config.get().idle_timeout,
        );
        let handshake = self.config.get().tls.as_ref().map(|t| t.handshake_timeout);
        let (mut timed_out, mut answered, mut released, mut slow_handshakes) = (0, 0, 0, 0);
        let date = self.date.get().to_owned();
        let (scratch, head_room) = (&mut self.scratch, self.head_room);
        let mut log = self.access_log.as_mut();
        let send_timeout = self.config.get().send_timeout;
        core.for_each(|both, conn| {
            let HttpConn { x: state, tls } = both;
            let waited = now.saturating_duration_since(state.since);
            // Output that the peer does not take: any change in what is
            // queued (acknowledged bytes leave it, new responses join it)
            // is progress; none for `send_timeout` ends the connection,
            // whatever the response (a body, pipelined heads, an error).
            let queued = conn.send_queued();
            if queued == 0 || queued != state.out.0 {
                state.out = (queued, now);
            } else if now.saturating_duration_since(state.out.1) >= send_timeout {
                timed_out += 1;
                conn.abort();
                return;
            }
            if let (Some(tls), Some(limit)) = (tls.as_deref_mut(), handshake) {
                if tls.is_handshaking() && tls.failed().is_none() && waited >= limit {
                    // A client that cannot finish a handshake in time holds
                    // no connection longer (RFC 8446 leaves it to us).
                    tls.time_out();
                    slow_handshakes += 1;
                    conn.abort();
                    return;
                }
            }
            let mut conn = Stream {
                tls: tls.as_deref_mut(),
                conn,
            };
            let expired = match state.phase {
                Phase::Closing => waited >= LINGER,
                Phase::Serving => false,
            };
            if expired {
                timed_out += 1;
                conn.abort();
                return;
            }
            if state.phase == Phase::Closing || state.body.is_some() {
                return;
            }
            if state.mid_request && waited >= header {
                // RFC 9110 §15.5.9: 408, then close.
                timed_out += 1;
                if conn.send_capacity() >= head_room {
                    let r = Response {
                        close: true,
                        ..Response::short(408)
                    };
                    r.write_head(&date, scratch);
                    let _ = conn.send(scratch);
                    if let Body::Static(b) = r.body {
                        let _ = conn.send(b);
                    }
                    answered += 1;
                    if let Some(log) = log.as_deref_mut() {
                        log.record(*conn.peer().ip(), ("-", "", ""), 408, r.body.len());
                    }
                }
                state.phase = Phase::Closing;
                state.since = now;
                conn.shutdown_write();
            } else if !state.mid_request && conn.readable().is_empty() && waited >= idle {
                timed_out += 1;
                state.phase = Phase::Closing;
                state.since = now;
                conn.shutdown_write();
                if state.peer_fin && !state.released {
                    state.released = true;
                    released += 1;
                }
            }
        });
        self.open.fetch_sub(released, Ordering::Relaxed);
        self.counters.timeouts += timed_out + slow_handshakes;
        for _ in 0..slow_handshakes {
            self.counters.tls_failed(TlsFailure::Timeout);
        }
        self.counters.by_class[4] += answered;
        self.metrics.publish_http(self.core, &self.counters);
        if let Some(log) = self.access_log.as_mut() {
            log.flush();
        }
    }
}

impl HttpServer {
    /// After TLS has read what arrived: counts a handshake that just
    /// finished or a failure, and turns the peer's close_notify or a failed
    /// session into the end of the exchange.
    fn after_tls(&mut self, state: &mut Exchange, tls: &mut TlsStream) {
        if tls.newly_established() {
            let config = self.config.get().clone();
            if let Some(certs) = config.tls.as_ref().map(|t| &t.certs) {
                if let Some(n) = tls.take_established(certs) {
                    self.counters.handshake(n);
                    if n.acme_validation {
                        state.phase = Phase::Closing;
                        state.since = self.swept.max(state.since);
                        state.peer_fin = true;
                        self.release(state);
                    }
                }
            }
        }
        if let Some(why) = tls.failed() {
            if state.phase != Phase::Closing {
                self.counters.tls_failed(why);
                tracing::debug!(reason = why.name(), "TLS failed");
                state.phase = Phase::Closing;
                state.since = self.swept.max(state.since);
                state.peer_fin = true;
                self.release(state);
            }
        } else if tls.at_eof() {
            state.peer_fin = true;
        }
    }

    /// Handles new input on a connection, TLS first where there is TLS.
    fn on_input(&mut self, both: &mut HttpConn, conn: &mut Conn<'_>) {
        let HttpConn { x: state, tls } = both;
        if let Some(tls) = tls.as_deref_mut() {
            tls.pull(conn);
            self.after_tls(state, tls);
            if tls.failed().is_some() {
                return;
            }
        }
        let peer_fin = state.peer_fin;
        let mut stream = Stream {
            tls: tls.as_deref_mut(),
            conn,
        };
        self.serve(state, &mut stream);
        if peer_fin && state.phase == Phase::Closing {
            self.release(state);
        }
    }
}

impl Handler for HttpServer {
    type Conn = HttpConn;

    fn start(&mut self, core: &mut Core<'_, HttpConn>) {
        let tls_ports = self.config.get().tls.as_ref().map(|t| t.ports.clone());
        for port in self
            .config
            .get()
            .ports
            .iter()
            .chain(tls_ports.iter().flatten())
        {
            if let Err(e) = core.listen(*port) {
                tracing::error!("cannot listen on port {port}: {e}");
            }
        }
        self.swept = core.now();
    }

    fn accepted(&mut self, conn: &mut Conn<'_>) -> HttpConn {
        conn.set_nagle(false);
        let mut state = Exchange {
            head: self.pool.pop().unwrap_or_default(),
            discard: 0,
            body: None,
            close_after: false,
            peer_fin: false,
            phase: Phase::Serving,
            since: conn.now(),
            mid_request: false,
            released: false,
            scan: HeadScan::default(),
            out: (0, conn.now()),
        };
        state.head.clear();
        let port = conn.local().port();
        let tls = match &self.config.get().tls {
            Some(t) if t.ports.contains(&port) => match TlsStream::new(&t.config) {
                Ok(tls) => Some(Box::new(tls)),
                Err(e) => {
                    tracing::error!("TLS session: {e}");
                    conn.abort();
                    None
                }
            },
            _ => None,
        };
        let over = self.open.fetch_add(1, Ordering::Relaxed) >= self.config.get().max_connections;
        if over {
            self.counters.refused += 1;
        } else {
            self.counters.accepted += 1;
        }
        let mut both = HttpConn { x: state, tls };
        if over {
            let HttpConn { x: state, tls } = &mut both;
            let mut stream = Stream {
                tls: tls.as_deref_mut(),
                conn,
            };
            if stream.tls.is_some() {
                // No handshake for a connection we will not serve: its
                // FIN now (a 503 would wait for a whole handshake).
                state.phase = Phase::Closing;
                let _ = stream.conn.shutdown_write();
            } else {
                // Over the limit: a clean 503 rather than a silent drop.
                let r = Response {
                    close: true,
                    retry_after: true,
                    ..Response::short(503)
                };
                if let Some(log) = self.access_log.as_mut() {
                    log.record(*stream.peer().ip(), ("-", "", ""), 503, r.body.len());
                }
                self.start_response(state, &mut stream, r);
            }
        }
        both
    }

    fn readable(&mut self, state: &mut HttpConn, conn: &mut Conn<'_>) {
        self.on_input(state, conn);
    }

    fn writable(&mut self, both: &mut HttpConn, conn: &mut Conn<'_>) {
        let HttpConn { x: state, tls } = both;
        if let Some(tls) = tls.as_deref_mut() {
            // Records that did not fit before go first.
            tls.flush(conn);
            if tls.backlogged() {
                return;
            }
        }
        let mut stream = Stream {
            tls: tls.as_deref_mut(),
            conn,
        };
        self.pump_body(state, &mut stream);
        self.serve(state, &mut stream);
    }

    fn peer_closed(&mut self, both: &mut HttpConn, conn: &mut Conn<'_>) {
        if let Some(tls) = both.tls.as_deref() {
            if tls.is_handshaking() && tls.failed().is_none() && both.x.phase != Phase::Closing {
                self.counters.tls_failed(TlsFailure::PeerClosed);
                both.x.phase = Phase::Closing;
            }
        }
        // Answer every request that arrived complete, then close.
        both.x.peer_fin = true;
        self.on_input(both, conn);
        if both.x.phase == Phase::Closing {
            self.release(&mut both.x);
        }
    }

    fn closed(&mut self, both: HttpConn, why: Option<Error>) {
        let HttpConn { x: mut state, tls } = both;
        if let Some(tls) = tls {
            if tls.is_handshaking() && tls.failed().is_none() && state.phase != Phase::Closing {
                // Reset (or timed out by TCP) in the middle of a handshake.
                self.counters.tls_failed(TlsFailure::PeerClosed);
            }
        }
        self.release(&mut state);
        if why.is_some() {
            self.counters.resets += 1;
        }
        if self.pool.len() < POOL {
            self.pool.push(state.head);
        }
    }

    fn poll(&mut self, core: &mut Core<'_, HttpConn>) {
        if self.site.refresh() {
            tracing::debug!(core = self.core, "serving the reloaded site");
        }
        for (_, site, _) in &mut self.vhosts {
            site.refresh();
        }
        if self.config.refresh() {
            // New limits, timeouts, certificates: for requests from now on
            // (a TLS session keeps the configuration it started with).
            self.head_room = head_room(self.config.get());
            tracing::debug!(core = self.core, "using the reloaded settings");
        }
        self.sweep(core);
    }

    fn shutdown(&mut self, core: &mut Core<'_, HttpConn>) {
        // Stop accepting; idle connections close now, busy ones after
        // their current response (the runtime's grace period bounds it).
        self.stopping = true;
        core.unlisten_all();
        core.for_each(|both, conn| {
            let HttpConn { x: state, tls } = both;
            if state.body.is_none() && !state.mid_request && state.phase != Phase::Closing {
                state.phase = Phase::Closing;
                state.since = conn.now();
                Stream {
                    tls: tls.as_deref_mut(),
                    conn,
                }
                .shutdown_write();
            } else {
                state.close_after = true;
            }
        });
    }
}

impl Drop for HttpServer {
    /// Hands the core's counters to the exit report.
    fn drop(&mut self) {
        self.metrics.publish_http(self.core, &self.counters);
        if let Ok(mut total) = self.report.lock() {
            total.accumulate(&self.counters);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_sent_a_byte_at_a_time_is_parsed_a_few_times_not_per_byte() {
        let limits = Limits {
            request_line: 8192,
            header_count: 100,
            head_bytes: 16384,
            body_bytes: 0,
        };
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..90 {
            head.extend_from_slice(format!("X-Field-{i}: {}\r\n", "v".repeat(150)).as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let mut scan = HeadScan::default();
        let mut buf = Vec::new();
        let mut parses = Vec::new();
        for (i, &b) in head.iter().enumerate() {
            buf.push(b);
            if scan.worth_parsing(&buf, &limits) {
                parses.push(i);
            }
        }
        // Once when the request line ends, once when the head does.
        assert_eq!(parses, vec![15, head.len() - 1]);
        assert!(matches!(
            request::parse(&buf, &limits),
            Parsed::Complete(..)
        ));
    }

    #[test]
    fn the_scan_still_parses_what_must_be_refused_early() {
        let limits = Limits {
            request_line: 64,
            header_count: 100,
            head_bytes: 256,
            body_bytes: 0,
        };
        // A bare LF: parsed at once (400), not left to the timeout.
        let mut scan = HeadScan::default();
        assert!(scan.worth_parsing(b"GET / HTTP/1.1\nHost: x\n", &limits));
        // A request line past its limit with no end in sight (414).
        let mut scan = HeadScan::default();
        assert!(!scan.worth_parsing(&[b'a'; 64], &limits));
        assert!(scan.worth_parsing(&[b'a'; 65], &limits));
        // A head at its limit (431).
        let mut scan = HeadScan::default();
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        assert!(scan.worth_parsing(&head, &limits));
        head.resize(255, b'x');
        assert!(!scan.worth_parsing(&head, &limits));
        head.push(b'x');
        assert!(scan.worth_parsing(&head, &limits));
        // An end of head split across two reads.
        let mut scan = HeadScan::default();
        assert!(scan.worth_parsing(b"GET / HTTP/1.1\r\nHost: x\r", &limits));
        assert!(!scan.worth_parsing(b"GET / HTTP/1.1\r\nHost: x\r\n", &limits));
        assert!(scan.worth_parsing(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &limits));
    }
}
