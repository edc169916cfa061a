//! Observability while the server runs: every core's counters (HTTP and
//! the stack's) as Prometheus text on a configured path, served by the HTTP
//! server itself to configured source addresses only, and the totals for
//! the periodic stats log line.
//!
//! Cores publish their counters here once a second (one uncontended lock
//! per core per second); a metrics request renders whatever was published
//! last, so it never touches another core's live state.

use std::{
    fmt::Write,
    net::Ipv4Addr,
    sync::{Arc, Mutex, OnceLock},
};

use bypass_stack::{
    counters::{Counters, DropReason},
    runtime::LiveCounters,
};

use crate::server::HttpCounters;

/// Cores at most (the XDP program's queue limit).
const MAX_CORES: usize = 64;

/// An IPv4 prefix, for `--metrics-allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Prefix {
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        let mask = if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{len:?} is not a prefix length (0-32)"))?;
        Ok(Prefix { addr, len })
    }
}

/// One Prometheus metric family: its HELP and TYPE lines, then a sample
/// per `(labels, value)` row.
pub fn family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    rows: &mut dyn Iterator<Item = (String, V)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// What the cores publish and the metrics path serves.
pub struct Metrics {
    path: Option<String>,
    allow: Vec<Prefix>,
    http: Vec<Mutex<Option<HttpCounters>>>,
    stack: OnceLock<Arc<LiveCounters>>,
    acme: OnceLock<Arc<crate::acme::Status>>,
}

impl Metrics {
    /// `path`: where metrics are served (none: not served); `allow`: the
    /// source addresses that may read them.
    pub fn new(path: Option<String>, allow: Vec<Prefix>) -> Self {
        Metrics {
            path,
            allow,
            http: (0..MAX_CORES).map(|_| Mutex::new(None)).collect(),
            stack: OnceLock::new(),
            acme: OnceLock::new(),
        }
    }

    /// The ACME client's state, with `--acme-domain`.
    pub fn set_acme(&self, status: Arc<crate::acme::Status>) {
        let _ = self.acme.set(status);
    }

    /// The stack's counters, once it runs.
    pub fn set_stack(&self, live: Arc<LiveCounters>) {
        let _ = self.stack.set(live);
    }

    pub fn publish_http(&self, core: usize, counters: &HttpCounters) {
        if let Some(slot) = self.http.get(core) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(*counters);
        }
    }

    /// Whether `target` asks for the metrics and `peer` may have them
    /// (anyone else gets what the site has there: usually a 404).
    pub fn serves(&self, target: &str, peer: Ipv4Addr) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let asked = target.split(['?', '#']).next().unwrap_or("");
        asked == path && self.allow.iter().any(|p| p.contains(peer))
    }

    fn http_by_core(&self) -> Vec<(usize, HttpCounters)> {
        self.http
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.lock().unwrap_or_else(|e| e.into_inner()).map(|c| (i, c)))
            .collect()
    }

    /// HTTP counters, all cores added up.
    pub fn http_total(&self) -> HttpCounters {
        let mut t = HttpCounters::default();
        for (_, c) in self.http_by_core() {
            t.accumulate(&c);
        }
        t
    }

    /// Stack counters and TCP connections, all cores added up.
    pub fn stack_total(&self) -> (Counters, usize) {
        let mut t = Counters::default();
        let mut conns = 0;
        if let Some(live) = self.stack.get() {
            for c in live.snapshot() {
                t.accumulate(&c.counters);
                conns += c.connections;
            }
        }
        (t, conns)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let http = self.http_by_core();
        family(
            &mut out,
            "bypass_http_responses_total",
            "counter",
            "HTTP responses by status class.",
            &mut http.iter().flat_map(|(core, c)| {
                (1..=5).map(move |class| {
                    (
                        format!("core=\"{core}\",class=\"{class}xx\""),
                        c.by_class[class],
                    )
                })
            }),
        );
        family(
            &mut out,
            "bypass_tls_handshakes_total",
            "counter",
            "TLS handshakes completed, by kind (full, resumed), version and cipher suite.",
            &mut http.iter().flat_map(|(core, c)| {
                let core = *core;
                [
                    (format!("core=\"{core}\",kind=\"full\""), c.tls_full),
                    (format!("core=\"{core}\",kind=\"resumed\""), c.tls_resumed),
                    (format!("core=\"{core}\",version=\"1.2\""), c.tls12),
                    (format!("core=\"{core}\",version=\"1.3\""), c.tls13),
                    (
                        format!("core=\"{core}\",sni=\"unknown\""),
                        c.tls_unknown_sni,
                    ),
                ]
                .into_iter()
                .chain(
                    crate::tls::SUITES
                        .iter()
                        .zip(c.tls_suites)
                        .map(move |(s, n)| (format!("core=\"{core}\",suite=\"{s}\""), n)),
                )
            }),
        );
        family(
            &mut out,
            "bypass_tls_failures_total",
            "counter",
            "TLS connections that failed, by reason.",
            &mut http.iter().flat_map(|(core, c)| {
                let core = *core;
                crate::tls::TlsFailure::ALL
                    .iter()
                    .zip(c.tls_failures)
                    .map(move |(why, n)| (format!("core=\"{core}\",reason=\"{}\"", why.name()), n))
            }),
        );
        let per_core = |f: fn(&HttpCounters) -> u64| {
            http.iter()
                .map(move |(core, c)| (format!("core=\"{core}\""), f(c)))
                .collect::<Vec<_>>()
        };
        for (name, help, f) in [
            (
                "bypass_http_requests_total",
                "HTTP requests parsed (or rejected).",
                (|c: &HttpCounters| c.requests) as fn(&HttpCounters) -> u64,
            ),
            (
                "bypass_http_body_bytes_total",
                "Response body bytes queued.",
                |c| c.body_bytes,
            ),
            (
                "bypass_http_connections_accepted_total",
                "Connections accepted.",
                |c| c.accepted,
            ),
            (
                "bypass_http_connections_refused_total",
                "Connections answered 503 over the limit.",
                |c| c.refused,
            ),
            (
                "bypass_http_connections_reset_total",
                "Connections that ended in a reset or timeout.",
                |c| c.resets,
            ),
            (
                "bypass_http_timeouts_total",
                "Header, idle, linger and send timeouts.",
                |c| c.timeouts,
            ),
        ] {
            family(
                &mut out,
                name,
                "counter",
                help,
                &mut per_core(f).into_iter(),
            );
        }
        let stack = self.stack.get().map(|l| l.snapshot()).unwrap_or_default();
        let rows = |f: &dyn Fn(&Counters) -> u64| {
            stack
                .iter()
                .enumerate()
                .map(|(core, s)| (format!("core=\"{core}\""), f(&s.counters)))
                .collect::<Vec<_>>()
        };
        family(
            &mut out,
            "bypass_tcp_connections",
            "gauge",
            "TCP connections holding a slot, every state.",
            &mut stack
                .iter()
                .enumerate()
                .map(|(core, s)| (format!("core=\"{core}\""), s.connections as u64)),
        );
        family(
            &mut out,
            "bypass_tcp_buffer_bytes",
            "gauge",
            "Bytes of TCP send and receive buffers held (taken as data flows, freed when idle).",
            &mut stack
                .iter()
                .enumerate()
                .map(|(core, s)| (format!("core=\"{core}\""), s.buffer_bytes as u64)),
        );
        family(
            &mut out,
            "bypass_tcp_memory_pressure",
            "gauge",
            "1 while the core is over its memory budget and refuses new connections.",
            &mut stack
                .iter()
                .enumerate()
                .map(|(core, s)| (format!("core=\"{core}\""), u64::from(s.memory_pressure))),
        );
        for (name, help, f) in [
            (
                "bypass_rx_frames_total",
                "Frames received.",
                (|c: &Counters| c.rx_frames) as fn(&Counters) -> u64,
            ),
            ("bypass_rx_bytes_total", "Bytes received.", |c| c.rx_bytes),
            ("bypass_tx_frames_total", "Frames sent.", |c| c.tx_frames),
            ("bypass_tx_bytes_total", "Bytes sent.", |c| c.tx_bytes),
            (
                "bypass_tcp_segments_in_total",
                "TCP segments received.",
                |c| c.tcp_segments_in,
            ),
            ("bypass_tcp_segments_out_total", "TCP segments sent.", |c| {
                c.tcp_segments_out
            }),
            ("bypass_tcp_resets_out_total", "TCP resets sent.", |c| {
                c.tcp_resets_out
            }),
            ("bypass_tcp_syn_in_total", "TCP SYNs received.", |c| {
                c.tcp_syn_in
            }),
            (
                "bypass_tcp_retransmits_total",
                "TCP segments sent again (timeouts, fast retransmit, recovery).",
                |c| c.tcp_retransmits,
            ),
            (
                "bypass_tcp_timeouts_total",
                "TCP retransmission timeouts (stalls that fast recovery did not prevent).",
                |c| c.tcp_timeouts,
            ),
            (
                "bypass_tcp_pmtu_black_holes_total",
                "TCP connections whose segment size fell back after repeated timeouts (RFC 4821 path MTU black hole).",
                |c| c.tcp_pmtu_black_holes,
            ),
            (
                "bypass_tcp_pmtu_probes_acked_total",
                "TCP path MTU probes acknowledged: each raised a segment size that a black hole or an ICMP message had lowered (RFC 8899).",
                |c| c.tcp_pmtu_probes_acked,
            ),
            (
                "bypass_tcp_pmtu_probes_lost_total",
                "TCP path MTU probes lost and sent again in smaller segments (a size fails after three in a row).",
                |c| c.tcp_pmtu_probes_lost,
            ),
            (
                "bypass_tcp_loss_probes_total",
                "TCP tail loss probes (RFC 8985): losses repaired without an RTO.",
                |c| c.tcp_loss_probes,
            ),
            (
                "bypass_tcp_dsacks_total",
                "TCP D-SACKs received (RFC 2883): segments a peer got twice, a retransmission that was not needed.",
                |c| c.tcp_dsacks,
            ),
            (
                "bypass_tcp_spurious_undos_total",
                "TCP congestion window reductions undone because D-SACKs showed every retransmission they made was needless (RFC 3708).",
                |c| c.tcp_spurious_undos,
            ),
            (
                "bypass_tcp_loss_probe_recoveries_total",
                "TCP losses a tail loss probe repaired; each cut the congestion window as any loss does (RFC 8985 §7.4).",
                |c| c.tcp_loss_probe_recoveries,
            ),
            (
                "bypass_tcp_refused_total",
                "Connection attempts to a port nobody listens on (answered RST).",
                |c| c.tcp_refused,
            ),
            (
                "bypass_tcp_syncookies_sent_total",
                "SYN cookies sent.",
                |c| c.tcp_syncookies_sent,
            ),
            (
                "bypass_frames_forwarded_in_total",
                "Frames handed over by another core.",
                |c| c.forwarded_in,
            ),
        ] {
            family(&mut out, name, "counter", help, &mut rows(&f).into_iter());
        }
        family(
            &mut out,
            "bypass_drops_total",
            "counter",
            "Frames dropped, by reason.",
            &mut stack.iter().enumerate().flat_map(|(core, s)| {
                DropReason::ALL.iter().filter_map(move |&r| {
                    let n = s.counters.drops(r);
                    (n > 0).then(|| (format!("core=\"{core}\",reason=\"{}\"", r.as_str()), n))
                })
            }),
        );
        if let Some(acme) = self.acme.get() {
            acme.render(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let p: Prefix = "10.99.0.0/24".parse().unwrap();
        assert!(p.contains(Ipv4Addr::new(10, 99, 0, 2)));
        assert!(!p.contains(Ipv4Addr::new(10, 99, 1, 2)));
        let one: Prefix = "127.0.0.1".parse().unwrap();
        assert!(one.contains(Ipv4Addr::LOCALHOST) && !one.contains(Ipv4Addr::new(127, 0, 0, 2)));
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("ten/8".parse::<Prefix>().is_err());
    }

    #[test]
    fn served_only_on_the_path_to_allowed_peers() {
        let m = Metrics::new(
            Some("/metrics".into()),
            vec!["10.99.0.2/32".parse().unwrap()],
        );
        assert!(m.serves("/metrics", Ipv4Addr::new(10, 99, 0, 2)));
        assert!(m.serves("/metrics?x=1", Ipv4Addr::new(10, 99, 0, 2)));
        assert!(!m.serves("/metrics", Ipv4Addr::new(10, 99, 0, 3)));
        assert!(!m.serves("/metricsx", Ipv4Addr::new(10, 99, 0, 2)));
        let off = Metrics::new(None, vec!["0.0.0.0/0".parse().unwrap()]);
        assert!(!off.serves("/metrics", Ipv4Addr::new(10, 99, 0, 2)));
    }

    #[test]
    fn renders_published_counters() {
        let m = Metrics::new(Some("/metrics".into()), Vec::new());
        let mut c = HttpCounters::default();
        c.by_class[2] = 7;
        c.requests = 9;
        m.publish_http(1, &c);
        let text = m.render();
        assert!(
            text.contains("bypass_http_responses_total{core=\"1\",class=\"2xx\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("bypass_http_requests_total{core=\"1\"} 9\n"));
        assert!(text.contains("# TYPE bypass_http_requests_total counter\n"));
        assert_eq!(m.http_total().requests, 9);
        // Every sample line is `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<u64>().unwrap();
        }
    }
}
