//! HTTPS over the in-memory link, on virtual time: the whole server (the
//! stack's engine, the per-core HTTP server with its TLS sessions) against
//! a rustls client on a second engine, through seeded loss, reordering and
//! delay. Handshakes for both versions, resumption, records split across
//! segments at many boundaries, close_notify, garbage and plain HTTP, and
//! the handshake timeout.

use std::{
    net::SocketAddrV4,
    sync::{Arc, Mutex},
    time::Duration,
};

use bypass_stack::{
    api::events::{Conn, Core, Handler},
    driver::memlink::Faults,
    tcp::connection::Error,
    time::Instant,
};
use rustls::{pki_types::ServerName, ClientConfig, ClientConnection, RootCertStore};

use crate::{
    server::TlsSettings,
    testnet::{http_config, temp_dir, Net, SERVER_IP},
    tls::{self, Certificates, TlsFailure},
};

const PAGE: &[u8] = b"<h1>hello over TLS</h1>\n";

/// Each ended connection: what arrived, whether close_notify came, and
/// how it ended.
type Ended = Arc<Mutex<Vec<(Vec<u8>, bool, Option<Error>)>>>;

/// What a client connection does.
#[derive(Debug, Clone)]
enum Script {
    /// GET / over TLS, then close_notify and FIN; TLS records go out at
    /// most `chunk` bytes per pass, so they split across segments.
    Get { chunk: usize },
    /// Bytes that are not TLS.
    Raw(Vec<u8>),
    /// Connect and say nothing.
    Silent,
}

struct ClientConn {
    tls: Option<ClientConnection>,
    script: Script,
    /// Ciphertext (or raw bytes) waiting to go, `chunk` per pass.
    out: Vec<u8>,
    requested: bool,
    /// Decrypted response bytes, or raw bytes for `Raw`.
    got: Vec<u8>,
    peer_closed: bool,
    close_notify: bool,
}

#[derive(Default)]
struct Clients {
    config: Option<Arc<ClientConfig>>,
    scripts: Vec<Script>,
    /// (what arrived, whether close_notify came, how it ended)
    done: Ended,
    next: usize,
    open: usize,
}

impl Clients {
    fn pump(state: &mut ClientConn, conn: &mut Conn<'_>) {
        // In: ciphertext into the client session, plaintext out.
        loop {
            let (a, _) = conn.readable();
            if a.is_empty() {
                break;
            }
            match state.tls.as_mut() {
                Some(tls) => {
                    let mut rest = a;
                    let before = rest.len();
                    let _ = tls.read_tls(&mut rest);
                    let used = before - rest.len();
                    conn.consume(used);
                    if tls.process_new_packets().is_err() {
                        break;
                    }
                    let mut buf = [0u8; 4096];
                    loop {
                        match std::io::Read::read(&mut tls.reader(), &mut buf) {
                            Ok(0) => {
                                state.close_notify = true;
                                break;
                            }
                            Ok(n) => state.got.extend_from_slice(&buf[..n]),
                            Err(_) => break,
                        }
                    }
                    if used == 0 {
                        break;
                    }
                }
                None => {
                    let n = a.len();
                    state.got.extend_from_slice(a);
                    conn.consume(n);
                }
            }
        }
        // Out: the request once the handshake is done; close_notify once
        // the response is whole.
        if let Some(tls) = state.tls.as_mut() {
            if !tls.is_handshaking() && !state.requested {
                state.requested = true;
                let req = b"GET / HTTP/1.1\r\nHost: bypass.test\r\n\r\n";
                std::io::Write::write_all(&mut tls.writer(), req).unwrap();
            }
            let whole = state.got.windows(PAGE.len()).any(|w| w == PAGE);
            if whole && !state.close_notify {
                tls.send_close_notify();
                state.close_notify = true;
            }
            while tls.wants_write() {
                let mut v = Vec::new();
                if tls.write_tls(&mut v).is_err() {
                    break;
                }
                state.out.extend_from_slice(&v);
            }
        }
    }
}

impl Handler for Clients {
    type Conn = ClientConn;

    fn start(&mut self, _core: &mut Core<'_, ClientConn>) {}

    fn accepted(&mut self, _conn: &mut Conn<'_>) -> ClientConn {
        unreachable!("the client does not listen")
    }

    fn connected(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        conn.set_nagle(false);
        Self::pump(state, conn);
    }

    fn readable(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        Self::pump(state, conn);
    }

    fn peer_closed(&mut self, state: &mut ClientConn, conn: &mut Conn<'_>) {
        state.peer_closed = true;
        Self::pump(state, conn);
        let _ = conn.shutdown_write();
    }

    fn closed(&mut self, state: ClientConn, why: Option<Error>) {
        self.open -= 1;
        self.done
            .lock()
            .unwrap()
            .push((state.got, state.close_notify, why));
    }

    fn poll(&mut self, core: &mut Core<'_, ClientConn>) {
        // One connection at a time, so the second can resume the first.
        if self.open == 0 && self.next < self.scripts.len() {
            let script = self.scripts[self.next].clone();
            self.next += 1;
            let (tls, out) = match &script {
                Script::Get { .. } => {
                    let name = ServerName::try_from("bypass.test").unwrap();
                    let c = ClientConnection::new(self.config.clone().unwrap(), name).unwrap();
                    (Some(c), Vec::new())
                }
                Script::Raw(bytes) => (None, bytes.clone()),
                Script::Silent => (None, Vec::new()),
            };
            let state = ClientConn {
                tls,
                script,
                out,
                requested: false,
                got: Vec::new(),
                peer_closed: false,
                close_notify: false,
            };
            core.connect(SocketAddrV4::new(SERVER_IP, 443), state)
                .unwrap();
            self.open += 1;
        }
        core.for_each(|state, conn| {
            if !conn.state().is_synchronized() {
                return;
            }
            Self::pump(state, conn);
            let chunk = match state.script {
                Script::Get { chunk } => chunk,
                _ => usize::MAX,
            };
            let n = state.out.len().min(chunk);
            if n > 0 {
                if let Ok(sent) = conn.send(&state.out[..n]) {
                    state.out.drain(..sent);
                }
            }
            if let Script::Raw(_) = state.script {
                if state.out.is_empty() && state.peer_closed {
                    let _ = conn.shutdown_write();
                }
            }
        });
    }
}

/// A server on port 443 with a self-signed certificate for bypass.test,
/// and clients that trust it, running `scripts` one after the other with
/// `versions`.
fn net(
    faults: Faults,
    seed: u64,
    versions: &[&'static rustls::SupportedProtocolVersion],
    scripts: Vec<Script>,
) -> (Net<Clients>, Ended) {
    let state = temp_dir("state");
    let (id, cert_path) = tls::self_signed(&state, &["bypass.test".to_string()]).unwrap();
    let certs = Arc::new(Certificates {
        identities: vec![id],
        acme: None,
    });
    let tls = TlsSettings {
        ports: vec![443],
        config: tls::server_config(certs.clone()).unwrap(),
        certs,
        handshake_timeout: Duration::from_secs(10),
        redirect: false,
        hsts: None,
    };
    let mut roots = RootCertStore::empty();
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    roots
        .add(CertificateDer::from_pem_file(&cert_path).unwrap())
        .unwrap();
    let client_config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let _ = std::fs::remove_dir_all(&state);
    let done = Ended::default();
    let clients = Clients {
        config: Some(Arc::new(client_config)),
        scripts,
        done: done.clone(),
        ..Clients::default()
    };
    let mut config = http_config(Some(tls));
    config.ports = vec![];
    let net = Net::new(faults, seed, config, &[("index.html", PAGE)], clients);
    (net, done)
}

/// Runs until `scripts` connections ended, or virtual time passes `limit`.
fn run(net: &mut Net<Clients>, done: &Ended, scripts: usize, limit: Duration) {
    net.run_until(limit, |_| done.lock().unwrap().len() >= scripts);
}

fn lossy() -> Faults {
    Faults {
        drop: 0.05,
        reorder: 0.05,
        duplicate: 0.02,
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(1),
        reorder_delay: Duration::from_millis(3),
        ..Faults::none()
    }
}

fn has_page(got: &[u8]) -> bool {
    got.starts_with(b"HTTP/1.1 200 OK\r\n") && got.windows(PAGE.len()).any(|w| w == PAGE)
}

#[test]
fn tls13_and_tls12_handshakes_serve_the_page_over_a_lossy_link() {
    for (versions, tls13) in [
        (&[&rustls::version::TLS13][..], true),
        (&[&rustls::version::TLS12][..], false),
    ] {
        for seed in 0..4 {
            let (mut net, ended) = net(
                lossy(),
                seed,
                versions,
                vec![Script::Get { chunk: 1 << 20 }],
            );
            run(&mut net, &ended, 1, Duration::from_secs(120));
            let done = ended.lock().unwrap().clone();
            assert_eq!(done.len(), 1, "seed {seed}: the connection ended");
            let (got, close_notify, _) = &done[0];
            assert!(
                has_page(got),
                "seed {seed}: {:?}",
                String::from_utf8_lossy(got)
            );
            assert!(*close_notify, "seed {seed}: close_notify both ways");
            let c = net.counters();
            assert_eq!(c.tls_full, 1, "seed {seed}");
            assert_eq!((c.tls13, c.tls12), if tls13 { (1, 0) } else { (0, 1) });
            assert_eq!(c.tls_failures.iter().sum::<u64>(), 0, "seed {seed}: {c}");
        }
    }
}

#[test]
fn a_second_connection_resumes_the_first_session() {
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let scripts = vec![
            Script::Get { chunk: 1 << 20 },
            Script::Get { chunk: 1 << 20 },
        ];
        let (mut net, ended) = net(Faults::none(), 7, versions, scripts);
        run(&mut net, &ended, 2, Duration::from_secs(60));
        let done = ended.lock().unwrap().clone();
        assert!(done.iter().all(|(got, _, _)| has_page(got)));
        let c = net.counters();
        assert_eq!((c.tls_full, c.tls_resumed), (1, 1), "{c}");
    }
}

#[test]
fn records_split_across_segments_at_many_boundaries() {
    // The client's records go out a few bytes per segment: the server must
    // put them back together at every cut.
    for chunk in [1, 2, 3, 5, 7, 13, 64, 517, 1000] {
        let (mut net, ended) = net(
            Faults::none(),
            chunk as u64,
            &[&rustls::version::TLS13],
            vec![Script::Get { chunk }],
        );
        run(&mut net, &ended, 1, Duration::from_secs(60));
        let done = ended.lock().unwrap().clone();
        assert!(has_page(&done[0].0), "chunk {chunk}");
        assert_eq!(net.counters().tls_full, 1, "chunk {chunk}");
    }
}

#[test]
fn garbage_and_plain_http_are_answered_counted_and_closed() {
    let mut rng = fastrand::Rng::with_seed(5);
    let garbage: Vec<u8> = (0..300).map(|_| rng.u8(..)).collect();
    let scripts = vec![
        Script::Raw(garbage),
        Script::Raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        // A ClientHello cut short, then silence: the timeout ends it.
        Script::Raw(vec![
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ]),
    ];
    let (mut net, ended) = net(Faults::none(), 3, &[&rustls::version::TLS13], scripts);
    run(&mut net, &ended, 3, Duration::from_secs(60));
    let done = ended.lock().unwrap().clone();
    assert_eq!(done.len(), 3);
    // Garbage: a fatal alert record (content type 21) and a close.
    assert_eq!(done[0].0.first(), Some(&0x15), "{:?}", done[0].0);
    // Plain HTTP: a plain 400 that says what to do.
    let text = String::from_utf8_lossy(&done[1].0);
    assert!(
        text.starts_with("HTTP/1.1 400") && text.contains("speaks HTTPS"),
        "{text}"
    );
    let c = net.counters();
    let count =
        |why: TlsFailure| c.tls_failures[TlsFailure::ALL.iter().position(|&f| f == why).unwrap()];
    assert_eq!(count(TlsFailure::Garbage), 1, "{c}");
    assert_eq!(count(TlsFailure::PlainHttp), 1, "{c}");
    assert_eq!(count(TlsFailure::Timeout), 1, "{c}");
}

#[test]
fn a_silent_client_is_cut_off_after_the_handshake_timeout() {
    let (mut net, ended) = net(
        Faults::none(),
        9,
        &[&rustls::version::TLS13],
        vec![Script::Silent],
    );
    run(&mut net, &ended, 1, Duration::from_secs(30));
    let done = ended.lock().unwrap().clone();
    assert_eq!(done.len(), 1, "the server ended it");
    let ended_at = net.now;
    assert!(
        ended_at >= Instant::ZERO + Duration::from_secs(10)
            && ended_at <= Instant::ZERO + Duration::from_secs(13),
        "{ended_at}"
    );
    let c = net.counters();
    assert_eq!(
        c.tls_failures[TlsFailure::ALL
            .iter()
            .position(|&f| f == TlsFailure::Timeout)
            .unwrap()],
        1
    );
}
