//! `bypass`: a web server on its own TCP/IP stack over AF_XDP.
//!
//! `serve` brings the stack up on an interface and serves a site from a
//! directory over HTTP/1.1, as an application on the stack's cores (the
//! per-core event API); it also answers ARP and ping for its address in
//! owned-IP mode. TLS arrives on the same command.

mod access_log;
mod cli;
mod metrics;
mod request;
mod response;
mod serve;
mod server;
mod site;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match cli.command {
        cli::Command::Serve(args) => match serve::run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("bypass: error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
