//! The task's target: its origin, credentials and TLS settings, resolved and pinned per task.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use http::HeaderValue;

use crate::netpolicy::EgressRules;

/// Credentials the host attaches to every request bound for the target. The guest never sees them.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: ApiKey <key>` (Elasticsearch's encoded API key).
    ApiKey(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::Basic { .. } => "Basic(..)",
            Credentials::Bearer(_) => "Bearer(..)",
            Credentials::ApiKey(_) => "ApiKey(..)",
        })
    }
}

impl Credentials {
    fn header(&self) -> Result<Option<HeaderValue>, String> {
        let v = match self {
            Credentials::None => return Ok(None),
            Credentials::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            Credentials::Bearer(t) => format!("Bearer {t}"),
            Credentials::ApiKey(k) => format!("ApiKey {k}"),
        };
        let mut h = HeaderValue::from_str(&v)
            .map_err(|_| "credentials contain characters not allowed in a header".to_string())?;
        h.set_sensitive(true);
        Ok(Some(h))
    }
}

/// A client certificate for mutual TLS (PEM).
#[derive(Clone)]
pub struct ClientCert {
    /// Certificate chain, leaf first (PEM).
    pub cert_chain_pem: Vec<u8>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub private_key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCert(..)")
    }
}

/// The endpoint a task may talk to (an AppBinding's URL, credentials and `caBundle`).
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Base URL, e.g. `https://es.demo.svc:9200`; passed to the guest as `target-url`.
    pub url: String,
    /// Attached by the host to requests for the target.
    pub credentials: Credentials,
    /// CA bundle (PEM) to verify the target; `None` = the webpki roots.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Client certificate for mutual TLS.
    pub client_cert: Option<ClientCert>,
    /// Addresses to connect to; empty = resolve the host name once at task start and pin them.
    pub pinned_addrs: Vec<SocketAddr>,
}

impl Target {
    /// A target with no credentials and default TLS.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

/// The port a scheme uses when the URL names none.
fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "redis" | "rediss" => 6379,
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        "mongodb" => 27017,
        _ => return None,
    })
}

/// `scheme://host:port` of any target URL (HTTP or TCP), normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Lowercase scheme, e.g. `redis`.
    pub scheme: String,
    /// Lowercase; IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

impl Endpoint {
    /// Parses `scheme://host[:port][/path][?query]`. HTTP(S) URLs must not carry a query or
    /// fragment (the base path is joined with request paths).
    pub fn parse(url: &str) -> Result<Self, String> {
        let field = "target URL";
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{field} {url:?} has no scheme (e.g. https:// or redis://)"))?;
        let scheme = scheme.to_ascii_lowercase();
        let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_lowercase())
            && scheme.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
            });
        if !valid_scheme {
            return Err(format!("{field} {url:?}: invalid scheme {scheme:?}"));
        }
        if (scheme == "http" || scheme == "https") && rest.contains(['?', '#']) {
            return Err(format!(
                "{field} {url:?}: an http(s) target must not contain `?` or `#` (its path is a base path joined with every request path)"
            ));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let https = scheme == "https";
        let port_default = default_port(&scheme);
        let o = Origin::from_authority(https, authority)
            .map_err(|e| format!("{field} {url:?}: {e}"))?;
        let explicit_port = authority.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty() && !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())
        });
        let port = match (explicit_port, port_default) {
            (true, _) => o.port,
            (false, Some(p)) => p,
            (false, None) => {
                return Err(format!(
                    "{field} {url:?}: no port, and scheme {scheme:?} has no default port"
                ))
            }
        };
        Ok(Self {
            scheme,
            host: o.host,
            port,
        })
    }

    /// Whether the target speaks HTTP (then the guest uses `wasi:http`, otherwise `tcp`).
    pub fn is_http(&self) -> bool {
        self.scheme == "http" || self.scheme == "https"
    }

    /// The HTTP origin, for `http(s)` targets.
    pub fn origin(&self) -> Option<Origin> {
        self.is_http().then(|| Origin {
            https: self.scheme == "https",
            host: self.host.clone(),
            port: self.port,
        })
    }
}

/// `scheme://host:port` of a URL, normalised (lowercase host, explicit port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub https: bool,
    /// Lowercase; IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Origin {
    /// Parses the origin of `url` (`http(s)://host[:port][/path]`, no user info).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "target URL {url:?} must start with http:// or https://"
            ));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        Self::from_authority(https, authority).map_err(|e| format!("target URL {url:?}: {e}"))
    }

    /// Parses `host[:port]` for the given scheme.
    pub fn from_authority(https: bool, authority: &str) -> Result<Self, String> {
        if authority.is_empty() {
            return Err("no host".to_string());
        }
        if authority.contains('@') {
            return Err("user info is not allowed (credentials are configured separately)".into());
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or("unclosed [ in IPv6 host")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("unexpected {after:?} after IPv6 host")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("invalid port {p:?}"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err("no host".to_string());
        }
        Ok(Self {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// A target ready for one task: endpoint, pinned addresses, credentials, TLS configs.
#[derive(Clone)]
pub(crate) struct ResolvedTarget {
    pub endpoint: Endpoint,
    /// The HTTP origin (`None` for a TCP target: every HTTP request is denied).
    pub origin: Option<Origin>,
    pub addrs: Vec<SocketAddr>,
    pub auth: Option<HeaderValue>,
    /// TLS for HTTPS requests (ALPN `http/1.1`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// TLS for `tcp.start-tls` (no ALPN), for TCP targets.
    pub tcp_tls: Option<Arc<rustls::ClientConfig>>,
    /// The target's credentials, for `credentials` (TCP targets).
    pub credentials: Credentials,
}

/// Why a target was refused before the task ran.
#[derive(Debug, Clone)]
pub(crate) enum ResolveError {
    /// The URL, credentials or TLS files are unusable.
    Invalid(String),
    /// A resolved address is outside the egress policy (nothing was connected to).
    Egress { address: SocketAddr, reason: String },
}

impl ResolvedTarget {
    /// Validates the target, builds its TLS configs, resolves (or takes) its addresses and
    /// checks every address against the egress policy.
    pub async fn resolve(target: &Target, rules: &EgressRules) -> Result<Self, ResolveError> {
        use ResolveError::Invalid;
        let endpoint = Endpoint::parse(&target.url).map_err(Invalid)?;
        let origin = endpoint.origin();
        let auth = if endpoint.is_http() {
            target.credentials.header().map_err(Invalid)?
        } else {
            None
        };
        let (tls, tcp_tls) = match &origin {
            Some(o) if o.https => (
                Some(Arc::new(tls_config(target, true).map_err(Invalid)?)),
                None,
            ),
            Some(_) => {
                if target.client_cert.is_some() {
                    return Err(Invalid(
                        "a client certificate needs an https:// target".to_string(),
                    ));
                }
                (None, None)
            }
            None => (
                None,
                Some(Arc::new(tls_config(target, false).map_err(Invalid)?)),
            ),
        };
        let addrs = if target.pinned_addrs.is_empty() {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
                    .await
                    .map_err(|e| Invalid(format!("resolving {}: {e}", endpoint.host)))?
                    .collect();
            if found.is_empty() {
                return Err(Invalid(format!(
                    "resolving {}: no addresses",
                    endpoint.host
                )));
            }
            found
        } else {
            target.pinned_addrs.clone()
        };
        for a in &addrs {
            rules.check(a.ip()).map_err(|reason| ResolveError::Egress {
                address: *a,
                reason,
            })?;
        }
        Ok(Self {
            endpoint,
            origin,
            addrs,
            auth,
            tls,
            tcp_tls,
            credentials: target.credentials.clone(),
        })
    }
}

/// The TLS server name for `host` (a DNS name or an IP address).
pub(crate) fn server_name(
    host: &str,
) -> Result<rustls::pki_types::ServerName<'static>, rustls::pki_types::InvalidDnsNameError> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(rustls::pki_types::ServerName::from(ip)),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_string()),
    }
}

fn tls_config(target: &Target, http: bool) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &target.ca_bundle_pem {
        Some(pem) => {
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("CA bundle: invalid PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA bundle: invalid certificate: {e}"))?;
                n += 1;
            }
            if n == 0 {
                return Err("CA bundle: no certificate found in the PEM".to_string());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots);
    let mut cfg = match &target.client_cert {
        None => builder.with_no_client_auth(),
        Some(cc) => {
            let chain = rustls_pemfile::certs(&mut cc.cert_chain_pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate: invalid PEM: {e}"))?;
            if chain.is_empty() {
                return Err("client certificate: no certificate found in the PEM".to_string());
            }
            let key = rustls_pemfile::private_key(&mut cc.private_key_pem.as_slice())
                .map_err(|e| format!("client key: invalid PEM: {e}"))?
                .ok_or("client key: no private key found in the PEM")?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
    };
    if http {
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_normalise_scheme_host_and_port() {
        let o = Origin::parse("https://ES.Example.com/base").unwrap();
        assert_eq!(o.to_string(), "https://es.example.com:443");
        let o = Origin::parse("http://127.0.0.1:9200").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 9200));
        let o = Origin::parse("http://[::1]:8080/x").unwrap();
        assert_eq!(o.to_string(), "http://[::1]:8080");
        assert!(Origin::parse("ftp://x").is_err());
        assert!(Origin::parse("http://user:pw@host")
            .unwrap_err()
            .contains("user info"));
        assert!(Origin::parse("http://host:99999").is_err());
    }

    #[test]
    fn endpoints_take_any_scheme_with_default_ports() {
        let e = Endpoint::parse("redis://Cache.demo.svc").unwrap();
        assert_eq!(e.to_string(), "redis://cache.demo.svc:6379");
        assert!(!e.is_http() && e.origin().is_none());
        let e = Endpoint::parse("postgres://db:6000/app?sslmode=require").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("db", 6000));
        assert!(Endpoint::parse("foo://host")
            .unwrap_err()
            .contains("no default port"));
        assert!(Endpoint::parse("host:80")
            .unwrap_err()
            .contains("no scheme"));
        let e = Endpoint::parse("https://es:9200/base").unwrap();
        assert_eq!(e.origin().unwrap().to_string(), "https://es:9200");
    }

    #[test]
    fn http_targets_with_a_query_or_fragment_are_refused() {
        for bad in [
            "http://es:9200/base?x=1",
            "https://es/base#frag",
            "http://es?",
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(
                e.contains("target URL") && e.contains("`?` or `#`"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn basic_credentials_follow_rfc_7617() {
        // RFC 7617 section 2 example: Aladdin / open sesame.
        let c = Credentials::Basic {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        };
        assert_eq!(
            c.header().unwrap().unwrap().to_str().unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(format!("{c:?}"), "Basic(..)");
    }
}
