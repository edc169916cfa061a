//! The answers to the CA's challenges, set by the ACME thread for the
//! length of an order and read by the cores when the CA comes to check:
//! http-01 (RFC 8555 §8.3) on the plain ports, tls-alpn-01 (RFC 8737) on
//! the TLS ports. Reads take a lock, but only on those two rare paths (a
//! request under `/.well-known/acme-challenge/`, a ClientHello that offers
//! `acme-tls/1`), never on the data path.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use anyhow::Context;
use rustls::{
    pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    sign::CertifiedKey,
};

/// The ALPN protocol of tls-alpn-01 (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Challenge answers shared by the ACME thread and every core.
#[derive(Debug, Default)]
pub struct Challenges {
    /// http-01: token → key authorization.
    http: RwLock<HashMap<String, String>>,
    /// tls-alpn-01: the name the CA asks for in SNI → its certificate.
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// The key authorization for an http-01 `token`, if one is pending.
    pub fn http_answer(&self, token: &str) -> Option<String> {
        self.http
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// The tls-alpn-01 certificate for `server_name`, if one is pending.
    pub fn alpn_certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&server_name.to_ascii_lowercase())
            .cloned()
    }

    pub fn set_http(&self, token: &str, key_authorization: &str) {
        self.http
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), key_authorization.to_string());
    }

    pub fn remove_http(&self, token: &str) {
        self.http
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    pub fn set_alpn(&self, server_name: &str, cert: Arc<CertifiedKey>) {
        self.alpn
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server_name.to_ascii_lowercase(), cert);
    }

    pub fn remove_alpn(&self, server_name: &str) {
        self.alpn
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&server_name.to_ascii_lowercase());
    }
}

/// The SNI the CA sends for an identifier (RFC 8737 §3; for an IP address,
/// its reverse-DNS name, RFC 8738 §6).
pub fn alpn_server_name(identifier: &str) -> String {
    match identifier.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            let [a, b, c, d] = ip.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            let mut name = String::new();
            for byte in ip.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name + "ip6.arpa"
        }
        Err(_) => identifier.to_ascii_lowercase(),
    }
}

/// The tls-alpn-01 certificate (RFC 8737 §3): self-signed, for exactly
/// `identifier`, with the critical acmeIdentifier extension holding the
/// SHA-256 `digest` of the key authorization.
pub fn alpn_certificate(identifier: &str, digest: &[u8]) -> anyhow::Result<Arc<CertifiedKey>> {
    anyhow::ensure!(digest.len() == 32, "a SHA-256 digest has 32 bytes");
    let mut params = rcgen::CertificateParams::new(vec![identifier.to_string()])
        .context("tls-alpn-01: not a DNS name or IP address")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().context("tls-alpn-01 key")?;
    let cert = params
        .self_signed(&key)
        .context("tls-alpn-01 certificate")?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&der).context("tls-alpn-01 signing key")?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_set_read_and_removed() {
        let c = Challenges::default();
        assert_eq!(c.http_answer("tok"), None);
        c.set_http("tok", "tok.thumb");
        assert_eq!(c.http_answer("tok").as_deref(), Some("tok.thumb"));
        c.remove_http("tok");
        assert_eq!(c.http_answer("tok"), None);
        let cert = alpn_certificate("A.test", &[7; 32]).unwrap();
        c.set_alpn("A.test", cert);
        assert!(c.alpn_certificate("a.TEST").is_some(), "names are caseless");
        c.remove_alpn("a.test");
        assert!(c.alpn_certificate("a.test").is_none());
    }

    #[test]
    fn ip_identifiers_use_their_reverse_name() {
        assert_eq!(alpn_server_name("10.99.0.1"), "1.0.99.10.in-addr.arpa");
        assert_eq!(
            alpn_server_name("2001:db8::1"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(alpn_server_name("Example.COM"), "example.com");
    }

    #[test]
    fn the_challenge_certificate_carries_the_critical_acme_identifier() {
        let digest = [0xab; 32];
        let cert = alpn_certificate("a.test", &digest).unwrap();
        let der = cert.cert[0].as_ref();
        // OID 1.3.6.1.5.5.7.1.31, critical TRUE, OCTET STRING { OCTET STRING (32) }.
        let ext = [
            &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f][..],
            &[0x01, 0x01, 0xff],
            &[0x04, 0x22, 0x04, 0x20],
            &digest,
        ]
        .concat();
        assert!(
            der.windows(ext.len()).any(|w| w == ext),
            "extension present"
        );
        assert!(alpn_certificate("a.test", &[0; 5]).is_err());
    }
}
