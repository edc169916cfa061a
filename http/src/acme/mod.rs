//! Automatic HTTPS: bypass gets certificates for `--acme-domain` names from
//! an ACME CA (RFC 8555; Let's Encrypt by default) and renews them, with
//! no other program: the stack itself answers the CA's http-01 (plain
//! port) or tls-alpn-01 (TLS port) challenge.
//!
//! One certificate per name, as Caddy does: a name whose DNS is wrong, or
//! that the CA refuses, does not hold back the others, each renews on its
//! own schedule, and SNI picks the right one.
//!
//! The client runs on its own thread with a small tokio runtime (current
//! thread) and talks to the CA over the kernel's TCP; nothing of it
//! touches the cores. It hands results over in two ways: challenge
//! answers through [`Challenges`] (read by the cores only when the CA
//! comes to check), and a new certificate by storing it in `--state-dir`
//! and raising a flag on which the main thread loads it and publishes the
//! new TLS configuration to every core (connections under way keep the
//! one they started with). A CA that is down, slow or refusing only
//! delays a certificate: the site keeps being served, with the stored
//! certificate, or the self-signed one until the first arrives.

pub mod ca;
pub mod challenges;
pub mod der;
pub mod schedule;
pub mod store;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use instant_acme::ChallengeType;
use time::OffsetDateTime;

pub use challenges::Challenges;

use self::{
    ca::{Ca, Failure, Reason},
    der::CertFacts,
    store::Store,
};

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`--acme-staging`).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How the CA can reach us for a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// http-01 on a plain port (the CA uses port 80).
    Http01,
    /// tls-alpn-01 on a TLS port (the CA uses port 443).
    TlsAlpn01,
}

impl Kind {
    fn challenge(self) -> ChallengeType {
        match self {
            Kind::Http01 => ChallengeType::Http01,
            Kind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Http01 => "http-01",
            Kind::TlsAlpn01 => "tls-alpn-01",
        }
    }

    /// What the served ports can answer, preferred first: the one on the
    /// CA's standard port (80 or 443) first, http-01 when both are.
    pub fn answerable(plain_ports: &[u16], tls_ports: &[u16]) -> Vec<Kind> {
        let mut kinds = Vec::new();
        let http = !plain_ports.is_empty();
        let alpn = !tls_ports.is_empty();
        if http && (plain_ports.contains(&80) || !tls_ports.contains(&443)) {
            kinds.push(Kind::Http01);
        }
        if alpn {
            kinds.push(Kind::TlsAlpn01);
        }
        if http && !kinds.contains(&Kind::Http01) {
            kinds.push(Kind::Http01);
        }
        kinds
    }
}

/// What the ACME client does, from the flags.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub names: Vec<String>,
    pub email: Option<String>,
    pub directory: String,
    pub ca_root: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// Renew once a certificate is this old (`--acme-renew-after`).
    pub renew_after: Option<Duration>,
    /// The first retry's wait (`--acme-retry-base`).
    pub retry_base: Duration,
    /// Challenge types to use, preferred first; the next one after a
    /// failed validation.
    pub kinds: Vec<Kind>,
}

impl AcmeSettings {
    pub fn store(&self) -> Store {
        Store::new(&self.state_dir, &self.directory)
    }

    /// The stored certificates still valid, loaded, to serve at once.
    pub fn stored(&self) -> Vec<(String, crate::tls::Identity)> {
        let store = self.store();
        let now = OffsetDateTime::now_utc();
        let mut out = Vec::new();
        for name in &self.names {
            match store.load(name) {
                Ok(Some((id, f))) if f.not_before <= now && now < f.not_after => {
                    out.push((name.clone(), id))
                }
                Ok(_) => {}
                // The next order replaces it.
                Err(e) => tracing::warn!("ACME certificate for {name} does not load: {e:#}"),
            }
        }
        out
    }
}

/// Per name, for the metrics and the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameStatus {
    /// The served certificate's notAfter (Unix seconds).
    pub expires: Option<i64>,
    /// When the client acts next for this name: renewal or retry.
    pub next_attempt: Option<i64>,
    /// The last failure: when, and why.
    pub last_failure: Option<(i64, Reason)>,
    pub issued: u64,
    /// Failures by [`Reason::ALL`] index.
    pub failures: [u64; 5],
}

/// The ACME client's state as the metrics show it.
#[derive(Debug, Default)]
pub struct Status {
    names: Mutex<BTreeMap<String, NameStatus>>,
}

impl Status {
    fn update(&self, name: &str, f: impl FnOnce(&mut NameStatus)) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        f(names.entry(name.to_string()).or_default());
    }

    /// Prometheus text for every name.
    pub fn render(&self, out: &mut String) {
        use crate::metrics::family;
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let label = |name: &str| format!("name=\"{name}\"");
        family(
            out,
            "bypass_acme_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the served ACME certificate expires.",
            &mut names
                .iter()
                .filter_map(|(n, s)| Some((label(n), s.expires?))),
        );
        family(
            out,
            "bypass_acme_next_attempt_timestamp_seconds",
            "gauge",
            "When the ACME client next renews, or retries, this name.",
            &mut names
                .iter()
                .filter_map(|(n, s)| Some((label(n), s.next_attempt?))),
        );
        family(
            out,
            "bypass_acme_last_failure_timestamp_seconds",
            "gauge",
            "When the last attempt for this name failed, and why.",
            &mut names.iter().filter_map(|(n, s)| {
                let (at, why) = s.last_failure?;
                Some((format!("{},reason=\"{}\"", label(n), why.name()), at))
            }),
        );
        family(
            out,
            "bypass_acme_certificates_issued_total",
            "counter",
            "Certificates obtained.",
            &mut names.iter().map(|(n, s)| (label(n), s.issued)),
        );
        family(
            out,
            "bypass_acme_failures_total",
            "counter",
            "Failed attempts, by reason.",
            &mut names.iter().flat_map(|(n, s)| {
                Reason::ALL.iter().zip(s.failures).map(move |(why, count)| {
                    (format!("{},reason=\"{}\"", label(n), why.name()), count)
                })
            }),
        );
    }
}

/// Handles the ACME thread needs and gives back.
pub struct Shared {
    pub challenges: Arc<Challenges>,
    pub status: Arc<Status>,
    /// Raised when a new certificate is stored; the main thread loads it.
    pub changed: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
}

/// Starts the ACME thread.
pub fn spawn(
    settings: AcmeSettings,
    shared: Shared,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("acme".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(
                        "ACME: cannot start its runtime: {e}; no certificates will be obtained"
                    );
                    return;
                }
            };
            runtime.block_on(Client::new(settings, shared).run());
        })
}

/// One name's schedule.
struct Entry {
    name: String,
    /// The stored certificate, if it is still valid.
    facts: Option<CertFacts>,
    /// When to order (renewal or retry).
    next: OffsetDateTime,
    /// When to ask the CA's renewal information again; `None`: never.
    ari_next: Option<OffsetDateTime>,
    failures: u32,
    /// Index into the settings' kinds: which challenge to use next.
    kind: usize,
}

struct Client {
    settings: AcmeSettings,
    shared: Shared,
    store: Store,
    entries: Vec<Entry>,
    ca: Option<Ca>,
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

impl Client {
    fn new(settings: AcmeSettings, shared: Shared) -> Client {
        let store = settings.store();
        let now = OffsetDateTime::now_utc();
        let entries = settings
            .names
            .iter()
            .map(|name| {
                // A pair that does not load counts as none: order at once.
                let facts = store
                    .load(name)
                    .ok()
                    .flatten()
                    .map(|(_, f)| f)
                    .filter(|f| now < f.not_after);
                let next = match &facts {
                    Some(f) => schedule::renewal_time(
                        f.not_before,
                        f.not_after,
                        None,
                        settings.renew_after,
                        fastrand::f64(),
                    ),
                    None => now,
                };
                Entry {
                    name: name.clone(),
                    ari_next: facts.as_ref().map(|_| now),
                    facts,
                    next,
                    failures: 0,
                    kind: 0,
                }
            })
            .collect();
        Client {
            settings,
            shared,
            store,
            entries,
            ca: None,
        }
    }

    async fn run(mut self) {
        for e in &self.entries {
            let status = &self.shared.status;
            status.update(&e.name, |s| {
                s.expires = e.facts.as_ref().map(|f| unix(f.not_after));
                s.next_attempt = Some(unix(e.next));
            });
            match &e.facts {
                Some(f) => tracing::info!(
                    "ACME: {}: stored certificate valid until {}; renewal at {}",
                    e.name,
                    f.not_after,
                    e.next
                ),
                None => tracing::info!(
                    "ACME: {}: no certificate yet; ordering one from {}",
                    e.name,
                    self.settings.directory
                ),
            }
        }
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = OffsetDateTime::now_utc();
            if let Some(i) = self.entries.iter().position(|e| e.next <= now) {
                self.attempt(i).await;
                continue;
            }
            if let Some(i) = self
                .entries
                .iter()
                .position(|e| e.ari_next.is_some_and(|t| t <= now))
            {
                self.ask_renewal_info(i).await;
                continue;
            }
            // Sleep in short steps so a stop is seen promptly.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn connect(&mut self) -> Result<&Ca, Failure> {
        if self.ca.is_none() {
            let ca = Ca::connect(
                &self.settings.directory,
                self.settings.ca_root.as_deref(),
                self.settings.email.as_deref(),
                &self.store,
            )
            .await?;
            self.ca = Some(ca);
        }
        Ok(self.ca.as_ref().expect("just connected"))
    }

    /// RFC 9773: the CA may want a certificate renewed early (or later).
    async fn ask_renewal_info(&mut self, i: usize) {
        let Some(facts) = self.entries[i].facts.clone() else {
            self.entries[i].ari_next = None;
            return;
        };
        let now = OffsetDateTime::now_utc();
        let answer = match self.connect().await {
            Ok(ca) => ca.renewal_window(&facts).await,
            Err(f) => {
                // Ask again later; the certificate's own schedule stands.
                tracing::debug!("ACME: renewal information: {}", f.detail);
                self.entries[i].ari_next = Some(now + Duration::from_secs(3600));
                return;
            }
        };
        let e = &mut self.entries[i];
        match answer {
            Some((window, retry_after)) => {
                let at = schedule::renewal_time(
                    facts.not_before,
                    facts.not_after,
                    Some(window),
                    self.settings.renew_after,
                    fastrand::f64(),
                );
                if e.failures == 0 && at != e.next {
                    tracing::info!("ACME: {}: the CA suggests renewing at {at}", e.name);
                    e.next = at;
                    self.shared
                        .status
                        .update(&e.name, |s| s.next_attempt = Some(unix(at)));
                }
                let again =
                    retry_after.clamp(Duration::from_secs(3600), Duration::from_secs(86_400));
                e.ari_next = Some(now + again);
            }
            // No renewal information at this CA (or not now): the
            // schedule from the certificate's dates stands.
            None => e.ari_next = None,
        }
    }

    async fn attempt(&mut self, i: usize) {
        let kinds = self.settings.kinds.clone();
        let kind = kinds[self.entries[i].kind % kinds.len()];
        let name = self.entries[i].name.clone();
        let renewing = self.entries[i].facts.clone();
        tracing::info!(
            "ACME: {name}: {} with {}",
            if renewing.is_some() {
                "renewing"
            } else {
                "ordering"
            },
            kind.name()
        );
        let challenges = self.shared.challenges.clone();
        let result = match self.connect().await {
            Ok(ca) => {
                ca.order(&name, kind.challenge(), &challenges, renewing.as_ref())
                    .await
            }
            Err(f) => Err(f),
        };
        let stored = result.and_then(|issued| {
            let facts = ca::check_chain(&issued.chain_pem)
                .map_err(|e| Failure::new(Reason::Refused, format!("{e:#}")))?;
            self.store
                .save_certificate(&name, &issued.chain_pem, &issued.key_pem)
                .map_err(|e| {
                    Failure::new(Reason::Local, format!("storing the certificate: {e:#}"))
                })?;
            Ok(facts)
        });
        let now = OffsetDateTime::now_utc();
        match stored {
            Ok(facts) => {
                let e = &mut self.entries[i];
                e.next = schedule::renewal_time(
                    facts.not_before,
                    facts.not_after,
                    None,
                    self.settings.renew_after,
                    fastrand::f64(),
                );
                e.failures = 0;
                e.ari_next = Some(now);
                e.facts = Some(facts.clone());
                self.shared.changed.store(true, Ordering::Release);
                self.shared.status.update(&name, |s| {
                    s.expires = Some(unix(facts.not_after));
                    s.next_attempt = Some(unix(e.next));
                    s.issued += 1;
                });
                tracing::info!(
                    "ACME: {name}: new certificate valid until {} ({}); renewal at {}",
                    facts.not_after,
                    self.store.cert_path(&name).display(),
                    e.next
                );
            }
            Err(f) => {
                if matches!(f.reason, Reason::Unreachable | Reason::Refused) {
                    // Connect afresh next time (the directory may have
                    // moved, the account may be gone).
                    self.ca = None;
                }
                if f.detail.contains("accountDoesNotExist") {
                    tracing::warn!("ACME: the CA no longer knows our account: making a new one");
                    self.store.forget_account();
                }
                let e = &mut self.entries[i];
                e.failures += 1;
                if f.reason == Reason::ChallengeFailed {
                    // Fall back to the other challenge next time.
                    e.kind += 1;
                }
                let wait = schedule::retry_delay(
                    e.failures,
                    self.settings.retry_base,
                    f.retry_after,
                    fastrand::f64(),
                );
                e.next = now + wait;
                self.shared.status.update(&name, |s| {
                    s.last_failure = Some((unix(now), f.reason));
                    s.failures[Reason::ALL.iter().position(|r| *r == f.reason).unwrap_or(0)] += 1;
                    s.next_attempt = Some(unix(e.next));
                });
                tracing::warn!(
                    "ACME: {name}: {} failed ({}): {}; next attempt in {}s{}",
                    kind.name(),
                    f.reason.name(),
                    f.detail,
                    wait.as_secs(),
                    if renewing.is_some() {
                        " (the current certificate is still served)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_port_decides_which_challenge_comes_first() {
        use Kind::*;
        assert_eq!(Kind::answerable(&[80], &[443]), vec![Http01, TlsAlpn01]);
        assert_eq!(Kind::answerable(&[8080], &[443]), vec![TlsAlpn01, Http01]);
        assert_eq!(Kind::answerable(&[], &[443]), vec![TlsAlpn01]);
        assert_eq!(Kind::answerable(&[80], &[]), vec![Http01]);
        assert_eq!(Kind::answerable(&[8080], &[8443]), vec![Http01, TlsAlpn01]);
        assert!(Kind::answerable(&[], &[]).is_empty());
    }

    #[test]
    fn status_renders_as_prometheus_text() {
        let s = Status::default();
        s.update("a.test", |n| {
            n.expires = Some(100);
            n.next_attempt = Some(50);
            n.last_failure = Some((40, Reason::RateLimited));
            n.failures[1] = 2;
            n.issued = 1;
        });
        let mut out = String::new();
        s.render(&mut out);
        for line in [
            "bypass_acme_certificate_expiry_timestamp_seconds{name=\"a.test\"} 100",
            "bypass_acme_next_attempt_timestamp_seconds{name=\"a.test\"} 50",
            "bypass_acme_last_failure_timestamp_seconds{name=\"a.test\",reason=\"rate_limited\"} 40",
            "bypass_acme_certificates_issued_total{name=\"a.test\"} 1",
            "bypass_acme_failures_total{name=\"a.test\",reason=\"rate_limited\"} 2",
            "bypass_acme_failures_total{name=\"a.test\",reason=\"unreachable\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
    }
}
