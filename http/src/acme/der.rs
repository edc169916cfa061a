//! The few X.509 fields the ACME client needs from a certificate it holds:
//! the validity (when to renew), and the serial number and Authority Key
//! Identifier that name it to the CA's renewal information (RFC 9773 §4.1).
//!
//! A DER walk over the TBSCertificate (RFC 5280 §4.1) rather than a parser
//! crate: x509-parser would add some twenty crates for three fields, and
//! rustls-webpki keeps these private. Anything unexpected gives `None`.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT` version.
const VERSION: u8 = 0xa0;
/// `[3] EXPLICIT` extensions.
const EXTENSIONS: u8 = 0xa3;
/// `[0] IMPLICIT` keyIdentifier inside AuthorityKeyIdentifier.
const KEY_IDENTIFIER: u8 = 0x80;
/// id-ce-authorityKeyIdentifier, 2.5.29.35, as DER content octets.
const AKI_OID: &[u8] = &[0x55, 0x1d, 0x23];

/// What a certificate says about itself, as far as renewal cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// The serial number's content octets (a leading 0x00 kept).
    pub serial: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The AuthorityKeyIdentifier's keyIdentifier octets, if present.
    pub aki: Option<Vec<u8>>,
}

/// One DER element: tag, content, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The element at the front of `input`, which must carry `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = element(input)?;
    (t == tag).then_some((content, rest))
}

fn two(b: &[u8]) -> Option<u8> {
    let s = std::str::from_utf8(b).ok()?;
    if s.len() != 2 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// UTCTime (YYMMDDHHMMSSZ, years 1950-2049) or GeneralizedTime
/// (YYYYMMDDHHMMSSZ), as RFC 5280 §4.1.2.5 requires them.
fn parse_time(tag: u8, b: &[u8]) -> Option<OffsetDateTime> {
    let (year, rest) = match (tag, b.len()) {
        (UTC_TIME, 13) => {
            let yy = i32::from(two(&b[..2])?);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &b[2..])
        }
        (GENERALIZED_TIME, 15) => {
            let y = i32::from(two(&b[..2])?) * 100 + i32::from(two(&b[2..4])?);
            (y, &b[4..])
        }
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let month = Month::try_from(two(&rest[..2])?).ok()?;
    let date = Date::from_calendar_date(year, month, two(&rest[2..4])?).ok()?;
    let time = Time::from_hms(two(&rest[4..6])?, two(&rest[6..8])?, two(&rest[8..10])?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// The facts of a DER certificate, or `None` if it is not one.
pub fn facts(der: &[u8]) -> Option<CertFacts> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if let Some((VERSION, _, after)) = element(rest) {
        rest = after;
    }
    let (serial, rest) = expect(rest, INTEGER)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, mut rest) = expect(rest, SEQUENCE)?;
    let (t1, nb, after) = element(validity)?;
    let (t2, na, _) = element(after)?;
    let (not_before, not_after) = (parse_time(t1, nb)?, parse_time(t2, na)?);
    let mut aki = None;
    // subject, subjectPublicKeyInfo, optional unique IDs, then [3].
    while let Some((tag, content, after)) = element(rest) {
        rest = after;
        if tag == EXTENSIONS {
            let (mut list, _) = expect(content, SEQUENCE)?;
            while let Some((SEQUENCE, ext, after)) = element(list) {
                list = after;
                let (oid, mut body) = expect(ext, OID)?;
                if let Some((BOOLEAN, _, after)) = element(body) {
                    body = after;
                }
                let (value, _) = expect(body, OCTET_STRING)?;
                if oid == AKI_OID {
                    let (inner, _) = expect(value, SEQUENCE)?;
                    if let Some((KEY_IDENTIFIER, id, _)) = element(inner) {
                        aki = Some(id.to_vec());
                    }
                }
            }
        }
    }
    Some(CertFacts {
        serial: serial.to_vec(),
        not_before,
        not_after,
        aki,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn issued(serial: &[u8], from: OffsetDateTime, until: OffsetDateTime) -> (Vec<u8>, Vec<u8>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![0xc0, 0xff, 0xee]);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
        leaf.not_before = from;
        leaf.not_after = until;
        leaf.use_authority_key_identifier_extension = true;
        let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.der().to_vec(), ca.der().to_vec())
    }

    #[test]
    fn reads_serial_validity_and_authority_key_id() {
        let from = at(1767323045) /* 2026-01-02 03:04:05 UTC */;
        let until = at(1775099045) /* 2026-04-02 03:04:05 UTC */;
        let (leaf, ca) = issued(&[0x00, 0xca, 0xfe], from, until);
        let f = facts(&leaf).unwrap();
        assert_eq!(f.not_before, from);
        assert_eq!(f.not_after, until);
        assert_eq!(f.serial, vec![0x00, 0xca, 0xfe]);
        assert_eq!(f.aki, Some(vec![0xc0, 0xff, 0xee]));
        // A self-signed root without the extension.
        assert_eq!(facts(&ca).unwrap().aki, None);
    }

    #[test]
    fn generalized_time_after_2049() {
        let from = at(2506118400) /* 2049-06-01 00:00:00 UTC */;
        let until = at(2569233600) /* 2051-06-01 12:00:00 UTC */;
        let (leaf, _) = issued(&[0x01], from, until);
        let f = facts(&leaf).unwrap();
        assert_eq!((f.not_before, f.not_after), (from, until));
    }

    #[test]
    fn not_a_certificate() {
        assert_eq!(facts(b""), None);
        assert_eq!(facts(&[0x30, 0x82, 0xff]), None);
        assert_eq!(facts(&[0x30, 0x03, 0x02, 0x01, 0x01]), None);
        let (leaf, _) = issued(
            &[0x01],
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::UNIX_EPOCH,
        );
        for cut in [1, 10, 100, leaf.len() / 2] {
            let mut broken = leaf.clone();
            broken.truncate(leaf.len() - cut);
            assert_eq!(facts(&broken), None, "cut {cut}");
        }
    }
}
