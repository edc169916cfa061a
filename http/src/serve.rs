//! `bypass serve`: bring the stack up, wait for SIGINT/SIGTERM, bring it
//! down, print what every core did.

use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicUsize},
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
    cli::ServeArgs,
    request::Limits,
    server::{HttpConfig, HttpCounters, HttpServer},
    site::Site,
};

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let host = args.ip;
    let (addr, prefix_len) = (host.addr, host.prefix_len);
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
        tcp_ports: args.ports.clone(),
        umem_frames: args.umem_frames,
        frame_size: args.frame_size,
        ..LaunchConfig::new(&args.iface, addr)
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

    let site = Site::load(&args.root, args.max_cached_file)?;
    let (files, bytes) = site.stats();
    let site = Arc::new(site);
    let http = Arc::new(HttpConfig {
        ports: args.ports.clone(),
        limits: Limits::default(),
        max_connections: args.max_connections,
        header_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
    });
    let tcp = TcpSetup::new(
        TcpConfig {
            nagle: false,
            ..TcpConfig::default()
        },
        ShardConfig::default(),
    );
    let open = Arc::new(AtomicUsize::new(0));
    let http_report = Arc::new(Mutex::new(HttpCounters::default()));
    let running = {
        let (site, http, open, report) = (
            site.clone(),
            http.clone(),
            open.clone(),
            http_report.clone(),
        );
        Running::start_with(&config, Some(tcp), move |_queue| {
            EventApp::new(HttpServer::new(
                site.clone(),
                http.clone(),
                open.clone(),
                report.clone(),
            ))
        })?
    };
    let info = running.interface();
    tracing::info!(
        "site {} : {files} file(s), {bytes} bytes cached",
        args.root.display()
    );
    tracing::info!(
        "serving {addr}/{prefix_len} on {} ({}) in {} mode: {} queue(s), XDP {}, AF_XDP {}, {} polling, HTTP on TCP ports {:?}",
        info.name,
        info.mac,
        if args.shared_ip { "shared-IP" } else { "owned-IP" },
        running.queues(),
        running.attach_mode(),
        if args.zero_copy { "zero-copy" } else { "copy" },
        if args.busy_poll { "busy" } else { "adaptive" },
        args.ports,
    );
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && !running.failed() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let failed = running.failed() && !stop.load(std::sync::atomic::Ordering::Relaxed);
    let iface = running.interface().name.clone();
    let report = running.stop();

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
