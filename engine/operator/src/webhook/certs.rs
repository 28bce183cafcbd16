//! The webhook's certificates, pure: a self-signed CA and a serving leaf it signs for the
//! Service's DNS names, and the decision whether a stored pair is still good.
//!
//! The CA lives [`CA_DAYS`] days and is what the webhook configurations' `caBundle` holds; the
//! leaf lives [`LEAF_DAYS`] days and is re-signed by the same CA once it is within
//! [`RENEW_BEFORE_DAYS`] days of expiry, so a renewal never changes the `caBundle` and replicas
//! still serving the old leaf stay trusted until they pick up the new one. Only a CA itself
//! near expiry (or unreadable, or a leaf not covering the Service) makes a new CA.

use std::collections::BTreeMap;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use x509_parser::extensions::GeneralName;

/// Days a serving leaf is valid.
pub const LEAF_DAYS: i64 = 365;
/// Days the CA is valid.
pub const CA_DAYS: i64 = 3650;
/// A certificate (leaf or CA) this close to expiry is replaced.
pub const RENEW_BEFORE_DAYS: i64 = 30;

/// Secret key of the CA certificate (PEM).
pub const CA_CRT: &str = "ca.crt";
/// Secret key of the CA's private key (PEM), kept to re-sign the leaf.
pub const CA_KEY: &str = "ca.key";
/// Secret key of the serving certificate (PEM), as `kubernetes.io/tls` names it.
pub const TLS_CRT: &str = "tls.crt";
/// Secret key of the serving key (PEM), as `kubernetes.io/tls` names it.
pub const TLS_KEY: &str = "tls.key";

/// A CA and the serving leaf it signed, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    /// CA certificate: the webhook configurations' `caBundle`.
    pub ca_crt: String,
    /// CA private key.
    pub ca_key: String,
    /// Serving certificate.
    pub tls_crt: String,
    /// Serving private key.
    pub tls_key: String,
}

impl std::fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle").finish_non_exhaustive()
    }
}

/// Generating or reading a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused to build or sign a certificate.
    #[error("generating the webhook certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A date out of range.
    #[error("computing the webhook certificate's validity: {0}")]
    Date(String),
    /// A stored value is missing or does not parse.
    #[error("secret key {key}: {reason}")]
    Parse {
        /// The Secret key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// What to do with a stored bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Good: serve it.
    Keep,
    /// The leaf expires within [`RENEW_BEFORE_DAYS`]: re-sign it with the same CA.
    RenewLeaf,
    /// Unusable (the reason): make a new CA and leaf.
    Regenerate(String),
}

/// The DNS names the serving certificate covers for Service `service` in `namespace`.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Sets `p`'s validity from a day before `now` (clock skew between replicas and the API
/// server) to `days` after it.
fn validity(p: &mut CertificateParams, now: jiff::Timestamp, days: i64) -> Result<(), CertError> {
    let ymd = |days: i64| -> Result<_, CertError> {
        let d = now
            .checked_add(jiff::SignedDuration::from_hours(24 * days))
            .map_err(|e| CertError::Date(e.to_string()))?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        Ok(rcgen::date_time_ymd(
            d.year().into(),
            d.month().unsigned_abs(),
            d.day().unsigned_abs(),
        ))
    };
    p.not_before = ymd(-1)?;
    p.not_after = ymd(days)?;
    Ok(())
}

fn ca_params(now: jiff::Timestamp) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, "kstash-webhook-ca");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, now, CA_DAYS)?;
    Ok(p)
}

/// Signs a serving leaf for `service`.`namespace`.svc with `issuer`: (cert PEM, key PEM).
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    service: &str,
    namespace: &str,
    now: jiff::Timestamp,
    days: i64,
) -> Result<(String, String), CertError> {
    let key = KeyPair::generate()?;
    let names = dns_names(service, namespace);
    let mut p = CertificateParams::new(names.clone())?;
    p.distinguished_name.push(DnType::CommonName, &names[0]);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut p, now, days)?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new CA and a leaf it signed for the Service, valid from `now`.
pub fn generate(
    service: &str,
    namespace: &str,
    now: jiff::Timestamp,
) -> Result<CertBundle, CertError> {
    generate_for(service, namespace, now, LEAF_DAYS)
}

/// [`generate`] with a leaf valid `leaf_days` (tests make one about to expire).
pub fn generate_for(
    service: &str,
    namespace: &str,
    now: jiff::Timestamp,
    leaf_days: i64,
) -> Result<CertBundle, CertError> {
    let ca_key = KeyPair::generate()?;
    let params = ca_params(now)?;
    let ca_crt = params.self_signed(&ca_key)?.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(params, ca_key);
    let (tls_crt, tls_key) = leaf(&issuer, service, namespace, now, leaf_days)?;
    Ok(CertBundle {
        ca_crt,
        ca_key: ca_key_pem,
        tls_crt,
        tls_key,
    })
}

/// `bundle` with a fresh leaf signed by its own CA (the CA, hence the `caBundle`, unchanged).
pub fn renew_leaf(
    bundle: &CertBundle,
    service: &str,
    namespace: &str,
    now: jiff::Timestamp,
) -> Result<CertBundle, CertError> {
    let key = KeyPair::from_pem(&bundle.ca_key).map_err(|e| CertError::Parse {
        key: CA_KEY,
        reason: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&bundle.ca_crt, key).map_err(|e| CertError::Parse {
        key: CA_CRT,
        reason: e.to_string(),
    })?;
    let (tls_crt, tls_key) = leaf(&issuer, service, namespace, now, LEAF_DAYS)?;
    Ok(CertBundle {
        tls_crt,
        tls_key,
        ..bundle.clone()
    })
}

/// What one certificate says about itself.
struct Info {
    not_after: i64,
    dns: Vec<String>,
}

fn info(key: &'static str, pem: &str) -> Result<Info, CertError> {
    let bad = |reason: String| CertError::Parse { key, reason };
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    let dns = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    };
    Ok(Info {
        not_after: cert.validity().not_after.timestamp(),
        dns,
    })
}

/// Whether `bundle` still serves `service`.`namespace` at `now`.
pub fn check(bundle: &CertBundle, service: &str, namespace: &str, now: jiff::Timestamp) -> Verdict {
    let margin = now.as_second() + RENEW_BEFORE_DAYS * 24 * 3600;
    let (ca, tls) = match (info(CA_CRT, &bundle.ca_crt), info(TLS_CRT, &bundle.tls_crt)) {
        (Ok(ca), Ok(tls)) => (ca, tls),
        (Err(e), _) | (_, Err(e)) => return Verdict::Regenerate(e.to_string()),
    };
    if KeyPair::from_pem(&bundle.ca_key).is_err() || KeyPair::from_pem(&bundle.tls_key).is_err() {
        return Verdict::Regenerate(format!("secret keys {CA_KEY}/{TLS_KEY}: not a private key"));
    }
    if ca.not_after <= margin {
        return Verdict::Regenerate(format!("the CA expires within {RENEW_BEFORE_DAYS} days"));
    }
    let wanted = dns_names(service, namespace);
    if let Some(missing) = wanted.iter().find(|n| !tls.dns.contains(n)) {
        return Verdict::Regenerate(format!("the serving certificate does not cover {missing}"));
    }
    if tls.not_after <= margin {
        return Verdict::RenewLeaf;
    }
    Verdict::Keep
}

impl CertBundle {
    /// The bundle as a `kubernetes.io/tls` Secret's data.
    pub fn to_data(&self) -> BTreeMap<String, k8s_openapi::ByteString> {
        [
            (CA_CRT, &self.ca_crt),
            (CA_KEY, &self.ca_key),
            (TLS_CRT, &self.tls_crt),
            (TLS_KEY, &self.tls_key),
        ]
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                k8s_openapi::ByteString(v.as_bytes().to_vec()),
            )
        })
        .collect()
    }

    /// The bundle from a Secret's data.
    pub fn from_data(
        data: &BTreeMap<String, k8s_openapi::ByteString>,
    ) -> Result<CertBundle, CertError> {
        let get = |key: &'static str| -> Result<String, CertError> {
            let v = data.get(key).ok_or(CertError::Parse {
                key,
                reason: "missing".into(),
            })?;
            String::from_utf8(v.0.clone()).map_err(|_| CertError::Parse {
                key,
                reason: "not UTF-8 PEM".into(),
            })
        };
        Ok(CertBundle {
            ca_crt: get(CA_CRT)?,
            ca_key: get(CA_KEY)?,
            tls_crt: get(TLS_CRT)?,
            tls_key: get(TLS_KEY)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_fresh_bundle_is_kept_and_covers_the_service() {
        let b = generate("kstash-webhook", "kstash", now()).unwrap();
        assert_eq!(check(&b, "kstash-webhook", "kstash", now()), Verdict::Keep);
        let tls = info(TLS_CRT, &b.tls_crt).unwrap();
        assert_eq!(
            tls.dns,
            vec![
                "kstash-webhook.kstash.svc".to_string(),
                "kstash-webhook.kstash.svc.cluster.local".to_string()
            ]
        );
        let year = (tls.not_after - now().as_second()) / 86400;
        assert!((LEAF_DAYS - 1..=LEAF_DAYS).contains(&year), "{year}");
        assert!(matches!(
            check(&b, "other", "kstash", now()),
            Verdict::Regenerate(r) if r.contains("other.kstash.svc")
        ));
        assert_eq!(CertBundle::from_data(&b.to_data()).unwrap(), b);
    }

    #[test]
    fn a_leaf_near_expiry_is_renewed_with_the_same_ca() {
        let b = generate_for("wh", "ns", now(), RENEW_BEFORE_DAYS - 1).unwrap();
        assert_eq!(check(&b, "wh", "ns", now()), Verdict::RenewLeaf);
        let later = now()
            .checked_add(jiff::SignedDuration::from_hours(24))
            .unwrap();
        let r = renew_leaf(&b, "wh", "ns", later).unwrap();
        assert_eq!(r.ca_crt, b.ca_crt, "the caBundle does not change");
        assert_ne!(r.tls_crt, b.tls_crt);
        assert_eq!(check(&r, "wh", "ns", later), Verdict::Keep);
        // The new leaf chains to the unchanged CA: a client trusting only the CA accepts it.
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut r.ca_crt.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let leaf = rustls_pemfile::certs(&mut r.tls_crt.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &rustls::pki_types::ServerName::try_from("wh.ns.svc").unwrap(),
                &[],
                rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    later.as_second() as u64,
                )),
            )
            .unwrap();
    }

    #[test]
    fn a_ca_near_expiry_or_garbage_regenerates() {
        let b = generate("wh", "ns", now()).unwrap();
        let ten_years = now()
            .checked_add(jiff::SignedDuration::from_hours(24 * (CA_DAYS - 10)))
            .unwrap();
        assert!(
            matches!(check(&b, "wh", "ns", ten_years), Verdict::Regenerate(r) if r.contains("CA"))
        );
        let broken = CertBundle {
            tls_crt: "junk".into(),
            ..b
        };
        assert!(
            matches!(check(&broken, "wh", "ns", now()), Verdict::Regenerate(r) if r.contains(TLS_CRT))
        );
        let mut data = broken.to_data();
        data.remove(CA_KEY);
        assert!(CertBundle::from_data(&data)
            .unwrap_err()
            .to_string()
            .contains("ca.key: missing"));
    }
}
