//! HTTPS on the stack's own cores: TLS 1.3 and 1.2 with rustls, one
//! session per connection, driven from the core's loop (ciphertext from
//! TCP's receive buffer into rustls, plaintext out to the HTTP parser;
//! responses encrypted into records written into TCP's send buffer). No
//! thread hop and no socket: rustls only ever sees byte slices.
//!
//! Choices, and why:
//! - **Crypto provider: ring**, measured against aws-lc-rs (rustls 0.23.46,
//!   one core, 256 MiB in 16 KiB writes after a TLS 1.3 handshake,
//!   medians of 21 alternating runs, 2026-12-01): AES-256-GCM encrypts at
//!   about 4.0-4.4 GB/s with ring and 5.5-5.6 GB/s with aws-lc-rs (1.36-1.39
//!   times), decrypts at 2.6-2.8 vs 3.1-3.3 GB/s, ChaCha20-Poly1305 is the
//!   same (1.1-1.2 GB/s), and aws-lc-rs does 9% more full handshakes. A
//!   clean release build of rustls costs 46-54 s with ring and 113-119 s
//!   with aws-lc-rs (a 2.2 times larger binary). The stack moves about
//!   0.3 GB/s per core over HTTPS in the lab, so ring's encryption is some
//!   8% of a core there and aws-lc-rs would save about 2%; the build time
//!   counts on every CI run and fresh machine. Revisit on a NIC where a
//!   core moves several GB/s.
//! - **rustls' buffered `ServerConnection`**, measured against the
//!   unbuffered API (`UnbufferedServerConnection`, encrypting straight into
//!   a preallocated buffer): within ±2.5% (noise), because rustls 0.23
//!   allocates and copies each record once internally either way, while
//!   the unbuffered API leaves the handshake, tickets, alerts and key
//!   updates to the caller.
//! - **Sessions:** TLS 1.3 tickets and TLS 1.2 tickets from one rotating
//!   ticketer shared by all cores (ring's `Ticketer`: a new key every 6
//!   hours, tickets valid 12 hours), plus a bounded session-ID cache
//!   (4096 entries) for TLS 1.2 clients without tickets; no 0-RTT (early
//!   data could be replayed).
//! - **Limits:** rustls refuses records over 16 KiB + overhead, buffers at
//!   most 16 KiB of received plaintext before it stops reading, and we cap
//!   what is queued for sending at what TCP's send buffer can take. A
//!   handshake must finish within `--tls-handshake-timeout`.

use std::{
    fmt,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use crate::acme::challenges::ACME_TLS_ALPN;
use anyhow::{anyhow, bail, Context};
use bypass_stack::api::events::Conn;
use rustls::{
    crypto::{ring as provider, CryptoProvider},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    server::{ClientHello, ResolvesServerCert, ServerConfig, ServerSessionMemoryCache},
    sign::CertifiedKey,
    HandshakeKind, ProtocolVersion, ServerConnection,
};

/// Bytes a record adds to its plaintext at most (TLS 1.2 AES-GCM: 5-byte
/// header, 8-byte explicit nonce, 16-byte tag; TLS 1.3 adds 22).
const RECORD_OVERHEAD: usize = 29;
/// Largest plaintext per record (RFC 8446 §5.1).
const RECORD_PAYLOAD: usize = 16 * 1024;
/// The answer to plaintext HTTP on a TLS port.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 44\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use an https:// URL\n";
/// Session IDs kept for TLS 1.2 resumption without tickets.
const SESSION_CACHE: usize = 4096;
/// Largest plaintext kept decrypted and not yet read by HTTP.
const PLAINTEXT_BUFFER: usize = 32 * 1024;

fn crypto() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(provider::default_provider()))
        .clone()
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// One certificate chain with its key, and the names it is valid for.
pub struct Identity {
    pub key: Arc<CertifiedKey>,
    /// Where it came from, for logs and errors.
    pub source: String,
    /// DNS names in its subjectAltName, lower case (wildcards kept).
    pub names: Vec<String>,
    /// SHA-256 of the end-entity certificate, hex.
    pub fingerprint: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("source", &self.source)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A PEM chain (end entity first) and its PEM private key. Every error
    /// names the file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Identity> {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| anyhow!("certificate {}: {}", cert.display(), pem_error(&e)))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("certificate {}: {}", cert.display(), pem_error(&e)))?;
        if chain.is_empty() {
            bail!(
                "certificate {}: no PEM CERTIFICATE block in it",
                cert.display()
            );
        }
        let private = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| anyhow!("key {}: {}", key.display(), pem_error(&e)))?;
        Identity::from_der(chain, private, &cert.display().to_string()).map_err(|e| {
            anyhow!(
                "certificate {} with key {}: {e}",
                cert.display(),
                key.display()
            )
        })
    }

    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        private: PrivateKeyDer<'static>,
        source: &str,
    ) -> anyhow::Result<Identity> {
        let end = webpki::EndEntityCert::try_from(&chain[0])
            .map_err(|e| anyhow!("not a usable X.509 certificate ({e})"))?;
        let names = end
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        let fingerprint = sha256_hex(chain[0].as_ref());
        let key = CertifiedKey::from_der(chain, private, &crypto()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                anyhow!("the key does not belong to the certificate")
            }
            e => anyhow!("unusable key ({e})"),
        })?;
        Ok(Identity {
            key: Arc::new(key),
            source: source.to_owned(),
            names,
            fingerprint,
        })
    }

    /// Whether this certificate is valid for `name` (an SNI host name).
    fn serves(&self, name: &str) -> bool {
        let Ok(server_name) = ServerName::try_from(name) else {
            return false;
        };
        let Some(end) = self.key.cert.first() else {
            return false;
        };
        webpki::EndEntityCert::try_from(end)
            .is_ok_and(|c| c.verify_is_valid_for_subject_name(&server_name).is_ok())
    }
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => io.to_string(),
        E::NoItemsFound => "no PEM block of the expected kind in it".into(),
        E::MissingSectionEnd { .. } => "a PEM block has no END line".into(),
        E::IllegalSectionStart { .. } => "a malformed BEGIN line".into(),
        E::Base64Decode(_) => "bad base64 in a PEM block".into(),
        other => format!("{other:?}"),
    }
}

/// SHA-256 as `AB:CD:...`, the way browsers show a fingerprint.
fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The self-signed certificate used when none is given: ECDSA P-256 for
/// `names` (DNS names and IP addresses), valid a year, kept in
/// `state_dir/self-signed/` (key mode 0600, written by rename) and reused
/// while it has more than a day left and names the same names, so a
/// browser's exception for it survives restarts.
pub fn self_signed(state_dir: &Path, names: &[String]) -> anyhow::Result<(Identity, PathBuf)> {
    let dir = state_dir.join("self-signed");
    let (cert_path, key_path, meta_path) =
        (dir.join("cert.pem"), dir.join("key.pem"), dir.join("names"));
    let now = time::OffsetDateTime::now_utc();
    let wanted = names.join(" ");
    if let Ok(meta) = std::fs::read_to_string(&meta_path) {
        let mut lines = meta.lines();
        let (stored, until) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        let fresh = until
            .parse::<i64>()
            .is_ok_and(|t| t > (now + time::Duration::days(1)).unix_timestamp());
        if stored == wanted && fresh {
            if let Ok(id) = Identity::load(&cert_path, &key_path) {
                return Ok((id, cert_path));
            }
        }
    }
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .context("self-signed certificate: a name is not a valid DNS name or IP address")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "bypass".into()),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "bypass (self-signed)");
    let not_after = now + time::Duration::days(365);
    params.not_before = now - time::Duration::days(1);
    params.not_after = not_after;
    let key = rcgen::KeyPair::generate().context("generating a P-256 key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the self-signed certificate")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("state dir {}", dir.display()))?;
    write_atomically(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(&cert_path, cert.pem().as_bytes(), 0o644)?;
    write_atomically(
        &meta_path,
        format!("{wanted}\n{}\n", not_after.unix_timestamp()).as_bytes(),
        0o644,
    )?;
    let id = Identity::load(&cert_path, &key_path)?;
    Ok((id, cert_path))
}

/// Writes `path` through a temporary file and a rename, so a reader (or a
/// crash) never sees half a key.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Picks the certificate by SNI (RFC 6066 §3): the first whose names cover
/// the requested one; the first of all for clients that send no name (an
/// IP address in the URL) or a name none covers (as nginx's default
/// server does).
#[derive(Debug)]
pub struct Certificates {
    pub identities: Vec<Identity>,
    /// With `--acme-domain`: tls-alpn-01 answers (RFC 8737), given only to
    /// a ClientHello that offers `acme-tls/1`.
    pub acme: Option<Arc<crate::acme::Challenges>>,
}

impl Certificates {
    /// Whether some certificate is valid for `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.identities.iter().any(|id| id.serves(name))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(acme) = &self.acme {
            let validation = hello
                .alpn()
                .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
            if validation {
                // The CA checking a challenge: its certificate, or none
                // (the handshake fails) — never the site's (RFC 8737 §3).
                return hello
                    .server_name()
                    .and_then(|name| acme.alpn_certificate(name));
            }
        }
        let by_name = hello
            .server_name()
            .and_then(|name| self.identities.iter().find(|id| id.serves(name)));
        by_name
            .or_else(|| self.identities.first())
            .map(|id| id.key.clone())
    }
}

/// The rustls configuration every core shares: TLS 1.3 and 1.2 only,
/// ALPN http/1.1, tickets and a session cache, no client certificates.
pub fn server_config(certs: Arc<Certificates>) -> anyhow::Result<Arc<ServerConfig>> {
    let acme = certs.acme.is_some();
    let mut config = ServerConfig::builder_with_provider(crypto())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if acme {
        // Chosen only by a client that offers nothing else: the CA.
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    config.ticketer = provider::Ticketer::new().context("TLS ticketer")?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.max_early_data_size = 0;
    config.send_half_rtt_data = false;
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------------------
// One connection
// ---------------------------------------------------------------------------

/// Why a TLS connection failed, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// Plaintext HTTP on the TLS port (a record that starts like a request).
    PlainHttp,
    /// Bytes that are not TLS records, or a malformed handshake.
    Garbage,
    /// No version both sides speak (TLS 1.1 and older are refused).
    Version,
    /// No cipher suite, group or signature scheme in common.
    NoCommonAlgorithm,
    /// The handshake did not finish within the timeout.
    Timeout,
    /// The peer closed or reset during the handshake.
    PeerClosed,
    /// The peer sent a fatal alert, or anything else.
    Other,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 7] = [
        TlsFailure::PlainHttp,
        TlsFailure::Garbage,
        TlsFailure::Version,
        TlsFailure::NoCommonAlgorithm,
        TlsFailure::Timeout,
        TlsFailure::PeerClosed,
        TlsFailure::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TlsFailure::PlainHttp => "plain_http",
            TlsFailure::Garbage => "garbage",
            TlsFailure::Version => "version",
            TlsFailure::NoCommonAlgorithm => "no_common_algorithm",
            TlsFailure::Timeout => "handshake_timeout",
            TlsFailure::PeerClosed => "peer_closed",
            TlsFailure::Other => "other",
        }
    }

    fn of(e: &rustls::Error, first_bytes: &[u8]) -> TlsFailure {
        use rustls::Error as E;
        // A request line starts with an upper-case method; a TLS record
        // with a handshake starts 0x16 0x03.
        let http_like =
            first_bytes.len() >= 3 && first_bytes[..3].iter().all(|b| b.is_ascii_uppercase());
        // A ClientHello record (0x16) whose client_version is below TLS 1.2
        // (0x0303) comes from a client that speaks only TLS 1.1 or older:
        // whatever rustls tripped over first, the versions do not meet.
        let old_hello = first_bytes.len() >= 11
            && first_bytes[0] == 0x16
            && first_bytes[5] == 1
            && u16::from_be_bytes([first_bytes[9], first_bytes[10]]) < 0x0303;
        match e {
            E::PeerIncompatible(_) if old_hello => TlsFailure::Version,
            E::InvalidMessage(_) if http_like => TlsFailure::PlainHttp,
            E::InvalidMessage(_)
            | E::PeerMisbehaved(_)
            | E::InappropriateHandshakeMessage { .. }
            | E::InappropriateMessage { .. } => TlsFailure::Garbage,
            E::PeerIncompatible(
                rustls::PeerIncompatible::Tls12NotOffered
                | rustls::PeerIncompatible::Tls12NotOfferedOrEnabled
                | rustls::PeerIncompatible::SupportedVersionsExtensionRequired
                | rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13
                | rustls::PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
            ) => TlsFailure::Version,
            E::PeerIncompatible(_) => TlsFailure::NoCommonAlgorithm,
            _ => TlsFailure::Other,
        }
    }
}

/// What the handshake settled, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub tls13: bool,
    pub resumed: bool,
    /// The client asked (SNI) for a name no certificate covers, and got
    /// the default one.
    pub unknown_name: bool,
    /// Index into [`SUITES`].
    pub suite: usize,
    /// The CA checking a tls-alpn-01 challenge: nothing follows the
    /// handshake (RFC 8737 §3), the connection is closed.
    pub acme_validation: bool,
}

/// Cipher suites the counters name (the ring provider's, in its order).
pub const SUITES: [&str; 9] = [
    "TLS13_AES_256_GCM_SHA384",
    "TLS13_AES_128_GCM_SHA256",
    "TLS13_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// One connection's TLS session and the plaintext it has decrypted.
pub struct TlsStream {
    session: ServerConnection,
    /// Decrypted bytes not yet read by HTTP; `plain[read..]` is unread.
    plain: Vec<u8>,
    read: usize,
    /// The peer's close_notify arrived (no more plaintext).
    eof: bool,
    /// The session failed: an alert is queued, then the connection closes.
    failed: Option<TlsFailure>,
    /// Our close_notify is queued; TCP's FIN follows once it is out.
    closing: bool,
    /// The first bytes the peer sent: to tell plaintext HTTP from garbage,
    /// and a ClientHello's version (bytes 9-10 of the record).
    first: [u8; 11],
    first_len: usize,
    /// The handshake finished and was counted.
    established: Option<Negotiated>,
}

impl TlsStream {
    pub fn new(config: &Arc<ServerConfig>) -> Result<TlsStream, rustls::Error> {
        let session = ServerConnection::new(config.clone())?;
        Ok(TlsStream {
            session,
            plain: Vec::new(),
            read: 0,
            eof: false,
            failed: None,
            closing: false,
            first: [0; 11],
            first_len: 0,
            established: None,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    pub fn failed(&self) -> Option<TlsFailure> {
        self.failed
    }

    /// The peer will send no more (close_notify, or the session failed).
    pub fn at_eof(&self) -> bool {
        self.eof || self.failed.is_some()
    }

    /// Whether the handshake finished and is not counted yet.
    pub fn newly_established(&self) -> bool {
        !self.session.is_handshaking() && self.established.is_none() && self.failed.is_none()
    }

    /// The handshake's outcome, once, when it has just finished.
    pub fn take_established(&mut self, certs: &Certificates) -> Option<Negotiated> {
        if self.session.is_handshaking() || self.established.is_some() || self.failed.is_some() {
            return None;
        }
        let tls13 = self.session.protocol_version() == Some(ProtocolVersion::TLSv1_3);
        let resumed = self.session.handshake_kind() == Some(HandshakeKind::Resumed);
        let suite = self
            .session
            .negotiated_cipher_suite()
            .and_then(|s| {
                let name = format!("{:?}", s.suite());
                SUITES.iter().position(|&n| n == name)
            })
            .unwrap_or(0);
        let unknown_name = self
            .session
            .server_name()
            .is_some_and(|name| !certs.covers(name));
        let acme_validation = self.session.alpn_protocol() == Some(ACME_TLS_ALPN);
        let n = Negotiated {
            tls13,
            resumed,
            unknown_name,
            suite,
            acme_validation,
        };
        self.established = Some(n);
        Some(n)
    }

    /// Marks a handshake timeout: the connection is to be closed.
    pub fn time_out(&mut self) {
        self.failed.get_or_insert(TlsFailure::Timeout);
    }

    /// Ciphertext from TCP into rustls and plaintext out of it, as much as
    /// there is room for; then whatever rustls has to send (handshake
    /// messages, an alert) into TCP.
    pub fn pull(&mut self, conn: &mut Conn<'_>) {
        if self.read > 0 && self.read == self.plain.len() {
            self.plain.clear();
            self.read = 0;
        }
        while self.failed.is_none() {
            self.drain_plaintext();
            if self.eof || self.plain.len() >= PLAINTEXT_BUFFER || !self.session.wants_read() {
                break;
            }
            let (a, _) = conn.readable();
            if a.is_empty() {
                break;
            }
            if self.first_len < self.first.len() {
                let n = a.len().min(self.first.len() - self.first_len);
                self.first[self.first_len..self.first_len + n].copy_from_slice(&a[..n]);
                self.first_len += n;
            }
            let mut rest = a;
            let before = rest.len();
            let read = self.session.read_tls(&mut rest);
            let used = before - rest.len();
            conn.consume(used);
            match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => {
                    self.failed = Some(TlsFailure::Garbage);
                    break;
                }
            }
            if let Err(e) = self.session.process_new_packets() {
                self.failed = Some(TlsFailure::of(&e, &self.first[..self.first_len]));
            }
        }
        if self.failed == Some(TlsFailure::PlainHttp) && !self.closing {
            // A browser or curl sent http:// to the TLS port: say so in a
            // language it reads (as nginx does), not with a TLS alert.
            self.closing = true;
            let _ = conn.send(PLAIN_HTTP_ANSWER);
            let _ = conn.shutdown_write();
            return;
        }
        self.flush(conn);
    }

    /// Moves what rustls decrypted into `plain`, up to its limit.
    fn drain_plaintext(&mut self) {
        while self.plain.len() < PLAINTEXT_BUFFER {
            let at = self.plain.len();
            self.plain.resize(PLAINTEXT_BUFFER, 0);
            let got = self.session.reader().read(&mut self.plain[at..]);
            let n = match got {
                Ok(0) => {
                    self.eof = true;
                    0
                }
                Ok(n) => n,
                // WouldBlock: nothing decrypted is waiting.
                Err(_) => 0,
            };
            self.plain.truncate(at + n);
            if n == 0 {
                break;
            }
        }
    }

    /// Unread plaintext.
    pub fn readable(&self) -> &[u8] {
        &self.plain[self.read..]
    }

    pub fn consume(&mut self, n: usize) {
        self.read = (self.read + n).min(self.plain.len());
    }

    /// Writes what rustls has queued (records, alerts) into TCP as far as
    /// it fits; sends our FIN after a close_notify that went out whole.
    pub fn flush(&mut self, conn: &mut Conn<'_>) {
        if self.failed == Some(TlsFailure::PlainHttp) {
            return;
        }
        while self.session.wants_write() {
            match self.session.write_tls(&mut TcpWriter(conn)) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if (self.closing || self.failed.is_some()) && !self.session.wants_write() {
            let _ = conn.shutdown_write();
        }
    }

    /// Whether TLS output is still waiting for room in TCP.
    pub fn backlogged(&self) -> bool {
        self.session.wants_write()
    }

    /// Plaintext that may be written now without queueing ciphertext TCP
    /// cannot take.
    pub fn send_capacity(&self, conn: &Conn<'_>) -> usize {
        if self.session.wants_write() || self.closing || self.failed.is_some() {
            return 0;
        }
        let room = conn.send_capacity();
        room.saturating_sub(RECORD_OVERHEAD * (room / RECORD_PAYLOAD + 1))
    }

    /// Encrypts as much of `data` as fits (see `send_capacity`) and moves
    /// the records into TCP.
    pub fn send(&mut self, conn: &mut Conn<'_>, data: &[u8]) -> usize {
        self.flush(conn);
        let n = data.len().min(self.send_capacity(conn));
        if n == 0 {
            return 0;
        }
        let n = self.session.writer().write(&data[..n]).unwrap_or(0);
        self.flush(conn);
        n
    }

    /// Queues close_notify (RFC 8446 §6.1); TCP's FIN follows it.
    pub fn close(&mut self, conn: &mut Conn<'_>) {
        if !self.closing {
            self.closing = true;
            self.session.send_close_notify();
        }
        self.flush(conn);
    }
}

/// `io::Write` into TCP's send buffer.
struct TcpWriter<'a, 'b>(&'a mut Conn<'b>);

impl Write for TcpWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.send(buf) {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n),
            Err(_) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bypass-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Accepts any server certificate: these tests look at which one came.
    #[derive(Debug)]
    struct AnyCert;

    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            crypto()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// A handshake in memory: the certificate the server presented and the
    /// ALPN protocol it chose, or the error.
    fn handshake(
        server: &Arc<ServerConfig>,
        sni: &str,
        alpn: &[&[u8]],
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), rustls::Error> {
        let mut client_config = rustls::ClientConfig::builder_with_provider(crypto())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        client_config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = ServerConnection::new(server.clone()).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut &wire[..]).unwrap();
            let result = server.process_new_packets();
            let mut back = Vec::new();
            server.write_tls(&mut back).unwrap();
            client.read_tls(&mut &back[..]).unwrap();
            result?;
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                let cert = client.peer_certificates().unwrap()[0].as_ref().to_vec();
                return Ok((cert, server.alpn_protocol().map(<[u8]>::to_vec)));
            }
        }
        panic!("no handshake in 10 rounds");
    }

    #[test]
    fn tls_alpn_01_gets_the_challenge_certificate_and_only_it() {
        let dir = temp_dir("alpn");
        let (site, _) = self_signed(&dir, &["a.test".to_string()]).unwrap();
        let site_der = site.key.cert[0].as_ref().to_vec();
        let challenges = Arc::new(crate::acme::Challenges::default());
        let certs = Arc::new(Certificates {
            identities: vec![site],
            acme: Some(challenges.clone()),
        });
        let config = server_config(certs).unwrap();
        // Nothing pending: a validation handshake fails, it never gets
        // the site's certificate.
        assert!(handshake(&config, "a.test", &[ACME_TLS_ALPN]).is_err());
        let challenge = crate::acme::challenges::alpn_certificate("a.test", &[9; 32]).unwrap();
        let challenge_der = challenge.cert[0].as_ref().to_vec();
        challenges.set_alpn("a.test", challenge);
        let (cert, alpn) = handshake(&config, "a.test", &[ACME_TLS_ALPN]).unwrap();
        assert_eq!(cert, challenge_der, "the CA gets the challenge certificate");
        assert_eq!(alpn.as_deref(), Some(ACME_TLS_ALPN));
        // Browsers, meanwhile, get the site's, with http/1.1.
        let (cert, alpn) = handshake(&config, "a.test", &[b"h2", b"http/1.1"]).unwrap();
        assert_eq!(cert, site_der);
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        let (cert, _) = handshake(&config, "a.test", &[]).unwrap();
        assert_eq!(cert, site_der);
        // Another name's validation: no certificate.
        assert!(handshake(&config, "b.test", &[ACME_TLS_ALPN]).is_err());
        challenges.remove_alpn("a.test");
        assert!(handshake(&config, "a.test", &[ACME_TLS_ALPN]).is_err());
    }

    #[test]
    fn without_acme_acme_tls_1_is_not_offered() {
        let dir = temp_dir("noalpn");
        let (site, _) = self_signed(&dir, &["a.test".to_string()]).unwrap();
        let config = server_config(Arc::new(Certificates {
            identities: vec![site],
            acme: None,
        }))
        .unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // A client offering only acme-tls/1 is refused (RFC 7301 §3.2:
        // no_application_protocol), never given the site's certificate
        // as if it were a challenge answer.
        assert!(matches!(
            handshake(&config, "a.test", &[ACME_TLS_ALPN]),
            Err(rustls::Error::NoApplicationProtocol)
        ));
    }

    #[test]
    fn a_self_signed_certificate_is_made_once_and_reused() {
        let dir = temp_dir("self");
        let names = vec!["localhost".to_string(), "10.99.0.1".to_string()];
        let (a, path) = self_signed(&dir, &names).unwrap();
        assert!(a.names.contains(&"localhost".to_string()));
        assert!(a.serves("localhost"));
        let (b, _) = self_signed(&dir, &names).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint, "reused, not made again");
        let mode = std::fs::metadata(dir.join("self-signed/key.pem"))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        assert!(std::fs::read_to_string(path)
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
        // Other names: a new certificate.
        let (c, _) = self_signed(&dir, &["example.test".to_string()]).unwrap();
        assert_ne!(a.fingerprint, c.fingerprint);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let dir = temp_dir("bad");
        let (_, cert) = self_signed(&dir, &["a.test".to_string()]).unwrap();
        let key = dir.join("self-signed/key.pem");
        let missing = dir.join("nope.pem");
        let err = Identity::load(&missing, &key).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let err = Identity::load(&junk, &key).unwrap_err().to_string();
        assert!(err.contains("junk.pem") && err.contains("no PEM"), "{err}");
        let err = Identity::load(&cert, &junk).unwrap_err().to_string();
        assert!(err.starts_with("key ") && err.contains("junk.pem"), "{err}");
        // A key from another certificate.
        let other = temp_dir("other");
        self_signed(&other, &["b.test".to_string()]).unwrap();
        let err = Identity::load(&cert, &other.join("self-signed/key.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not belong"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }
}
