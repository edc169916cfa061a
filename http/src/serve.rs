//! `bypass serve`: bring the stack up, wait for SIGINT/SIGTERM, bring it
//! down, print what every core did.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::Context;
use bypass_stack::{
    api::events::EventApp,
    counters::Counters,
    driver::DeviceCounters,
    launch::{LaunchConfig, Running},
    runtime::{PollMode, TcpSetup},
    tcp::{config::TcpConfig, shard::ShardConfig},
};

use crate::{
    acme::{self, AcmeSettings, Challenges},
    cli::ServeArgs,
    metrics::Metrics,
    reload::Published,
    reload::{self, SharedSite},
    request::Limits,
    rules::SiteRules,
    server::{HttpConfig, HttpCounters, HttpServer, Shared, TlsSettings, VirtualHost},
    site::{CacheLimits, Site},
    tls::{self, Certificates, Identity},
};

/// HTTPS, when there are --tls-ports: the given certificates, or a
/// self-signed one for --server-name and the address.
/// `previous`: the running HTTPS settings on a reload, whose ticket keys
/// and session cache carry over (resumption survives a reload).
fn tls_settings(
    args: &ServeArgs,
    addr: std::net::Ipv4Addr,
    previous: Option<&TlsSettings>,
    acme: Option<Arc<Challenges>>,
) -> anyhow::Result<Option<TlsSettings>> {
    if args.tls_ports.is_empty() {
        if args.redirect_https || args.hsts.is_some() {
            anyhow::bail!("--redirect-https and --hsts need a --tls-port");
        }
        if !args.certs.is_empty() {
            tracing::warn!("--cert given but no --tls-port: HTTPS is not served");
        }
        return Ok(None);
    }
    let mut identities = Vec::new();
    for (cert, key) in args.certs.iter().zip(&args.keys) {
        let id = Identity::load(cert, key)?;
        tracing::info!(
            "certificate {} for {} (SHA-256 {})",
            id.source,
            if id.names.is_empty() {
                "no DNS names".to_string()
            } else {
                id.names.join(", ")
            },
            id.fingerprint
        );
        identities.push(id);
    }
    if let Some(settings) = acme_settings(args)? {
        for (name, id) in settings.stored() {
            tracing::info!("ACME certificate for {name} (SHA-256 {})", id.fingerprint);
            identities.push(id);
        }
    }
    if identities.is_empty() {
        let mut names = args.server_names.clone();
        names.extend(args.acme_domains.iter().cloned());
        names.push(addr.to_string());
        let (id, path) = tls::self_signed(&args.state_dir, &names).with_context(|| {
            format!(
                "making a self-signed certificate in {} (--state-dir)",
                args.state_dir.display()
            )
        })?;
        if let (Some(user), true) = (&args.user, nix::unistd::geteuid().is_root()) {
            // What --user will need to read it again on SIGHUP.
            let target = crate::privileges::lookup(user)?;
            let dir = args.state_dir.join("self-signed");
            for p in ["", "cert.pem", "key.pem", "names"] {
                let p = dir.join(p);
                nix::unistd::chown(&p, Some(target.uid), Some(target.gid))
                    .with_context(|| format!("handing {} to --user {user}", p.display()))?;
            }
        }
        tracing::warn!(
            "HTTPS uses a SELF-SIGNED certificate for {}: browsers will warn until you trust it or give --cert/--key; {} (SHA-256 {})",
            names.join(", "),
            path.display(),
            id.fingerprint
        );
        identities.push(id);
    }
    let certs = Arc::new(Certificates { identities, acme });
    let mut config = tls::server_config(certs.clone())?;
    if let Some(old) = previous {
        let c = Arc::make_mut(&mut config);
        c.ticketer = old.config.ticketer.clone();
        c.session_storage = old.config.session_storage.clone();
    }
    Ok(Some(TlsSettings {
        ports: args.tls_ports.clone(),
        config,
        certs,
        handshake_timeout: Duration::from_secs(args.tls_handshake_timeout.max(1)),
        redirect: args.redirect_https,
        hsts: args.hsts,
    }))
}

/// The HTTP settings every core shares, from the flags (and on a reload,
/// keeping what must carry over from `previous`).
fn http_config(
    args: &ServeArgs,
    addr: std::net::Ipv4Addr,
    previous: Option<&HttpConfig>,
) -> anyhow::Result<HttpConfig> {
    crate::config::check_limits(args)?;
    // One set of challenge answers for the life of the process: the ACME
    // thread holds it.
    let acme = match previous {
        Some(p) => p.acme.clone(),
        None => (!args.acme_domains.is_empty()).then(|| Arc::new(Challenges::default())),
    };
    Ok(HttpConfig {
        ports: args.ports.clone(),
        limits: Limits {
            request_line: args.max_request_line as usize,
            header_count: usize::from(args.max_header_fields),
            head_bytes: args.max_head as usize,
            body_bytes: args.max_body,
        },
        max_connections: args.max_connections,
        header_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        send_timeout: Duration::from_secs(args.send_timeout.max(1)),
        acme_webroot: args.acme_webroot.clone(),
        rules: Arc::new(default_rules(args)),
        serve_dotfiles: args.serve_dotfiles,
        tls: tls_settings(
            args,
            addr,
            previous.and_then(|p| p.tls.as_ref()),
            acme.clone(),
        )?,
        acme,
    })
}

/// `--acme-domain` and its companions, checked: what the ACME thread
/// does, or `None` without ACME.
fn acme_settings(args: &ServeArgs) -> anyhow::Result<Option<AcmeSettings>> {
    if args.acme_domains.is_empty() {
        return Ok(None);
    }
    anyhow::ensure!(
        !args.tls_ports.is_empty(),
        "--acme-domain needs a --tls-port to serve the certificate on"
    );
    let kinds = acme::Kind::answerable(&args.ports, &args.tls_ports);
    for name in &args.acme_domains {
        anyhow::ensure!(
            rcgen::CertificateParams::new(vec![name.clone()]).is_ok() && !name.contains('*'),
            "--acme-domain {name:?}: not a DNS name or IP address (wildcards need dns-01, which bypass does not answer)"
        );
    }
    let directory = match (&args.acme_directory, args.acme_staging) {
        (Some(_), true) => anyhow::bail!("--acme-directory and --acme-staging: choose one"),
        (Some(url), false) => url.clone(),
        (None, true) => acme::LETS_ENCRYPT_STAGING.to_string(),
        (None, false) => acme::LETS_ENCRYPT.to_string(),
    };
    anyhow::ensure!(
        directory.starts_with("https://"),
        "--acme-directory {directory}: an https:// URL (RFC 8555 §6.1)"
    );
    if let Some(root) = &args.acme_ca_root {
        std::fs::metadata(root).with_context(|| format!("--acme-ca-root {}", root.display()))?;
    }
    Ok(Some(AcmeSettings {
        names: args.acme_domains.clone(),
        email: args.acme_email.clone(),
        directory,
        ca_root: args.acme_ca_root.clone(),
        state_dir: args.state_dir.clone(),
        renew_after: args.acme_renew_after.map(Duration::from_secs),
        retry_base: Duration::from_secs(args.acme_retry_base.max(1)),
        kinds,
    }))
}

/// The default site's rules, from the flags and the config file.
fn default_rules(args: &ServeArgs) -> SiteRules {
    SiteRules {
        redirects: args.redirects.clone(),
        fallback: args.fallback.clone(),
        error_pages: args.error_pages.clone(),
        headers: args.headers.clone(),
        cache_control: args.cache_control.clone(),
    }
}

/// Every virtual host: `--site` ones with the default site's rules,
/// `[[site]]` tables with their own; each loaded now (a bad root stops
/// start-up), with the fingerprint its reload watcher starts from.
fn virtual_hosts(
    args: &ServeArgs,
    limits: CacheLimits,
) -> anyhow::Result<Vec<(VirtualHost, PathBuf, u64)>> {
    let spelled = args
        .sites
        .iter()
        .map(|(names, root)| (names.clone(), root.clone(), default_rules(args)));
    let tables = args
        .site_tables
        .iter()
        .map(|t| (t.names.clone(), t.root.clone(), t.rules.clone()));
    let mut out = Vec::new();
    for (names, root, rules) in spelled.chain(tables) {
        let site =
            Site::load(&root, limits).with_context(|| format!("site {}", names.0.join(",")))?;
        let (files, bytes) = site.stats();
        tracing::info!(
            "site {} for {}: {files} file(s), {bytes} bytes cached",
            root.display(),
            names.0.join(", ")
        );
        let fingerprint = site.seen();
        out.push((
            VirtualHost {
                names,
                site: SharedSite::new(site),
                rules: Arc::new(rules),
            },
            root,
            fingerprint,
        ));
    }
    Ok(out)
}

/// Settings a reload cannot change while running (the interface, the
/// address, the queues, the ports the XDP program steers, what is read
/// only at start...), each with its flag's name; `$apply` is called with
/// the list.
macro_rules! restart_only {
    ($apply:ident) => {
        $apply!(
            iface => "iface", ip => "ip", gateway => "gateway", queues => "queues",
            cores => "cores", root => "root", ports => "port", tls_ports => "tls-port",
            metrics_path => "metrics-path", metrics_allow => "metrics-allow",
            admin_listen => "admin-listen", access_log => "access-log",
            access_log_format => "access-log-format", stats_interval => "stats-interval",
            sites => "site", site_tables => "site",
            reload_interval => "reload-interval", max_cached_file => "max-cached-file",
            max_cache_bytes => "max-cache-bytes", memory_per_core => "memory-per-core",
            user => "user", busy_poll => "busy-poll", shared_ip => "shared-ip", zero_copy => "zero-copy",
            generic_xdp => "generic-xdp", umem_frames => "umem-frames", frame_size => "frame-size",
            acme_domains => "acme-domain", acme_email => "acme-email",
            acme_directory => "acme-directory", acme_staging => "acme-staging",
            acme_ca_root => "acme-ca-root", acme_renew_after => "acme-renew-after",
            acme_retry_base => "acme-retry-base"
        )
    };
}

/// The names of the restart-only settings that differ, for the log.
fn needs_restart(old: &ServeArgs, new: &ServeArgs) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! compare {
        ($($field:ident => $name:literal),*) => {
            $(if old.$field != new.$field { changed.push($name); })*
        };
    }
    restart_only!(compare);
    changed
}

/// The certificate and key files' stat, to notice certbot renewing them
/// (following certbot's symlinks: a renewal points them at new files).
fn cert_stamp(args: &ServeArgs) -> Vec<Option<(u64, i64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    args.certs
        .iter()
        .chain(&args.keys)
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.mtime(), m.ino()))
        })
        .collect()
}

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let iface = args
        .iface
        .as_deref()
        .context("--iface is required (on the command line or in --config)")?;
    crate::config::check_limits(args)?;
    let host = args
        .ip
        .context("--ip is required (on the command line or in --config)")?;
    let (addr, prefix_len) = (host.addr, host.prefix_len);
    // Looked up first: a bad name stops us before anything is set up.
    let drop_to = args
        .user
        .as_deref()
        .map(crate::privileges::lookup)
        .transpose()?;
    let config = LaunchConfig {
        prefix_len,
        gateway: args.gateway,
        queues: args.queues,
        cpus: args.cores.as_ref().map(|c| c.0.clone()),
        poll: if args.busy_poll {
            PollMode::Busy
        } else {
            PollMode::default()
        },
        shared_ip: args.shared_ip,
        zero_copy: args.zero_copy,
        generic_xdp: args.generic_xdp,
        tcp_ports: args.ports.iter().chain(&args.tls_ports).copied().collect(),
        umem_frames: args.umem_frames,
        frame_size: args.frame_size,
        ..LaunchConfig::new(iface, addr)
    };

    // Signals first, so a SIGTERM during start-up still stops us cleanly.
    // The first SIGINT/SIGTERM stops gracefully; a second one exits at once
    // (the kernel then releases the XDP program and the sockets).
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    // SIGUSR1 (log rotation) must never take the default action, which
    // kills the process: caught from the start, with or without a log.
    let usr1 = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, usr1.clone())
        .context("installing signal handlers")?;
    // SIGHUP reloads (systemctl reload, certbot's deploy hook), as nginx
    // users expect; its default action would kill us.
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("installing signal handlers")?;

    let limits = CacheLimits {
        max_file: args.max_cached_file,
        max_total: args.max_cache_bytes,
    };
    let site = Site::load(&args.root, limits)?;
    let (files, bytes) = site.stats();
    // What the load saw: a change made during it shows at the first look.
    let fingerprint = site.seen();
    let site = SharedSite::new(site);
    let vhosts = virtual_hosts(args, limits)?;
    let vhost_roots: Vec<(PathBuf, Arc<SharedSite>, u64)> = vhosts
        .iter()
        .map(|(v, root, fp)| (root.clone(), v.site.clone(), *fp))
        .collect();
    let http = Published::new(http_config(args, addr, None)?);
    let tcp = TcpSetup::new(
        TcpConfig {
            nagle: false,
            ..TcpConfig::default()
        },
        ShardConfig {
            // Every core may get all of them (RSS is not even), plus room
            // for connections waiting out TIME-WAIT. A free slot costs a
            // few words; a connection's state is allocated when it opens.
            max_connections: ShardConfig::default().max_connections.max(
                args.max_connections
                    .saturating_add(args.max_connections / 4),
            ),
            memory_budget: args.memory_per_core.saturating_mul(1 << 20),
            ..ShardConfig::default()
        },
    );
    let http_report = Arc::new(Mutex::new(HttpCounters::default()));
    let metrics = Arc::new(Metrics::new(
        args.metrics_path.clone(),
        args.metrics_allow.clone(),
    ));
    // Opened once here so a bad path is a start-up error; each core opens
    // its own handle.
    // SIGUSR1 reopens it (log rotation): the flag is turned into a
    // generation number the cores compare once a second.
    let log_reopen = Arc::new(AtomicU64::new(0));
    if let Some(path) = &args.access_log {
        crate::access_log::open(path, log_reopen.clone(), args.access_log_format)
            .with_context(|| format!("access log {}", path.display()))?;
        // The cores open their own handles, possibly after --user took
        // effect: the file is the user's.
        if let Some(target) = &drop_to {
            nix::unistd::chown(path, Some(target.uid), Some(target.gid))
                .with_context(|| format!("handing access log {} to --user", path.display()))?;
        }
    }
    // Bound before the stack starts: a bad address stops us before XDP is
    // attached.
    let health = Arc::new(crate::admin::Health::default());
    let admin_stop = Arc::new(AtomicBool::new(false));
    let admin = match args.admin_listen {
        Some(addr) => {
            let thread =
                crate::admin::spawn(addr, metrics.clone(), health.clone(), admin_stop.clone())?;
            tracing::info!("admin: /metrics and /healthz on http://{addr}");
            Some(thread)
        }
        None => None,
    };
    let access_log = args.access_log.clone();
    let log_format = args.access_log_format;
    let running = {
        let shared = Shared {
            vhosts: vhosts.iter().map(|(v, _, _)| v.clone()).collect(),
            site: site.clone(),
            config: http.clone(),
            open: Arc::new(AtomicUsize::new(0)),
            report: http_report.clone(),
            metrics: metrics.clone(),
        };
        let log_reopen = log_reopen.clone();
        Running::start_with(&config, Some(tcp), move |queue| {
            let access_log = access_log.as_deref().and_then(|p| {
                crate::access_log::open(p, log_reopen.clone(), log_format)
                    .inspect_err(|e| tracing::error!("access log {}: {e}", p.display()))
                    .ok()
            });
            EventApp::new(HttpServer::new(&shared, queue as usize, access_log))
        })?
    };
    metrics.set_stack(running.live());
    // The ACME client: its state directory made (and handed to --user)
    // while we are still root; the thread starts after privileges drop.
    let acme_changed = Arc::new(AtomicBool::new(false));
    let acme_stop = Arc::new(AtomicBool::new(false));
    let acme = match acme_settings(args)? {
        Some(settings) => {
            let made = settings.store().create(&settings.names).with_context(|| {
                format!(
                    "making the ACME state in {} (--state-dir)",
                    args.state_dir.display()
                )
            })?;
            if let Some(target) = &drop_to {
                for dir in made {
                    nix::unistd::chown(&dir, Some(target.uid), Some(target.gid))
                        .with_context(|| format!("handing {} to --user", dir.display()))?;
                }
            }
            let status = Arc::new(acme::Status::default());
            metrics.set_acme(status.clone());
            let challenges = http
                .current()
                .acme
                .clone()
                .expect("challenges exist with --acme-domain");
            Some((settings, challenges, status))
        }
        None => None,
    };
    if let Some(target) = &drop_to {
        crate::privileges::drop_to(target)?;
        tracing::info!(
            "running as user {} (uid {}, gid {}) with no capabilities",
            target.name,
            target.uid,
            target.gid
        );
    }
    if let Some((settings, challenges, status)) = acme {
        if !args.ports.contains(&80) && !args.tls_ports.contains(&443) {
            tracing::warn!(
                "ACME: a CA validates on port 80 (http-01) or 443 (tls-alpn-01), and neither is served here: it works only if something forwards one of them to {:?}",
                args.ports.iter().chain(&args.tls_ports).collect::<Vec<_>>()
            );
        }
        tracing::info!(
            "ACME: certificates for {} from {} (challenges: {})",
            settings.names.join(", "),
            settings.directory,
            settings
                .kinds
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", then ")
        );
        // Not joined at exit: it may be waiting on the CA, and holds
        // nothing a kill could leave half-written (files are renamed in).
        acme::spawn(
            settings,
            acme::Shared {
                challenges,
                status,
                changed: acme_changed.clone(),
                stop: acme_stop.clone(),
            },
        )
        .context("starting the ACME thread")?;
    }
    let info = running.interface();
    tracing::info!(
        "site {} : {files} file(s), {bytes} bytes cached",
        args.root.display()
    );
    tracing::info!(
        "serving {addr}/{prefix_len} on {} ({}) in {} mode: {} queue(s), XDP {}, AF_XDP {}, {} polling, HTTP on TCP ports {:?}, HTTPS on {:?}",
        info.name,
        info.mac,
        if args.shared_ip { "shared-IP" } else { "owned-IP" },
        running.queues(),
        running.attach_mode(),
        if args.zero_copy { "zero-copy" } else { "copy" },
        if args.busy_poll { "busy" } else { "adaptive" },
        args.ports,
        args.tls_ports,
    );
    let reload_stop = Arc::new(AtomicBool::new(false));
    // One reload thread per site: the default one and each virtual host.
    let mut reloaders = Vec::new();
    if args.reload_interval > 0 {
        let every = Duration::from_secs(args.reload_interval);
        let sites =
            std::iter::once((args.root.clone(), site.clone(), fingerprint)).chain(vhost_roots);
        for (root, shared, fp) in sites {
            let watcher = reload::Watcher::new(root, limits, fp);
            reloaders.push(
                reload::spawn(watcher, every, shared, reload_stop.clone())
                    .context("starting the site reload thread")?,
            );
        }
    }
    let stats_every = Duration::from_secs(args.stats_interval);
    let mut last_stats = (std::time::Instant::now(), HttpCounters::default());
    // What is running now: a reload compares against it and replaces it.
    let mut current = args.clone();
    let cert_every = Duration::from_secs(args.reload_interval.max(1));
    let (mut cert_seen, mut cert_checked) = (cert_stamp(args), std::time::Instant::now());
    while !stop.load(Ordering::Relaxed) && !running.failed() {
        std::thread::sleep(Duration::from_millis(50));
        if hup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reloading the configuration, the certificates and the site");
            match reload_all(&current, addr, &http) {
                Ok(new) => {
                    // The site now, from the root that is served.
                    match Site::reload(&current.root, limits, &site.current()) {
                        Ok(s) => site.publish(s),
                        Err(e) => tracing::error!(
                            "SIGHUP: the site did not load, the old one stays: {e:#}"
                        ),
                    }
                    if current.access_log.is_some() {
                        log_reopen.fetch_add(1, Ordering::Relaxed);
                    }
                    cert_seen = cert_stamp(&new);
                    current = new;
                }
                Err(e) => {
                    tracing::error!("SIGHUP: reload failed, everything stays as it was: {e:#}")
                }
            }
        }
        if !current.certs.is_empty() && cert_checked.elapsed() >= cert_every {
            cert_checked = std::time::Instant::now();
            let stamp = cert_stamp(&current);
            if stamp != cert_seen {
                // Give the writer a moment to finish (certbot renames into
                // place, but a copy by hand may be half-way).
                std::thread::sleep(Duration::from_millis(200));
                match http_config(&current, addr, Some(&http.current())) {
                    Ok(config) => {
                        http.publish(config);
                        tracing::info!("certificate files changed on disk: reloaded");
                        cert_seen = cert_stamp(&current);
                    }
                    Err(e) => {
                        // Not yet whole, or broken: keep serving the old
                        // ones and look again next time.
                        tracing::warn!("certificate files changed but do not load yet: {e:#}");
                        cert_seen = stamp;
                    }
                }
            }
        }
        if acme_changed.swap(false, Ordering::Acquire) {
            match http_config(&current, addr, Some(&http.current())) {
                Ok(config) => {
                    http.publish(config);
                    tracing::info!("ACME: the new certificate is served by every core");
                }
                Err(e) => tracing::error!("ACME: the new certificate does not load: {e:#}"),
            }
        }
        if usr1.swap(false, Ordering::Relaxed) {
            if args.access_log.is_some() {
                log_reopen.fetch_add(1, Ordering::Relaxed);
                tracing::info!("SIGUSR1: reopening the access log");
            } else {
                tracing::info!("SIGUSR1: no access log to reopen");
            }
        }
        if !stats_every.is_zero() && last_stats.0.elapsed() >= stats_every {
            last_stats = log_stats(&metrics, last_stats);
        }
    }
    let failed = running.failed() && !stop.load(Ordering::Relaxed);
    health.fail(if failed {
        "a core stopped on an error (see the log)".into()
    } else {
        "stopping".into()
    });
    let iface = running.interface().name.clone();
    let report = running.stop();
    reload_stop.store(true, Ordering::Relaxed);
    admin_stop.store(true, Ordering::Relaxed);
    acme_stop.store(true, Ordering::Relaxed);
    if let Some(admin) = admin {
        let _ = admin.join();
    }
    for reloader in reloaders {
        if reloader.join().is_err() {
            eprintln!("bypass: error: a site reload thread panicked; that site stopped reloading");
        }
    }

    let mut total = Counters::default();
    let mut device = DeviceCounters::default();
    for core in &report.cores {
        let cpu = core.core.map_or_else(|| "-".into(), |c| c.to_string());
        eprintln!(
            "bypass: queue {} cpu {}: {}",
            core.queue, cpu, core.counters
        );
        eprintln!("bypass: queue {} device: {}", core.queue, core.device);
        total.accumulate(&core.counters);
        device.accumulate(&core.device);
    }
    eprintln!("bypass: total: {total}");
    if let Ok(h) = http_report.lock() {
        eprintln!("bypass: http: {h}");
    }
    eprintln!("bypass: total device: {device}");
    for (queue, c) in report.xdp.iter().enumerate() {
        eprintln!(
            "bypass: xdp queue {queue}: steered={} passed={}",
            c.steered, c.passed
        );
    }
    for e in &report.errors {
        eprintln!("bypass: error: {e}");
    }
    eprintln!("bypass: stopped; XDP detached from {iface}");
    Ok(if failed || !report.errors.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// SIGHUP: the flags again (the command line, and --config read anew),
/// the settings and certificates built from them and published to the
/// cores; on any error nothing changes. Returns the new flags.
fn reload_all(
    current: &ServeArgs,
    addr: std::net::Ipv4Addr,
    http: &Published<HttpConfig>,
) -> anyhow::Result<ServeArgs> {
    let new = crate::config::reload_args()?;
    for name in needs_restart(current, &new) {
        tracing::warn!("SIGHUP: {name} changed: that takes a restart; still using the old value");
    }
    // Everything that needs a restart keeps its running value.
    let mut applied = new.clone();
    macro_rules! keep {
        ($($field:ident => $name:literal),*) => {
            $(applied.$field = current.$field.clone();)*
        };
    }
    restart_only!(keep);
    let config = http_config(&applied, addr, Some(&http.current()))?;
    http.publish(config);
    tracing::info!("SIGHUP: settings and certificates reloaded");
    Ok(applied)
}

/// The periodic one-line stats log: connections, request rate by class
/// since the last line, traffic and drops.
fn log_stats(
    metrics: &Metrics,
    (since, before): (std::time::Instant, HttpCounters),
) -> (std::time::Instant, HttpCounters) {
    let now = std::time::Instant::now();
    let secs = now.duration_since(since).as_secs_f64().max(1e-3);
    let http = metrics.http_total();
    let (stack, connections) = metrics.stack_total();
    let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
    tracing::info!(
        "stats: {connections} TCP connection(s), {:.0} req/s (2xx {:.0}/s, 3xx {:.0}/s, 4xx {:.0}/s, 5xx {:.0}/s), {:.1} MB/s out, {} refused, {} timeouts, {} retransmits, {} RTOs, {} drops",
        rate(http.requests, before.requests),
        rate(http.by_class[2], before.by_class[2]),
        rate(http.by_class[3], before.by_class[3]),
        rate(http.by_class[4], before.by_class[4]),
        rate(http.by_class[5], before.by_class[5]),
        rate(http.body_bytes, before.body_bytes) / 1e6,
        http.refused,
        http.timeouts,
        stack.tcp_retransmits,
        stack.tcp_timeouts,
        stack.total_drops(),
    );
    (now, http)
}
