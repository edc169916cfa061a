//! Command line (clap).

use std::net::Ipv4Addr;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bypass",
    version,
    about = "A web server on its own TCP/IP stack, bypassing the kernel with AF_XDP",
    long_about = "A web server on its own TCP/IP stack, bypassing the kernel with AF_XDP.\n\n\
        An XDP program steers the site's traffic from each receive queue of the interface into \
        an AF_XDP socket; one pinned thread per queue runs Ethernet, ARP, IPv4, ICMP and TCP to \
        completion. Everything else stays with the kernel."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring the stack up on an interface and serve until SIGINT/SIGTERM.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    bypass serve --iface bpx0 --ip 10.99.0.1                 # own 10.99.0.1 (no kernel address for it)\n  \
    bypass serve --iface eth0 --ip 203.0.113.7 --shared-ip   # share the host's address; SSH stays with the kernel\n  \
    bypass serve --iface eth0 --ip 203.0.113.7/24 --queues 4 --cores 2-5 --zero-copy\n  \
    bypass serve --config /etc/bypass/bypass.toml            # the same flags, from a TOML file")]
pub struct ServeArgs {
    /// Read settings from this TOML file: keys are these flags' long names
    /// (`iface = "eth0"`, `max-connections = 1000`, `port = [80, 8080]`);
    /// flags on the command line win over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Network interface to serve on (required, here or in --config).
    #[arg(long, value_name = "IF", required_unless_present = "config")]
    pub iface: Option<String>,

    /// The stack's IPv4 address, with an optional prefix length (default
    /// /24; required, here or in --config).
    #[arg(long, value_name = "ADDR[/PREFIX]", value_parser = parse_addr_prefix, required_unless_present = "config")]
    pub ip: Option<HostAddr>,

    /// Router for destinations off the local prefix.
    #[arg(long, value_name = "ADDR")]
    pub gateway: Option<Ipv4Addr>,

    /// Receive queues to serve, one pinned thread each. Every queue of the
    /// interface must be served (RSS spreads flows over all of them): shrink
    /// them with `ethtool -L IF combined N` to serve fewer, ideally as many
    /// as the CPUs given to bypass; with more queues than CPUs, threads
    /// share CPUs (with a warning) [default: all].
    #[arg(long, value_name = "N")]
    pub queues: Option<u32>,

    /// CPUs to pin the queue threads to, in queue order, e.g. 0,2 or 2-5
    /// [default: the first N usable CPUs].
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cores: Option<CpuList>,

    /// Directory of the site to serve.
    #[arg(long, value_name = "DIR", default_value = "./www")]
    pub root: std::path::PathBuf,

    /// A virtual host: requests whose Host is one of NAMES (comma-separated,
    /// `*.example.com` for subdomains) are served from DIR, with the same
    /// rules as the default site (repeat for more; `[[site]]` tables in
    /// --config give a site its own rules). Other requests get --root.
    #[arg(long = "site", value_name = "NAMES=DIR", value_parser = crate::rules::parse_site)]
    pub sites: Vec<(crate::rules::HostNames, std::path::PathBuf)>,

    /// Answer errors with STATUS with this page of the site, status kept
    /// (repeat for more), e.g. 404=/404.html.
    #[arg(long = "error-page", value_name = "STATUS=PATH", value_parser = crate::rules::parse_error_page)]
    pub error_pages: Vec<(u16, String)>,

    /// Serve this page of the site (200) for paths it does not have, as
    /// nginx's `try_files $uri /index.html` for single-page apps.
    #[arg(long, value_name = "PATH", value_parser = parse_site_path)]
    pub fallback: Option<String>,

    /// Add this field to every response (repeat for more), e.g.
    /// 'X-Content-Type-Options: nosniff'.
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = crate::rules::parse_header)]
    pub headers: Vec<(String, String)>,

    /// Cache-Control by path pattern (`[[cache-control]]` in --config).
    #[arg(skip)]
    pub cache_control: Vec<(crate::rules::Pattern, String)>,

    /// Redirects (`[[redirect]]` in --config).
    #[arg(skip)]
    pub redirects: Vec<crate::rules::Redirect>,

    /// Virtual hosts with their own rules (`[[site]]` in --config).
    #[arg(skip)]
    pub site_tables: Vec<SiteTable>,

    /// TCP port to serve HTTP on (repeat for more). In shared-IP mode only
    /// these ports are steered to the stack; in owned-IP mode all TCP to
    /// the address goes to the stack. `--port 0`: none (HTTPS only, with a
    /// --tls-port).
    #[arg(long = "port", value_name = "PORT", default_value = "80")]
    pub ports: Vec<u16>,

    /// TCP port to serve HTTPS on (repeat for more), beside the plain
    /// --port ones [default: none].
    #[arg(long = "tls-port", value_name = "PORT")]
    pub tls_ports: Vec<u16>,

    /// PEM certificate chain for HTTPS (repeat with --key for more; chosen
    /// by SNI, the first for clients that send no name). certbot's
    /// fullchain.pem works as it is. Without one, a self-signed
    /// certificate is made (and kept in --state-dir).
    #[arg(long = "cert", value_name = "FILE")]
    pub certs: Vec<std::path::PathBuf>,

    /// PEM private key for the --cert in the same position (certbot's
    /// privkey.pem).
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<std::path::PathBuf>,

    /// Name for the self-signed certificate (repeat for more; the --ip
    /// address is always in it).
    #[arg(long = "server-name", value_name = "NAME")]
    pub server_names: Vec<String>,

    /// Once set up (XDP attached, sockets bound, certificates read, logs
    /// opened), run as this user with its group and no capabilities.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Where bypass keeps what it makes: the self-signed certificate and
    /// its key (mode 0600).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/bypass")]
    pub state_dir: std::path::PathBuf,

    /// Seconds a client has to finish the TLS handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub tls_handshake_timeout: u64,

    /// Answer /.well-known/acme-challenge/* on the plain ports from
    /// DIR/.well-known/acme-challenge/, read at request time, so that
    /// `certbot certonly --webroot -w DIR -d NAME` works while bypass
    /// keeps port 80.
    #[arg(long, value_name = "DIR")]
    pub acme_webroot: Option<std::path::PathBuf>,

    /// Get a certificate for NAME from an ACME CA and keep it renewed, with
    /// no other program (repeat for more names; one certificate each). The
    /// stack answers the CA's http-01 challenge on a plain --port or its
    /// tls-alpn-01 challenge on a --tls-port; the CA connects to 80 or 443.
    #[arg(long = "acme-domain", value_name = "NAME")]
    pub acme_domains: Vec<String>,

    /// Contact address for the ACME account (the CA's expiry warnings).
    #[arg(long, value_name = "ADDR")]
    pub acme_email: Option<String>,

    /// ACME directory URL [default: Let's Encrypt's production directory].
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,

    /// Use Let's Encrypt's staging directory (untrusted certificates,
    /// generous rate limits: for a first try).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false, hide_possible_values = true, hide_default_value = true)]
    pub acme_staging: bool,

    /// PEM file of the CA certificates to trust for the ACME server's own
    /// HTTPS (a private or test CA such as pebble) [default: the system's].
    #[arg(long, value_name = "FILE")]
    pub acme_ca_root: Option<std::path::PathBuf>,

    /// Renew a certificate once it is this many seconds old, instead of at
    /// two thirds of its lifetime or in the CA's renewal window (drills,
    /// tests).
    #[arg(long, value_name = "SECS")]
    pub acme_renew_after: Option<u64>,

    /// Seconds before the first retry after a failed ACME attempt; each
    /// further failure doubles it (at most 6 hours; the CA's Retry-After
    /// wins when longer).
    #[arg(long, value_name = "SECS", default_value_t = crate::acme::schedule::RETRY_BASE.as_secs())]
    pub acme_retry_base: u64,

    /// Answer plain-HTTP requests with a 308 to the same URL on HTTPS
    /// (the ACME challenge path excepted).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false, hide_possible_values = true, hide_default_value = true)]
    pub redirect_https: bool,

    /// Add Strict-Transport-Security: max-age=SECONDS to HTTPS responses.
    #[arg(long, value_name = "SECONDS")]
    pub hsts: Option<u64>,

    /// Serve files and directories whose name starts with '.' (`.env`,
    /// `.git/`); by default they answer 404 as if absent (`/.well-known/`
    /// is always served).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false, hide_possible_values = true, hide_default_value = true)]
    pub serve_dotfiles: bool,

    /// Connections served at once, all cores together; beyond it new
    /// connections are answered 503 (with Retry-After) and closed.
    #[arg(long, value_name = "N", default_value_t = 16_384)]
    pub max_connections: usize,

    /// MiB of TCP send and receive buffers each core may hold. Buffers are
    /// taken as data flows and freed when a connection is idle; past this
    /// budget a core refuses new connections (counted as
    /// `tcp_memory_pressure`), stops growing windows and drops
    /// out-of-order data first, so no client can run the machine out of
    /// memory.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub memory_per_core: usize,

    /// Seconds a client has to send a whole request head (then 408).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub header_timeout: u64,

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, value_name = "SECS", default_value_t = 75)]
    pub idle_timeout: u64,

    /// Seconds a connection's queued output may make no progress (a client
    /// that stopped reading) before it is reset, as nginx's send_timeout.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub send_timeout: u64,

    /// Longest request line (method, target, version); longer → 414.
    #[arg(long, value_name = "BYTES", default_value_t = 8192, value_parser = parse_head_size)]
    pub max_request_line: u32,

    /// Most header fields in a request; more → 431.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = parse_header_fields)]
    pub max_header_fields: u16,

    /// Largest request head (request line and fields); larger → 431.
    #[arg(long, value_name = "BYTES", default_value_t = 16384, value_parser = parse_head_size)]
    pub max_head: u32,

    /// Largest body a GET or HEAD may carry (read and discarded); larger →
    /// 413.
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    pub max_body: u64,

    /// Serve Prometheus metrics (every core's HTTP and stack counters) on
    /// this path, e.g. /metrics [default: not served].
    #[arg(long, value_name = "PATH")]
    pub metrics_path: Option<String>,

    /// Serve /metrics and /healthz on this kernel socket (ADDR:PORT, e.g.
    /// 127.0.0.1:9090), for monitoring from the host itself: the stack's
    /// own address is not reachable from there [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin_listen: Option<std::net::SocketAddr>,

    /// Source addresses allowed to read the metrics (repeat for more);
    /// others get what the site has at that path.
    #[arg(long, value_name = "ADDR[/PREFIX]", default_value = "127.0.0.1/32")]
    pub metrics_allow: Vec<crate::metrics::Prefix>,

    /// Append an access log in Common Log Format to this file (each core
    /// buffers its lines and writes them once a second). SIGUSR1 reopens it
    /// by name, for log rotation.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<std::path::PathBuf>,

    /// Access log line format: common (CLF), combined (with Referer and
    /// User-Agent) or json (one object per line).
    #[arg(long, value_name = "FORMAT", default_value = "common")]
    pub access_log_format: crate::access_log::LogFormat,

    /// Seconds between the one-line stats logs (0: none).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stats_interval: u64,

    /// Seconds between looks for changes under --root; a change is loaded
    /// once it has held still for one look (0: load the site only at start).
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    pub reload_interval: u64,

    /// Files larger than this are streamed from disk instead of cached.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_cached_file: u64,

    /// Bytes the in-memory cache may hold in all; files beyond the budget
    /// are streamed from disk, so a large tree cannot take the memory.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    pub max_cache_bytes: u64,

    /// Never sleep: poll the rings continuously (lowest latency; each queue
    /// thread uses a whole core). Default: spin briefly, then block in poll().
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false, hide_possible_values = true, hide_default_value = true)]
    pub busy_poll: bool,

    /// Share the address with the kernel: only the steered TCP ports go to
    /// the stack; ARP, ICMP, SSH and the rest stay with the kernel.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false, hide_possible_values = true, hide_default_value = true)]
    pub shared_ip: bool,

    /// Bind AF_XDP sockets in zero-copy mode (needs driver support, e.g.
    /// ice, i40e, mlx5); fails clearly when unavailable.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false, hide_possible_values = true, hide_default_value = true)]
    pub zero_copy: bool,

    /// Attach XDP in generic (skb) mode instead of trying native first.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false, hide_possible_values = true, hide_default_value = true)]
    pub generic_xdp: bool,

    /// UMEM frames per queue, half for receive and half for transmit
    /// (power of two).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub umem_frames: u32,

    /// Bytes per UMEM frame: 2048 or 4096.
    #[arg(long, value_name = "BYTES", default_value_t = 2048, value_parser = parse_frame_size)]
    pub frame_size: u32,
}

/// A `[[site]]` table of the config file: names, root and own rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteTable {
    pub names: crate::rules::HostNames,
    pub root: std::path::PathBuf,
    pub rules: crate::rules::SiteRules,
}

pub(crate) fn parse_site_path(s: &str) -> Result<String, String> {
    crate::rules::site_path(s).map_err(|e| e.to_string())
}

/// An address with its on-link prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

pub(crate) fn parse_addr_prefix(s: &str) -> Result<HostAddr, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
    if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
        return Err(format!("{addr} cannot be a host address"));
    }
    let prefix = match prefix {
        None => 24,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= 32)
            .ok_or_else(|| format!("prefix length {p:?} must be 0..=32"))?,
    };
    Ok(HostAddr {
        addr,
        prefix_len: prefix,
    })
}

pub(crate) fn parse_frame_size(s: &str) -> Result<u32, String> {
    match s {
        "2048" => Ok(2048),
        "4096" => Ok(4096),
        _ => Err(format!("{s:?}: frame size must be 2048 or 4096")),
    }
}

/// A request line or head limit: 64 bytes to 1 MiB.
pub(crate) fn parse_head_size(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (64..=1 << 20).contains(n))
        .ok_or_else(|| format!("{s:?}: must be 64 to 1048576 bytes"))
}

/// A header field count: 1 to what the parser's array holds.
pub(crate) fn parse_header_fields(s: &str) -> Result<u16, String> {
    let max = crate::request::MAX_HEADER_FIELDS;
    s.parse::<u16>()
        .ok()
        .filter(|&n| n >= 1 && usize::from(n) <= max)
        .ok_or_else(|| format!("{s:?}: must be 1 to {max}"))
}

/// CPUs in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

pub(crate) fn parse_cpus(s: &str) -> Result<CpuList, String> {
    bypass_stack::host::parse_cpu_list(s).map(CpuList)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn addresses_with_and_without_prefix() {
        let host = |prefix_len| HostAddr {
            addr: Ipv4Addr::new(10, 99, 0, 1),
            prefix_len,
        };
        assert_eq!(parse_addr_prefix("10.99.0.1"), Ok(host(24)));
        assert_eq!(parse_addr_prefix("10.99.0.1/16"), Ok(host(16)));
        for bad in [
            "10.99.0",
            "10.99.0.1/33",
            "10.99.0.1/x",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(parse_addr_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serve_parses_every_flag() {
        let cli = Cli::try_parse_from([
            "bypass",
            "serve",
            "--iface",
            "bpx0",
            "--ip",
            "10.99.0.1/24",
            "--queues",
            "2",
            "--cores",
            "0-1",
            "--busy-poll",
            "--shared-ip",
            "--zero-copy",
            "--port",
            "80",
            "--port",
            "443",
        ])
        .unwrap();
        let Command::Serve(a) = cli.command;
        assert_eq!(a.iface.as_deref(), Some("bpx0"));
        assert_eq!(a.queues, Some(2));
        assert_eq!(a.cores, Some(CpuList(vec![0, 1])));
        assert_eq!(a.ports, vec![80, 443]);
        assert!(a.busy_poll && a.shared_ip && a.zero_copy);
        assert!(!a.generic_xdp, "a switch not given is off");
        let off = |flag: &str| {
            let cli =
                Cli::try_parse_from(["bypass", "serve", "--iface", "x", "--ip", "1.2.3.4", flag]);
            let Command::Serve(a) = cli.unwrap().command;
            a.shared_ip
        };
        assert!(
            !off("--shared-ip=false"),
            "a switch can be turned off (over --config)"
        );
        assert!(off("--shared-ip=true"));
        assert!(
            Cli::try_parse_from(["bypass", "serve", "--ip", "10.0.0.1"]).is_err(),
            "--iface is required"
        );
        assert!(Cli::try_parse_from([
            "bypass",
            "serve",
            "--iface",
            "x",
            "--ip",
            "1.2.3.4",
            "--frame-size",
            "1000"
        ])
        .is_err());
    }
}
