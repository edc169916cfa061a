//! `--config FILE`: the `serve` flags as a TOML file, for a service that
//! should not carry twenty flags in its unit file.
//!
//! Keys are the long flags without the dashes in front (`max-connections =
//! 1000`, `shared-ip = true`, `port = [80, 8080]`), and every value goes
//! through the same parser as its flag, so a file can express exactly what
//! a command line can. A flag given on the command line wins over the file;
//! the file wins over the defaults (switches take `--shared-ip=false` to
//! turn off what a file turns on). Unknown keys are errors (a typo must
//! not silently fall back to a default). Relative paths in the file
//! (`root`, `access-log`) are taken from the file's directory, so a site
//! and its config can move together.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context};
use clap::{parser::ValueSource, ArgMatches};
use serde::Deserialize;

use crate::cli::{self, ServeArgs};

/// One value or a list, as a repeatable flag allows.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A CPU list as the flag spells it ("0,2", "2-5") or as a TOML array.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Cpus {
    Spelled(String),
    List(Vec<usize>),
}

/// `[[cache-control]]`: a path pattern and the field's value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheControlFile {
    pattern: String,
    value: String,
}

/// `[[redirect]]`: an exact path, where to, and the status (301).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectFile {
    from: String,
    to: String,
    status: Option<u16>,
}

/// The rules a site can have, at the top level or in a `[[site]]` (the
/// same keys in both; serde's flatten would not deny unknown keys).
#[derive(Debug, Default)]
struct RulesFile {
    error_page: Option<OneOrMany<String>>,
    fallback: Option<String>,
    header: Option<OneOrMany<String>>,
    cache_control: Option<Vec<CacheControlFile>>,
    redirect: Option<Vec<RedirectFile>>,
}

/// `[[site]]`: names, a root, and its own rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SiteFile {
    names: OneOrMany<String>,
    root: PathBuf,
    error_page: Option<OneOrMany<String>>,
    fallback: Option<String>,
    header: Option<OneOrMany<String>>,
    cache_control: Option<Vec<CacheControlFile>>,
    redirect: Option<Vec<RedirectFile>>,
}

/// A `site` entry: `"NAMES=DIR"` as the flag spells it, or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SiteEntry {
    Spelled(String),
    Table(SiteFile),
}

/// Turns the file's rules into a site's, each value through its flag's
/// parser.
fn rules_of(file: RulesFile) -> anyhow::Result<crate::rules::SiteRules> {
    use crate::rules;
    let mut out = rules::SiteRules::default();
    for e in file.error_page.map(OneOrMany::into_vec).unwrap_or_default() {
        out.error_pages
            .push(rules::parse_error_page(&e).map_err(|m| anyhow!("error-page: {m}"))?);
    }
    if let Some(f) = file.fallback {
        out.fallback = Some(rules::site_path(&f).context("fallback")?);
    }
    for h in file.header.map(OneOrMany::into_vec).unwrap_or_default() {
        out.headers
            .push(rules::parse_header(&h).map_err(|m| anyhow!("header: {m}"))?);
    }
    for c in file.cache_control.unwrap_or_default() {
        let value = rules::parse_header(&format!("Cache-Control: {}", c.value))
            .map_err(|m| anyhow!("cache-control: {m}"))?
            .1;
        out.cache_control.push((
            rules::Pattern::new(&c.pattern).context("cache-control")?,
            value,
        ));
    }
    for r in file.redirect.unwrap_or_default() {
        out.redirects
            .push(rules::redirect(&r.from, &r.to, r.status)?);
    }
    Ok(out)
}

/// `[tls]` in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsTables {
    #[serde(default)]
    cert: Vec<CertPair>,
}

/// One `[[tls.cert]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertPair {
    cert: PathBuf,
    key: PathBuf,
}

/// The file, as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    iface: Option<String>,
    ip: Option<String>,
    gateway: Option<Ipv4Addr>,
    queues: Option<u32>,
    cores: Option<Cpus>,
    root: Option<PathBuf>,
    port: Option<OneOrMany<u16>>,
    tls_port: Option<OneOrMany<u16>>,
    cert: Option<OneOrMany<PathBuf>>,
    key: Option<OneOrMany<PathBuf>>,
    server_name: Option<OneOrMany<String>>,
    state_dir: Option<PathBuf>,
    user: Option<String>,
    tls_handshake_timeout: Option<u64>,
    /// `[[tls.cert]]` tables: `cert = "..."`, `key = "..."` each.
    tls: Option<TlsTables>,
    site: Option<Vec<SiteEntry>>,
    error_page: Option<OneOrMany<String>>,
    fallback: Option<String>,
    header: Option<OneOrMany<String>>,
    cache_control: Option<Vec<CacheControlFile>>,
    redirect: Option<Vec<RedirectFile>>,
    acme_webroot: Option<PathBuf>,
    acme_domain: Option<OneOrMany<String>>,
    acme_email: Option<String>,
    acme_directory: Option<String>,
    acme_staging: Option<bool>,
    acme_ca_root: Option<PathBuf>,
    acme_renew_after: Option<u64>,
    acme_retry_base: Option<u64>,
    redirect_https: Option<bool>,
    serve_dotfiles: Option<bool>,
    hsts: Option<u64>,
    max_connections: Option<usize>,
    memory_per_core: Option<usize>,
    header_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    send_timeout: Option<u64>,
    max_request_line: Option<u32>,
    max_header_fields: Option<u16>,
    max_head: Option<u32>,
    max_body: Option<u64>,
    metrics_path: Option<String>,
    admin_listen: Option<String>,
    metrics_allow: Option<OneOrMany<String>>,
    access_log: Option<PathBuf>,
    access_log_format: Option<String>,
    stats_interval: Option<u64>,
    reload_interval: Option<u64>,
    max_cached_file: Option<u64>,
    max_cache_bytes: Option<u64>,
    busy_poll: Option<bool>,
    shared_ip: Option<bool>,
    zero_copy: Option<bool>,
    generic_xdp: Option<bool>,
    umem_frames: Option<u32>,
    frame_size: Option<u32>,
}

/// Fills in `args` from `--config`, if given: each key whose flag was not
/// on the command line. `matches` are the `serve` subcommand's.
pub fn apply(args: &mut ServeArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    if let Some(path) = args.config.clone() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("config {}: cannot read", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        merge(args, &text, base, |id| {
            matches.value_source(id) == Some(ValueSource::CommandLine)
        })
        .with_context(|| format!("config {}", path.display()))?;
    }
    settle(args)
}

/// The `serve` flags as at start, for a reload: the command line parsed
/// again and `--config` read anew.
pub fn reload_args() -> anyhow::Result<ServeArgs> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = cli::Cli::command()
        .try_get_matches_from(std::env::args_os())
        .map_err(|e| anyhow!("{e}"))?;
    let cli = cli::Cli::from_arg_matches(&matches).map_err(|e| anyhow!("{e}"))?;
    let cli::Command::Serve(mut args) = cli.command;
    match matches.subcommand_matches("serve") {
        Some(sub) => apply(&mut args, sub)?,
        None => settle(&mut args)?,
    }
    Ok(args)
}

/// `apply` without the file system: `on_command_line(id)` says whether the
/// flag with clap id `id` (the field's name) was given.
fn merge(
    args: &mut ServeArgs,
    text: &str,
    base: &Path,
    on_command_line: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
    // Sets a field from the file unless its flag was given; `$convert`
    // turns the file's value into the flag's type, or says why it cannot.
    macro_rules! take {
        ($field:ident) => {
            take!($field, $field, Ok)
        };
        ($key:ident, $field:ident, $convert:expr) => {
            if let Some(value) = file.$key {
                if !on_command_line(stringify!($field)) {
                    let convert: fn(_) -> Result<_, String> = $convert;
                    args.$field = convert(value)
                        .map_err(|e| anyhow!("{}: {e}", stringify!($key).replace('_', "-")))?;
                }
            }
        };
    }
    take!(iface, iface, |v| Ok(Some(v)));
    take!(ip, ip, |v: String| cli::parse_addr_prefix(&v).map(Some));
    take!(gateway, gateway, |v| Ok(Some(v)));
    take!(queues, queues, |v| Ok(Some(v)));
    take!(cores, cores, |v| match v {
        Cpus::Spelled(s) => cli::parse_cpus(&s).map(Some),
        Cpus::List(l) => Ok(Some(cli::CpuList(l))),
    });
    take!(port, ports, |v: OneOrMany<u16>| Ok(v.into_vec()));
    take!(tls_port, tls_ports, |v: OneOrMany<u16>| Ok(v.into_vec()));
    take!(server_name, server_names, |v: OneOrMany<String>| Ok(
        v.into_vec()
    ));
    take!(tls_handshake_timeout);
    take!(user, user, |v| Ok(Some(v)));
    take!(redirect_https);
    take!(acme_domain, acme_domains, |v: OneOrMany<String>| Ok(
        v.into_vec()
    ));
    take!(acme_email, acme_email, |v| Ok(Some(v)));
    take!(acme_directory, acme_directory, |v| Ok(Some(v)));
    take!(acme_staging);
    take!(acme_renew_after, acme_renew_after, |v| Ok(Some(v)));
    take!(acme_retry_base);
    take!(serve_dotfiles);
    take!(hsts, hsts, |v| Ok(Some(v)));
    take!(max_connections);
    take!(memory_per_core);
    take!(header_timeout);
    take!(idle_timeout);
    take!(send_timeout);
    take!(max_request_line, max_request_line, |v: u32| {
        cli::parse_head_size(&v.to_string())
    });
    take!(max_header_fields, max_header_fields, |v: u16| {
        cli::parse_header_fields(&v.to_string())
    });
    take!(max_head, max_head, |v: u32| cli::parse_head_size(
        &v.to_string()
    ));
    take!(max_body);
    take!(metrics_path, metrics_path, |v| Ok(Some(v)));
    take!(admin_listen, admin_listen, |v: String| v
        .parse()
        .map(Some)
        .map_err(|_| format!("{v:?} is not ADDR:PORT")));
    take!(metrics_allow, metrics_allow, |v: OneOrMany<String>| {
        v.into_vec().iter().map(|s| s.parse()).collect()
    });
    take!(access_log_format, access_log_format, |v: String| v.parse());
    take!(stats_interval);
    take!(reload_interval);
    take!(max_cached_file);
    take!(max_cache_bytes);
    take!(busy_poll);
    take!(shared_ip);
    take!(zero_copy);
    take!(generic_xdp);
    take!(umem_frames);
    take!(frame_size, frame_size, |v: u32| cli::parse_frame_size(
        &v.to_string()
    ));
    // Paths from the file are relative to the file.
    if let Some(root) = file.root.filter(|_| !on_command_line("root")) {
        args.root = base.join(root);
    }
    if let Some(log) = file.access_log.filter(|_| !on_command_line("access_log")) {
        args.access_log = Some(base.join(log));
    }
    if let Some(dir) = file
        .acme_webroot
        .filter(|_| !on_command_line("acme_webroot"))
    {
        args.acme_webroot = Some(base.join(dir));
    }
    if let Some(file) = file
        .acme_ca_root
        .filter(|_| !on_command_line("acme_ca_root"))
    {
        args.acme_ca_root = Some(base.join(file));
    }
    // The default site's rules: flags win per kind of rule.
    let rules = rules_of(RulesFile {
        error_page: file.error_page,
        fallback: file.fallback,
        header: file.header,
        cache_control: file.cache_control,
        redirect: file.redirect,
    })?;
    if !on_command_line("error_pages") && !rules.error_pages.is_empty() {
        args.error_pages = rules.error_pages;
    }
    if !on_command_line("fallback") && rules.fallback.is_some() {
        args.fallback = rules.fallback;
    }
    if !on_command_line("headers") && !rules.headers.is_empty() {
        args.headers = rules.headers;
    }
    args.cache_control = rules.cache_control;
    args.redirects = rules.redirects;
    // Sites: spelled ones add to --site, tables bring their own rules.
    for entry in file.site.unwrap_or_default() {
        match entry {
            SiteEntry::Spelled(s) => {
                let (names, dir) =
                    crate::rules::parse_site(&s).map_err(|m| anyhow!("site: {m}"))?;
                args.sites.push((names, base.join(dir)));
            }
            SiteEntry::Table(t) => {
                let names = crate::rules::HostNames::parse(&t.names.into_vec().join(","))
                    .map_err(|m| anyhow!("site: {m}"))?;
                args.site_tables.push(crate::cli::SiteTable {
                    names,
                    root: base.join(t.root),
                    rules: rules_of(RulesFile {
                        error_page: t.error_page,
                        fallback: t.fallback,
                        header: t.header,
                        cache_control: t.cache_control,
                        redirect: t.redirect,
                    })
                    .context("site")?,
                });
            }
        }
    }
    if let Some(dir) = file.state_dir.filter(|_| !on_command_line("state_dir")) {
        args.state_dir = base.join(dir);
    }
    if let Some(certs) = file.cert.filter(|_| !on_command_line("certs")) {
        args.certs = certs.into_vec().into_iter().map(|p| base.join(p)).collect();
    }
    if let Some(keys) = file.key.filter(|_| !on_command_line("keys")) {
        args.keys = keys.into_vec().into_iter().map(|p| base.join(p)).collect();
    }
    // [[tls.cert]] tables add pairs after cert/key lists.
    if let Some(tables) = file
        .tls
        .filter(|_| !on_command_line("certs") && !on_command_line("keys"))
    {
        for pair in tables.cert {
            args.certs.push(base.join(pair.cert));
            args.keys.push(base.join(pair.key));
        }
    }
    check_limits(args)
}

/// What the flags and the file mean together, once both are in:
/// `--port 0` is no plain port (a site served over HTTPS only).
fn settle(args: &mut ServeArgs) -> anyhow::Result<()> {
    args.ports.retain(|&p| p != 0);
    if args.ports.is_empty() && args.tls_ports.is_empty() {
        anyhow::bail!("port: at least one --port or --tls-port is needed");
    }
    Ok(())
}

/// Limits that contradict each other, from flags or file alike.
pub fn check_limits(args: &ServeArgs) -> anyhow::Result<()> {
    // A response is started only with room for any head in the send
    // buffer (a redirect's Location repeats the target): a request line
    // limit near the buffer's size would mean never answering.
    let send_buffer = bypass_stack::tcp::config::TcpConfig::default().send_buffer;
    if args.max_request_line as usize + 2048 > send_buffer / 2 {
        anyhow::bail!(
            "max-request-line ({}) must leave room in the {} KiB send buffer: at most {}",
            args.max_request_line,
            send_buffer / 1024,
            send_buffer / 2 - 2048
        );
    }
    if args.certs.len() != args.keys.len() {
        anyhow::bail!(
            "{} --cert and {} --key: each certificate needs its key, in the same order",
            args.certs.len(),
            args.keys.len()
        );
    }
    if let Some(p) = args.tls_ports.iter().find(|p| args.ports.contains(p)) {
        anyhow::bail!("port {p} is both a plain --port and a --tls-port");
    }
    if args.max_head < args.max_request_line {
        anyhow::bail!(
            "max-head ({}) must be at least max-request-line ({})",
            args.max_head,
            args.max_request_line
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, CpuList, HostAddr};
    use clap::{CommandFactory, FromArgMatches};

    /// The command line, merged with `text` as a config file in /etc/bypass.
    fn serve(argv: &[&str], text: &str) -> anyhow::Result<ServeArgs> {
        let matches = Cli::command().try_get_matches_from(
            ["bypass", "serve", "--config", "/etc/bypass/bypass.toml"]
                .iter()
                .chain(argv),
        )?;
        let Command::Serve(mut args) = Cli::from_arg_matches(&matches)?.command;
        let sub = matches.subcommand_matches("serve").unwrap();
        merge(&mut args, text, Path::new("/etc/bypass"), |id| {
            sub.value_source(id) == Some(ValueSource::CommandLine)
        })?;
        settle(&mut args)?;
        Ok(args)
    }

    #[test]
    fn every_key_mirrors_its_flag() {
        let args = serve(
            &[],
            r#"
            iface = "eth0"
            ip = "203.0.113.7/25"
            gateway = "203.0.113.1"
            queues = 4
            cores = "2-5"
            root = "site"
            port = [80, 8080]
            max-connections = 1000
            header-timeout = 10
            idle-timeout = 20
            max-request-line = 4096
            max-header-fields = 50
            max-head = 8192
            max-body = 0
            metrics-path = "/metrics"
            metrics-allow = ["10.0.0.0/8", "127.0.0.1"]
            access-log = "/var/log/bypass/access.log"
            stats-interval = 5
            reload-interval = 0
            max-cached-file = 1048576
            busy-poll = true
            shared-ip = true
            zero-copy = true
            generic-xdp = true
            umem-frames = 8192
            frame-size = 4096
            "#,
        )
        .unwrap();
        assert_eq!(args.iface.as_deref(), Some("eth0"));
        assert_eq!(
            args.ip,
            Some(HostAddr {
                addr: Ipv4Addr::new(203, 0, 113, 7),
                prefix_len: 25
            })
        );
        assert_eq!(args.gateway, Some(Ipv4Addr::new(203, 0, 113, 1)));
        assert_eq!(args.queues, Some(4));
        assert_eq!(args.cores, Some(CpuList(vec![2, 3, 4, 5])));
        assert_eq!(
            args.root,
            PathBuf::from("/etc/bypass/site"),
            "relative to the file"
        );
        assert_eq!(args.ports, vec![80, 8080]);
        assert_eq!(args.max_connections, 1000);
        assert_eq!((args.header_timeout, args.idle_timeout), (10, 20));
        assert_eq!((args.max_request_line, args.max_header_fields), (4096, 50));
        assert_eq!((args.max_head, args.max_body), (8192, 0));
        assert_eq!(args.metrics_path.as_deref(), Some("/metrics"));
        assert_eq!(args.metrics_allow.len(), 2);
        assert_eq!(
            args.access_log,
            Some(PathBuf::from("/var/log/bypass/access.log"))
        );
        assert_eq!((args.stats_interval, args.reload_interval), (5, 0));
        assert_eq!(args.max_cached_file, 1 << 20);
        assert!(args.busy_poll && args.shared_ip && args.zero_copy && args.generic_xdp);
        assert_eq!((args.umem_frames, args.frame_size), (8192, 4096));
    }

    #[test]
    fn tls_keys_and_cert_tables() {
        let args = serve(
            &[],
            r#"
            iface = "eth0"
            ip = "203.0.113.7"
            tls-port = [443, 8443]
            cert = "/etc/letsencrypt/live/a.example/fullchain.pem"
            key = "/etc/letsencrypt/live/a.example/privkey.pem"
            server-name = ["a.example", "b.example"]
            state-dir = "state"
            tls-handshake-timeout = 5
            acme-webroot = "acme"
            acme-domain = ["a.example", "b.example"]
            acme-email = "ops@a.example"
            acme-staging = true
            acme-ca-root = "pebble.pem"
            acme-renew-after = 30
            acme-retry-base = 5
            redirect-https = true
            hsts = 600

            [[tls.cert]]
            cert = "b/fullchain.pem"
            key = "b/privkey.pem"
            "#,
        )
        .unwrap();
        assert_eq!(args.tls_ports, vec![443, 8443]);
        assert_eq!(
            args.certs,
            vec![
                PathBuf::from("/etc/letsencrypt/live/a.example/fullchain.pem"),
                PathBuf::from("/etc/bypass/b/fullchain.pem")
            ],
            "lists first, then tables, relative to the file"
        );
        assert_eq!(args.keys[1], PathBuf::from("/etc/bypass/b/privkey.pem"));
        assert_eq!(args.server_names, vec!["a.example", "b.example"]);
        assert_eq!(args.state_dir, PathBuf::from("/etc/bypass/state"));
        assert_eq!(args.acme_webroot, Some(PathBuf::from("/etc/bypass/acme")));
        assert_eq!(args.acme_domains, vec!["a.example", "b.example"]);
        assert_eq!(args.acme_email.as_deref(), Some("ops@a.example"));
        assert!(args.acme_staging);
        assert_eq!(
            args.acme_ca_root,
            Some(PathBuf::from("/etc/bypass/pebble.pem"))
        );
        assert_eq!((args.acme_renew_after, args.acme_retry_base), (Some(30), 5));
        assert_eq!(args.tls_handshake_timeout, 5);
        assert!(args.redirect_https);
        assert_eq!(args.hsts, Some(600));
        // A certificate without its key, or a port both plain and TLS.
        let err = serve(&[], "iface = \"x\"\nip = \"1.2.3.4\"\ncert = \"a.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs its key"), "{err}");
        let err = serve(&[], "iface = \"x\"\nip = \"1.2.3.4\"\ntls-port = 80\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("both a plain --port and a --tls-port"),
            "{err}"
        );
        let err = serve(&[], "[[tls.cert]]\ncert = \"a.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key"), "{err}");
    }

    #[test]
    fn site_rules_and_virtual_hosts() {
        let args = serve(
            &["--header", "X-From: flag"],
            r#"
            iface = "eth0"
            ip = "203.0.113.7"
            error-page = ["404=/404.html", "500=/oops.html"]
            fallback = "/index.html"
            header = ["X-From: file"]

            [[cache-control]]
            pattern = "*.css"
            value = "max-age=60"

            [[redirect]]
            from = "/old"
            to = "https://example.com/new"

            [[site]]
            names = ["b.example", "*.b.example"]
            root = "sites/b"
            error-page = "404=/missing.html"

            [[site.redirect]]
            from = "/x"
            to = "/y"
            status = 302
            "#,
        )
        .unwrap();
        assert_eq!(
            args.error_pages,
            vec![(404, "/404.html".into()), (500, "/oops.html".into())]
        );
        assert_eq!(args.fallback.as_deref(), Some("/index.html"));
        assert_eq!(
            args.headers,
            vec![("X-From".into(), "flag".into())],
            "the flag wins"
        );
        assert_eq!(args.cache_control.len(), 1);
        assert_eq!(args.redirects[0].status, 301, "301 when not said");
        let b = &args.site_tables[0];
        assert!(b.names.matches("x.b.example") && b.names.matches("B.EXAMPLE"));
        assert_eq!(b.root, PathBuf::from("/etc/bypass/sites/b"));
        assert_eq!(b.rules.error_page(404), Some("/missing.html"));
        assert_eq!(b.rules.redirect("/x").map(|r| r.status), Some(302));
        assert!(b.rules.headers.is_empty(), "a table has its own rules");
        // The flag's spelling works in a file too (TOML cannot mix it with
        // [[site]] tables under one key, but an inline array can).
        let args = serve(
            &[],
            "iface = \"x\"\nip = \"1.2.3.4\"\nsite = [\"a.example=sites/a\", { names = \"c.example\", root = \"sites/c\" }]\n",
        )
        .unwrap();
        assert_eq!(args.sites[0].1, PathBuf::from("/etc/bypass/sites/a"));
        assert_eq!(
            args.site_tables[0].root,
            PathBuf::from("/etc/bypass/sites/c")
        );
        for bad in [
            "[[site]]\nnames = []\nroot = \"x\"\n",
            "[[redirect]]\nfrom = \"/a\"\nto = \"/b\"\nstatus = 200\n",
            "[[cache-control]]\npattern = \"*.css\"\n",
            "error-page = \"999=/x\"\n",
            "[[site]]\nnames = \"a\"\nroot = \"x\"\nbogus = 1\n",
        ] {
            assert!(serve(&[], bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_wins_and_defaults_lose() {
        let text = "iface = \"eth0\"\nip = \"10.0.0.1\"\nport = 8080\nmax-connections = 5\nroot = \"/srv/www\"\n";
        let args = serve(&["--port", "81", "--iface", "bpx0"], text).unwrap();
        assert_eq!(args.iface.as_deref(), Some("bpx0"), "flag over file");
        assert_eq!(args.ports, vec![81], "a repeated flag replaces the list");
        assert_eq!(args.max_connections, 5, "file over default");
        assert_eq!(args.root, PathBuf::from("/srv/www"));
        let args = serve(&["--iface", "x", "--ip", "10.0.0.2"], "").unwrap();
        assert_eq!(args.ports, vec![80], "an empty file keeps the defaults");
        assert_eq!(args.root, PathBuf::from("./www"));
        assert_eq!(args.reload_interval, 2);
        let args = serve(&["--busy-poll=false"], "busy-poll = true").unwrap();
        assert!(
            !args.busy_poll,
            "a switch the file turns on, the command line turns off"
        );
        let args = serve(&["--root", "mine"], "root = \"theirs\"").unwrap();
        assert_eq!(
            args.root,
            PathBuf::from("mine"),
            "a flag's path stays as given"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = |text: &str| format!("{:#}", serve(&[], text).unwrap_err());
        assert!(err("max-conections = 3").contains("max-conections"), "typo");
        assert!(err("frame-size = 1000").contains("frame-size"));
        assert!(err("ip = \"10.0.0\"").contains("ip"));
        assert!(err("cores = \"x\"").contains("cores"));
        assert!(err("metrics-allow = \"10.0.0.0/40\"").contains("metrics-allow"));
        assert!(err("port = []").contains("port"));
        assert!(err("port = 0").contains("at least one --port or --tls-port"));
        let https_only = serve(&[], "port = 0\ntls-port = 443").unwrap();
        assert!(https_only.ports.is_empty(), "port 0: no plain port");
        assert!(err("queues = \"two\"").contains("queues"));
        assert!(err("max-header-fields = 500").contains("max-header-fields"));
        assert!(err("max-request-line = 10").contains("max-request-line"));
        assert!(
            err("max-head = 1000").contains("max-head"),
            "below the request line"
        );
        assert!(
            err("iface = ").contains("line 1"),
            "syntax errors carry a line"
        );
        assert!(err("cores = [0, 1]\nbusy-poll = 1").contains("busy-poll"));
    }

    #[test]
    fn the_shipped_example_parses() {
        let args = serve(&[], include_str!("../../scripts/bypass.toml")).unwrap();
        assert!(args.iface.is_some() && args.ip.is_some());
        assert!(
            args.shared_ip,
            "the example is for a server reached over SSH"
        );
    }
}
