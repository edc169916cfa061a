//! `--admin-listen ADDR:PORT`: `/metrics` and `/healthz` on an ordinary
//! kernel socket, served by a control thread.
//!
//! The stack's own address cannot be reached from the machine it runs on
//! (the kernel does not own it), so a local Prometheus, a load balancer's
//! health check through the host, or `curl localhost` need a socket of the
//! kernel's. This one is deliberately small: one request per connection,
//! GET only, a short read timeout, answered from the same published
//! counters the data-path metrics page uses; nothing here touches a core.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context;

use crate::metrics::Metrics;

/// What `/healthz` says: healthy, or why not.
#[derive(Debug, Default)]
pub struct Health {
    problem: Mutex<Option<String>>,
}

impl Health {
    /// Something is wrong (a core stopped): `/healthz` answers 503 with it.
    pub fn fail(&self, why: String) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Binds `addr` (so a bad address is a start-up error) and serves it on a
/// thread until `stop`.
pub fn spawn(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("--admin-listen {addr}: cannot listen"))?;
    listener
        .set_nonblocking(true)
        .context("--admin-listen: nonblocking")?;
    std::thread::Builder::new()
        .name("bypass-admin".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = answer(stream, &metrics, &health);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        tracing::warn!("--admin-listen: accept: {e}");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
        .context("starting the admin thread")
}

/// Reads one request head (at most 8 KiB, 5 s) and answers it.
fn answer(mut stream: TcpStream, metrics: &Metrics, health: &Health) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let (head_only, (status, content_type, body)) = loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break (req.method == Some("HEAD"), route(&req, metrics, health))
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => break (false, (400, "text/plain", "bad request\n".to_string())),
        }
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        crate::response::reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if head_only {
        return Ok(());
    }
    stream.write_all(body.as_bytes())
}

fn route(
    req: &httparse::Request<'_, '_>,
    metrics: &Metrics,
    health: &Health,
) -> (u16, &'static str, String) {
    let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
    match (req.method, path) {
        (Some("GET" | "HEAD"), "/metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        (Some("GET" | "HEAD"), "/healthz") => match health.problem() {
            None => (200, "text/plain", "ok\n".into()),
            Some(why) => (503, "text/plain", format!("{why}\n")),
        },
        (Some("GET" | "HEAD"), _) => (404, "text/plain", "not found\n".into()),
        _ => (405, "text/plain", "GET only\n".into()),
    }
}
