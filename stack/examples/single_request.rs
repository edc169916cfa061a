//! The single-request program: the smallest whole use of the RFC 793 user
//! interface. Initialise the stack on an interface, open one passive
//! connection on port 80, receive one HTTP request, send one HTTP/1.1
//! response (a small HTML page), close, shut the stack down (XDP detached)
//! and exit 0.
//!
//! ```sh
//! sudo scripts/lab up
//! sudo scripts/lab exec srv target/release/examples/single_request --iface bpx0 --ip 10.99.0.1
//! sudo scripts/lab exec cli curl http://10.99.0.1/
//! ```

use std::{net::Ipv4Addr, process::ExitCode, time::Duration, time::SystemTime};

use bypass_stack::{
    api::user::{Stack, StackConfig, StackDevice, TcpConnection, UserError},
    launch::LaunchConfig,
    runtime::TcpSetup,
    tcp::{config::TcpConfig, shard::ShardConfig},
};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Serve one HTTP request on the bypass userspace TCP/IP stack, then exit")]
struct Args {
    /// Interface to serve on.
    #[arg(long)]
    iface: String,
    /// The stack's address (owned: the kernel must not have it).
    #[arg(long)]
    ip: Ipv4Addr,
    /// Port to listen on.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Seconds to wait for the request.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

const PAGE: &str = "<!doctype html>
<html lang=\"en\">
<head><meta charset=\"utf-8\"><title>bypass</title></head>
<body>
<h1>Hello from bypass</h1>
<p>This page came over a userspace TCP/IP stack on AF_XDP, through the RFC 793 user interface.</p>
</body>
</html>
";

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Reads until a whole request head is in; returns the response to send.
fn read_request(conn: &TcpConnection, timeout: Duration) -> Result<Vec<u8>, UserError> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                eprintln!(
                    "single_request: {} {} HTTP/1.{}",
                    req.method.unwrap_or("?"),
                    req.path.unwrap_or("?"),
                    req.version.unwrap_or(1)
                );
                return Ok(match req.method {
                    Some("GET") => response("200 OK", &[], PAGE.as_bytes(), true),
                    Some("HEAD") => response("200 OK", &[], PAGE.as_bytes(), false),
                    _ => response(
                        "405 Method Not Allowed",
                        &[("Allow", "GET, HEAD")],
                        b"method not allowed\n",
                        true,
                    ),
                });
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Ok(response(
                    "431 Request Header Fields Too Large",
                    &[],
                    b"request head too large\n",
                    true,
                ))
            }
            Err(_) => return Ok(response("400 Bad Request", &[], b"bad request\n", true)),
        }
        let n = conn.receive_blocking(&mut buf, timeout)?;
        head.extend_from_slice(&buf[..n]);
    }
}

fn response(status: &str, extra: &[(&str, &str)], body: &[u8], with_body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nDate: {}\r\nServer: bypass-single-request\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        httpdate::fmt_http_date(SystemTime::now()),
        body.len()
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

fn serve(stack: &Stack, args: &Args) -> Result<(), String> {
    let timeout = Duration::from_secs(args.timeout);
    let conn = stack
        .open_passive(args.port)
        .map_err(|e| format!("open: {e}"))?;
    eprintln!(
        "single_request: serving one request on {}:{} ({} queue(s))",
        args.ip,
        args.port,
        stack.cores()
    );
    conn.wait_established(timeout)
        .map_err(|e| format!("waiting for a connection: {e}"))?;
    let reply = read_request(&conn, timeout).map_err(|e| format!("receive: {e}"))?;
    conn.send_all(&reply, timeout)
        .map_err(|e| format!("send: {e}"))?;
    conn.close().map_err(|e| format!("close: {e}"))?;
    match conn.wait_closed(timeout) {
        Ok(None) => Ok(()),
        Ok(Some(e)) => Err(format!("the connection ended badly: {e}")),
        Err(e) => Err(format!("waiting for the close: {e}")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let launch = LaunchConfig {
        tcp_ports: vec![args.port],
        ..LaunchConfig::new(&args.iface, args.ip)
    };
    let tcp = TcpSetup::new(
        TcpConfig {
            nagle: false,
            ..TcpConfig::default()
        },
        ShardConfig::default(),
    );
    let stack = match Stack::init(StackConfig {
        device: StackDevice::Interface(launch),
        tcp,
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("single_request: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = serve(&stack, &args);
    let report = stack.shutdown().expect("first shutdown");
    eprintln!(
        "single_request: stopped; XDP detached from {}; total: {}",
        args.iface,
        report.total()
    );
    for e in &report.errors {
        eprintln!("single_request: error: {e}");
    }
    match served {
        Ok(()) if report.errors.is_empty() => {
            eprintln!("single_request: one request served");
            ExitCode::SUCCESS
        }
        Ok(()) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("single_request: error: {e}");
            ExitCode::FAILURE
        }
    }
}
