//! HTTPS, terminated on the shards with rustls (the `ring` provider; no OpenSSL).
//!
//! [`Certificates`] loads the configured PEM files into a rustls server configuration that
//! every shard shares and that SIGHUP swaps (new handshakes take the new pair, connections
//! keep theirs). [`session`] is one connection: the handshake and request head on the shard's
//! async tasks, then the record path the fan-out encrypts each chunk through. All record
//! handling is in [`session`], so a kernel TLS offload could later take its place.

pub mod client;
pub mod conn;
pub mod session;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{ConfigError, TlsConfig};

pub use conn::{ClientConn, Conn};
pub use session::{ClientSession, Session};

/// The certificates in force and what every shard's handshakes are configured with.
pub struct Certificates {
    /// The rustls configuration of new handshakes; SIGHUP swaps it.
    config: ArcSwap<rustls::ServerConfig>,
    /// Unix time the soonest-expiring loaded certificate expires, for the expiry metric.
    not_after: AtomicI64,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("not_after", &self.not_after.load(Ordering::Relaxed))
            .finish()
    }
}

impl Certificates {
    /// Loads the pairs `tls` names; the error is one line naming the key at fault.
    pub fn load(tls: &TlsConfig) -> Result<Self, ConfigError> {
        let (config, not_after) = server_config(tls)?;
        Ok(Self {
            config: ArcSwap::from(config),
            not_after: AtomicI64::new(not_after),
        })
    }

    /// Re-reads the files for SIGHUP. A pair that does not load keeps the one in force, with
    /// one error logged; connections in progress keep theirs either way.
    pub fn reload(&self, tls: &TlsConfig) {
        match server_config(tls) {
            Ok((config, not_after)) => {
                self.config.store(config);
                self.not_after.store(not_after, Ordering::Relaxed);
                tracing::info!("TLS certificates reloaded");
            }
            Err(e) => {
                tracing::error!("TLS reload failed, keeping the certificates in force: {e}")
            }
        }
    }

    /// The configuration for a new handshake.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.load_full()
    }

    /// Seconds until the soonest-expiring certificate in force expires (negative once it has).
    pub fn expires_in(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed) - unix_now()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The ring provider, the only one this build has (aws-lc would bring a C toolchain build).
/// rustls deprecates it for lacking post-quantum key exchange; classical X25519/P-256 is the
/// trade-off taken.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration for `tls` and when its soonest certificate expires.
fn server_config(tls: &TlsConfig) -> Result<(Arc<rustls::ServerConfig>, i64), ConfigError> {
    let provider = provider();
    let (main, mut not_after) = certified_key(&tls.certificate, &tls.key, "tls", &provider)?;
    let mut by_name = Vec::with_capacity(tls.sni.len());
    for (i, sni) in tls.sni.iter().enumerate() {
        let key = format!("tls.sni[{i}]");
        let (certified, expires) = certified_key(&sni.certificate, &sni.key, &key, &provider)?;
        let names = dns_names(&certified.cert[0]);
        if names.is_empty() {
            return Err(invalid(
                &format!("{key}.certificate"),
                format!("{} names no DNS name to pick it by", sni.certificate),
            ));
        }
        not_after = not_after.min(expires);
        by_name.push((names, Arc::new(certified)));
    }
    let resolver = ByName {
        main: Arc::new(main),
        by_name,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls", e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    // HTTP/1 only: the request path has no HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    Ok((Arc::new(config), not_after))
}

/// The certified key of one PEM pair (`prefix.certificate`, `prefix.key`), checked: both files
/// readable and non-empty, the key that of the certificate, the certificate valid now.
fn certified_key(
    cert_path: &str,
    key_path: &str,
    prefix: &str,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, i64), ConfigError> {
    let cert_key = format!("{prefix}.certificate");
    let key_key = format!("{prefix}.key");
    let chain = read_chain(cert_path).map_err(|m| invalid(&cert_key, m))?;
    let key = read_key(key_path).map_err(|m| invalid(&key_key, m))?;
    let (not_before, not_after) =
        validity(&chain[0]).map_err(|m| invalid(&cert_key, format!("{cert_path}: {m}")))?;
    let now = unix_now();
    if not_after < now {
        return Err(invalid(
            &cert_key,
            format!("{cert_path} expired on {}", date(not_after)),
        ));
    }
    if not_before > now {
        return Err(invalid(
            &cert_key,
            format!("{cert_path} is not valid before {}", date(not_before)),
        ));
    }
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            invalid(&key_key, format!("{key_path} does not match {cert_path}"))
        }
        e => invalid(&key_key, format!("{key_path}: {e}")),
    })?;
    // `from_der` lets a key whose public half it cannot derive pass; refuse that too.
    certified.keys_match().map_err(|e| {
        invalid(
            &key_key,
            format!("{key_path} does not match {cert_path}: {e}"),
        )
    })?;
    Ok((certified, not_after))
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        line: None,
        file: None,
        message,
    }
}

fn read_file(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(Path::new(path)).map_err(|e| format!("cannot read {path}: {e}"))
}

/// The certificates of a PEM file, in order.
fn read_chain(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: not a valid PEM certificate file: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "{path} holds no certificate (no BEGIN CERTIFICATE)"
        ));
    }
    Ok(chain)
}

/// The private key of a PEM file.
fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("{path} holds no private key (no BEGIN PRIVATE KEY)")
        }
        e => format!("{path}: not a valid PEM private key: {e}"),
    })
}

/// Not-before and not-after of a certificate, as Unix times.
fn validity(cert: &CertificateDer<'_>) -> Result<(i64, i64), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let validity = parsed.validity();
    Ok((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// The DNS names a certificate is for (subject alternative names), lower-case.
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(
        || unix.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// Picks the certificate for a handshake: the first SNI pair with the requested name (exact,
/// or a `*.` wildcard one label deep), else the main pair.
#[derive(Debug)]
struct ByName {
    /// `tls.certificate` / `tls.key`.
    main: Arc<CertifiedKey>,
    /// `tls.sni` pairs with the DNS names each is for.
    by_name: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(wanted) = hello.server_name() else {
            return Some(self.main.clone());
        };
        let wanted = wanted.to_ascii_lowercase();
        let found = self.by_name.iter().find(|(names, _)| {
            names.iter().any(|name| match name.strip_prefix("*.") {
                Some(parent) => wanted
                    .split_once('.')
                    .is_some_and(|(_, rest)| rest == parent),
                None => *name == wanted,
            })
        });
        Some(found.map_or_else(|| self.main.clone(), |(_, key)| key.clone()))
    }
}

/// The answer of the plain port to a page request when `tls.redirect_pages` is on: a `301` to
/// the same path on the HTTPS port of the host the client asked for. `None` when the request
/// names no usable host (the page is then served in the clear).
pub fn redirect_to_https(request: &crate::http::Request, tls_port: u16) -> Option<Vec<u8>> {
    let host = request.header("host")?.trim();
    // Only a plain name or address goes into the answer's header (no injection through Host).
    let name = match host.strip_prefix('[') {
        Some(v6) => &host[..v6.find(']')? + 2],
        None => host.split(':').next()?,
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if name.is_empty() || !name.chars().all(allowed) {
        return None;
    }
    let query = match request.query.is_empty() {
        true => String::new(),
        false => format!("?{}", request.query),
    };
    let location = format!("https://{name}:{tls_port}{}{query}", request.path);
    if location.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    Some(crate::http::response(
        301,
        "Moved Permanently",
        &[("Location", &location)],
        "This page is served over HTTPS\n",
    ))
}

#[cfg(test)]
mod tests {
    use crate::http::parse_head;

    fn location(head: &[u8]) -> Option<String> {
        let request = parse_head(head).unwrap().unwrap();
        let answer = super::redirect_to_https(&request, 8443)?;
        let text = String::from_utf8(answer).unwrap();
        let line = text.lines().find(|l| l.starts_with("Location: "))?;
        Some(line["Location: ".len()..].to_string())
    }

    #[test]
    fn redirects_keep_host_path_and_query_and_refuse_odd_hosts() {
        assert_eq!(
            location(b"GET /status.xsl?a=1 HTTP/1.1\r\nHost: radio.example:8001\r\n\r\n")
                .as_deref(),
            Some("https://radio.example:8443/status.xsl?a=1")
        );
        assert_eq!(
            location(b"GET / HTTP/1.1\r\nHost: [::1]:8001\r\n\r\n").as_deref(),
            Some("https://[::1]:8443/")
        );
        assert_eq!(location(b"GET / HTTP/1.0\r\n\r\n"), None);
        assert_eq!(location(b"GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n"), None);
        assert_eq!(location(b"GET / HTTP/1.1\r\nHost: \r\n\r\n"), None);
    }
}
