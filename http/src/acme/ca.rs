//! Talking to the CA (RFC 8555) through instant-acme, over the kernel's
//! TCP: the HTTPS client (our roots, a time limit on every request, the
//! `Retry-After` a refusal carries), the account, and one order from new
//! to certificate.
//!
//! Why instant-acme: it is maintained (by a rustls maintainer), async on
//! tokio and hyper with rustls and ring (nothing new to build: no OpenSSL,
//! no aws-lc), covers RFC 8555 with ARI (RFC 9773) and lets us bring the
//! HTTP client, which is how a test CA's root and request timeouts get in.
//! We make the certificate key and CSR ourselves (rcgen), and answer the
//! challenges on the stack.

use std::{
    future::Future,
    net::IpAddr,
    path::Path,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{anyhow, Context};
use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse,
    CertificateIdentifier, ChallengeType, HttpClient, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, Der};

use super::{challenges, challenges::Challenges, der::CertFacts, store::Store};

/// Longest a single request to the CA may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the CA may take to validate and to issue, each.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why an attempt failed, for the log and the metrics' `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No answer: connection refused, DNS, TLS to the CA, timeouts.
    Unreachable,
    /// `urn:ietf:params:acme:error:rateLimited` (RFC 8555 §6.7).
    RateLimited,
    /// The CA could not validate the challenge.
    ChallengeFailed,
    /// Any other refusal from the CA.
    Refused,
    /// Ours: a file we could not write, a key we could not make.
    Local,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Unreachable,
        Reason::RateLimited,
        Reason::ChallengeFailed,
        Reason::Refused,
        Reason::Local,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::Unreachable => "unreachable",
            Reason::RateLimited => "rate_limited",
            Reason::ChallengeFailed => "challenge_failed",
            Reason::Refused => "refused",
            Reason::Local => "local",
        }
    }
}

/// A failed attempt: why, what the CA or the network said, and how long
/// the CA asked us to wait.
#[derive(Debug)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
    pub retry_after: Option<Duration>,
}

/// Where [`CaClient`] leaves the `Retry-After` of the CA's last refusal.
type RetryAfter = Arc<Mutex<Option<Duration>>>;

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Failure {
        Failure {
            reason,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A failed call to the CA, `what` it was, with the `Retry-After` that
    /// came with it.
    fn of(e: instant_acme::Error, what: &str, retry_after: &RetryAfter) -> Failure {
        Failure {
            reason: classify(&e),
            detail: format!("{what}: {e}"),
            retry_after: retry_after.lock().unwrap_or_else(|p| p.into_inner()).take(),
        }
    }
}

/// RFC 8555 problem types that mean the CA could not validate.
const VALIDATION_PROBLEMS: [&str; 6] = [
    "unauthorized",
    "connection",
    "incorrectResponse",
    "tls",
    "dns",
    "caa",
];

fn classify(e: &instant_acme::Error) -> Reason {
    match e {
        instant_acme::Error::Api(p) => {
            let kind = p
                .r#type
                .as_deref()
                .and_then(|t| t.strip_prefix("urn:ietf:params:acme:error:"))
                .unwrap_or("");
            if kind == "rateLimited" {
                Reason::RateLimited
            } else if VALIDATION_PROBLEMS.contains(&kind) {
                Reason::ChallengeFailed
            } else {
                Reason::Refused
            }
        }
        instant_acme::Error::Hyper(_)
        | instant_acme::Error::Other(_)
        | instant_acme::Error::Timeout(_) => Reason::Unreachable,
        _ => Reason::Refused,
    }
}

/// The HTTPS client every request to the CA goes through: a time limit
/// on each, and the `Retry-After` of a refusal kept for the scheduler
/// (instant-acme's problem type drops it).
struct CaClient {
    inner: Box<dyn HttpClient>,
    retry_after: RetryAfter,
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let call = self.inner.request(req);
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let rsp = tokio::time::timeout(REQUEST_TIMEOUT, call)
                .await
                .map_err(|_| {
                    instant_acme::Error::Other(
                        format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()).into(),
                    )
                })??;
            let status = rsp.parts.status.as_u16();
            if status == 429 || status == 503 {
                let secs = rsp
                    .parts
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                *retry_after.lock().unwrap_or_else(|e| e.into_inner()) = secs;
            }
            Ok(rsp)
        })
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The hyper client: TLS with `ca_root`'s certificates (all of them) as
/// the only roots, or the system's roots (`ca-certificates`) without it.
fn https_client(ca_root: Option<&Path>) -> anyhow::Result<Box<dyn HttpClient>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let connector = match ca_root {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("--acme-ca-root {}", path.display()))?
            {
                let cert = cert.with_context(|| format!("--acme-ca-root {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("--acme-ca-root {}", path.display()))?;
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "--acme-ca-root {}: no certificate in it",
                path.display()
            );
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .context("TLS versions")?
                .with_root_certificates(roots)
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
        None => hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .context(
                "no system CA certificates to trust the ACME server with (install ca-certificates, or give --acme-ca-root)",
            )?,
    };
    let https = connector.https_only().enable_http1().build();
    let client: hyper_util::client::legacy::Client<_, BodyWrapper<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    Ok(Box::new(client))
}

/// An ACME account at one CA, with the `Retry-After` of its last refusal.
pub struct Ca {
    account: Account,
    retry_after: RetryAfter,
}

/// What an order produced.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// The stored account, or a new one (stored at once).
    pub async fn connect(
        directory: &str,
        ca_root: Option<&Path>,
        email: Option<&str>,
        store: &Store,
    ) -> Result<Ca, Failure> {
        let retry_after: RetryAfter = Arc::default();
        let client = || {
            https_client(ca_root)
                .map(|inner| {
                    Box::new(CaClient {
                        inner,
                        retry_after: retry_after.clone(),
                    }) as Box<dyn HttpClient>
                })
                .map_err(|e| Failure::new(Reason::Local, format!("{e:#}")))
        };
        if let Some(json) = store.load_account() {
            if let Ok(creds) = serde_json::from_str::<AccountCredentials>(&json) {
                let account = Account::builder_with_http(client()?)
                    .from_credentials(creds)
                    .await
                    .map_err(|e| Failure::of(e, "the CA's directory", &retry_after))?;
                return Ok(Ca {
                    account,
                    retry_after,
                });
            }
            tracing::warn!(
                "ACME: {} is not an account file; making a new account",
                store.account_path().display()
            );
        }
        let contact = email.map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, creds) = Account::builder_with_http(client()?)
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.to_string(),
                None,
            )
            .await
            .map_err(|e| Failure::of(e, "creating the ACME account", &retry_after))?;
        let json = serde_json::to_string(&creds)
            .map_err(|e| Failure::new(Reason::Local, format!("account credentials: {e}")))?;
        store
            .save_account(&json)
            .map_err(|e| Failure::new(Reason::Local, format!("{e:#}")))?;
        tracing::info!("ACME: new account {} at {directory}", account.id());
        Ok(Ca {
            account,
            retry_after,
        })
    }

    fn failure(&self, e: instant_acme::Error, what: &str) -> Failure {
        Failure::of(e, what, &self.retry_after)
    }

    /// The CA's suggested renewal window for a certificate (ARI, RFC 9773),
    /// `None` when the CA has no renewal information; with how long to
    /// wait before asking again.
    pub async fn renewal_window(
        &self,
        facts: &CertFacts,
    ) -> Option<((time::OffsetDateTime, time::OffsetDateTime), Duration)> {
        let id = cert_id(facts)?;
        match self.account.renewal_info(&id).await {
            Ok((info, retry_after)) => Some((
                (info.suggested_window.start, info.suggested_window.end),
                retry_after,
            )),
            Err(instant_acme::Error::Unsupported(_)) => None,
            Err(e) => {
                tracing::debug!("ACME: renewal information unavailable: {e}");
                None
            }
        }
    }

    /// One order for `name`, answered with `kind`, from new order to
    /// certificate. `replaces`: the certificate this one renews (ARI).
    pub async fn order(
        &self,
        name: &str,
        kind: ChallengeType,
        challenges: &Challenges,
        replaces: Option<&CertFacts>,
    ) -> Result<Issued, Failure> {
        let identifier = match name.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(name.to_string()),
        };
        let ids = [identifier];
        let mut new = NewOrder::new(&ids);
        if let Some(id) = replaces.and_then(cert_id) {
            new = new.replaces(id);
        }
        let mut order = match self.account.new_order(&new).await {
            // A CA without ARI refuses `replaces`: order plainly.
            Err(instant_acme::Error::Unsupported(_)) => self
                .account
                .new_order(&NewOrder::new(&ids))
                .await
                .map_err(|e| self.failure(e, "new order"))?,
            other => other.map_err(|e| self.failure(e, "new order"))?,
        };
        // What we put up, taken down however the order ends.
        let mut posted: Vec<(ChallengeType, String)> = Vec::new();
        let result = async {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(|e| self.failure(e, "authorization"))?;
                match authz.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => {
                        return Err(Failure::new(
                            Reason::ChallengeFailed,
                            format!("authorization for {name} is {other:?}"),
                        ))
                    }
                }
                let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                    Failure::new(
                        Reason::Refused,
                        format!("the CA offers no {kind:?} challenge for {name}"),
                    )
                })?;
                let key_auth = challenge.key_authorization();
                match kind {
                    ChallengeType::Http01 => {
                        challenges.set_http(&challenge.token, key_auth.as_str());
                        posted.push((kind.clone(), challenge.token.clone()));
                    }
                    _ => {
                        let sni = challenges::alpn_server_name(name);
                        let cert = challenges::alpn_certificate(name, key_auth.digest().as_ref())
                            .map_err(|e| Failure::new(Reason::Local, format!("{e:#}")))?;
                        challenges.set_alpn(&sni, cert);
                        posted.push((kind.clone(), sni));
                    }
                }
                challenge
                    .set_ready()
                    .await
                    .map_err(|e| self.failure(e, "challenge"))?;
            }
            let polling = RetryPolicy::new()
                .initial_delay(Duration::from_millis(250))
                .backoff(1.5)
                .timeout(ORDER_TIMEOUT);
            match order.poll_ready(&polling).await {
                Ok(OrderStatus::Ready) => {}
                Ok(status) => {
                    return Err(Failure::new(
                        Reason::ChallengeFailed,
                        format!("order is {status:?}"),
                    ))
                }
                Err(e) => return Err(self.failure(e, "validation")),
            }
            let key = rcgen::KeyPair::generate()
                .map_err(|e| Failure::new(Reason::Local, format!("certificate key: {e}")))?;
            let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
                .map_err(|e| Failure::new(Reason::Local, format!("CSR for {name}: {e}")))?;
            params.distinguished_name = rcgen::DistinguishedName::new();
            let csr = params
                .serialize_request(&key)
                .map_err(|e| Failure::new(Reason::Local, format!("CSR: {e}")))?;
            order
                .finalize_csr(csr.der())
                .await
                .map_err(|e| self.failure(e, "finalize"))?;
            let chain_pem = order
                .poll_certificate(&polling)
                .await
                .map_err(|e| self.failure(e, "certificate"))?;
            Ok(Issued {
                chain_pem,
                key_pem: key.serialize_pem(),
            })
        }
        .await;
        for (kind, key) in posted {
            match kind {
                ChallengeType::Http01 => challenges.remove_http(&key),
                _ => challenges.remove_alpn(&key),
            }
        }
        result
    }
}

/// The CA's name for a certificate (RFC 9773 §4.1), when it has an AKI.
fn cert_id(facts: &CertFacts) -> Option<CertificateIdentifier<'static>> {
    let aki = facts.aki.clone()?;
    Some(CertificateIdentifier::new(
        Der::from(aki),
        Der::from(facts.serial.clone()),
    ))
}

/// A chain as the CA sent it must parse and start with a leaf for `name`.
pub fn check_chain(chain_pem: &str) -> anyhow::Result<CertFacts> {
    let first = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| anyhow!("no certificate in the CA's answer"))?
        .context("the CA's certificate chain")?;
    super::der::facts(first.as_ref()).ok_or_else(|| anyhow!("the CA's certificate does not parse"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 5 "), Some(Duration::from_secs(5)));
        let later = std::time::SystemTime::now() + Duration::from_secs(3600);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(d > Duration::from_secs(3590) && d <= Duration::from_secs(3600));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn renewal_info_names_a_certificate_by_aki_and_serial() {
        // RFC 9773 §4.1's construction: base64url(AKI keyIdentifier) "."
        // base64url(serial's DER content octets), here as instant-acme's
        // own test vector.
        let facts = CertFacts {
            serial: vec![0x00, 0xca, 0xfe],
            not_before: time::OffsetDateTime::UNIX_EPOCH,
            not_after: time::OffsetDateTime::UNIX_EPOCH,
            aki: Some(vec![0xc0, 0xff, 0xee]),
        };
        assert_eq!(cert_id(&facts).unwrap().to_string(), "wP_u.AMr-");
        let no_aki = CertFacts { aki: None, ..facts };
        assert!(cert_id(&no_aki).is_none());
    }

    #[test]
    fn problems_are_classified_by_their_type() {
        let problem = |t: &str| {
            instant_acme::Error::Api(
                serde_json::from_str(&format!(
                    r#"{{"type":"urn:ietf:params:acme:error:{t}","detail":"x","status":400}}"#
                ))
                .unwrap(),
            )
        };
        assert_eq!(classify(&problem("rateLimited")), Reason::RateLimited);
        assert_eq!(classify(&problem("unauthorized")), Reason::ChallengeFailed);
        assert_eq!(classify(&problem("connection")), Reason::ChallengeFailed);
        assert_eq!(classify(&problem("rejectedIdentifier")), Reason::Refused);
        assert_eq!(
            classify(&instant_acme::Error::Other("refused".into())),
            Reason::Unreachable
        );
    }
}
