//! Certificates (a CA and a separate serving leaf), the bearer token and the kubeconfig, all kept
//! in the data directory so restarts keep clients working.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Error;

/// The PEMs and token of a control plane.
pub struct Credentials {
    /// CA certificate (PEM).
    pub ca_pem: String,
    /// Serving certificate (PEM).
    pub cert_pem: String,
    /// Serving key (PEM).
    pub key_pem: String,
    /// Bearer token.
    pub token: String,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap_or_default();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

/// Loads the credentials from `dir`, generating them on first use.
pub fn load_or_create(dir: &Path) -> Result<Credentials, Error> {
    let p = |f: &str| dir.join(f);
    if p("ca.crt").exists()
        && p("server.crt").exists()
        && p("server.key").exists()
        && p("token").exists()
    {
        // Files left by an older version with wider modes are narrowed as they are read.
        return Ok(Credentials {
            ca_pem: crate::private::read_file(&p("ca.crt"))?,
            cert_pem: crate::private::read_file(&p("server.crt"))?,
            key_pem: crate::private::read_file(&p("server.key"))?,
            token: crate::private::read_file(&p("token"))?.trim().to_string(),
        });
    }
    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kstash-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().map_err(tls_err)?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).map_err(tls_err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "kstash-controlplane");
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().map_err(tls_err)?));
    leaf.subject_alt_names
        .push(SanType::IpAddress("::1".parse().map_err(tls_err)?));
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(tls_err)?;
    let creds = Credentials {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
        token: random_hex(32),
    };
    // Created 0600 by the open call itself (the certificates too: one rule for the directory).
    crate::private::write_file(&p("server.key"), &creds.key_pem)?;
    crate::private::write_file(&p("token"), &creds.token)?;
    crate::private::write_file(&p("ca.crt"), &creds.ca_pem)?;
    crate::private::write_file(&p("server.crt"), &creds.cert_pem)?;
    Ok(creds)
}

/// A rustls server config offering h2 and http/1.1.
pub fn server_config(c: &Credentials) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut c.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = rustls_pemfile::private_key(&mut c.key_pem.as_bytes())?
        .ok_or_else(|| Error::Tls("no private key".into()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(tls_err)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(tls_err)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The kubeconfig text for `server` (e.g. `https://127.0.0.1:6443`).
pub fn kubeconfig(server: &str, c: &Credentials) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(&c.ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kstash\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: kstash\n  user:\n    token: {}\ncontexts:\n- name: kstash\n  context:\n    cluster: kstash\n    user: kstash\n    namespace: default\ncurrent-context: kstash\n",
        c.token
    )
}
