//! `bypass`: a web server on its own TCP/IP stack over AF_XDP.
//!
//! `serve` brings the stack up on an interface and serves a site from a
//! directory over HTTP/1.1, as an application on the stack's cores (the
//! per-core event API); it also answers ARP and ping for its address in
//! owned-IP mode. TLS arrives on the same command.

mod access_log;
mod acme;
mod admin;
mod cli;
mod config;
mod metrics;
mod privileges;
mod reload;
mod request;
mod response;
mod rules;
mod serve;
mod server;
#[cfg(test)]
mod server_tests;
mod site;
#[cfg(test)]
mod testnet;
mod tls;
#[cfg(test)]
mod tls_tests;

use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    let matches = cli::Cli::command().get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
        cli::Command::Serve(mut args) => match matches
            .subcommand_matches("serve")
            .map_or(Ok(()), |sub| config::apply(&mut args, sub))
            .and_then(|()| serve::run(&args))
        {
            Ok(code) => code,
            Err(e) => {
                eprintln!("bypass: error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
