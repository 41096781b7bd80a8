//! The client end of TLS: what a relay pulling an `https://` upstream trusts, and the name it
//! checks the upstream's certificate against.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// A client configuration trusting the certificates of `ca_file` (PEM), or the system's roots
/// without one. `verify = false` accepts any certificate (lab use only: anyone on the path
/// can then read and alter the stream).
pub fn client_config(
    ca_file: Option<&str>,
    verify: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = super::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if verify {
        builder
            .with_root_certificates(roots(ca_file)?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The roots of `ca_file`, or of the system (`SSL_CERT_FILE`, `SSL_CERT_DIR` or the usual
/// bundle locations).
fn roots(ca_file: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in super::read_chain(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{path}: not a usable CA certificate: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no trusted root certificates on this system; set ca_file".into());
            }
        }
    }
    Ok(roots)
}

/// The name to verify the certificate of `host` against: a name or an address, as a parsed
/// URL holds it (IPv6 without brackets).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?}: {e}"))
}

/// Accepts every certificate (`tls_verify = false`); handshake signatures are still checked,
/// so the session keys are at least those of whoever holds the presented certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_of_parsed_hosts() {
        for host in ["radio.example", "::1", "127.0.0.1"] {
            assert_eq!(
                server_name(host).unwrap(),
                ServerName::try_from(host).unwrap()
            );
        }
        let url = crate::url::HttpUrl::parse("https://[::1]:8443/live").unwrap();
        assert_eq!(
            server_name(&url.host).unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error() {
        assert!(client_config(Some("/nonexistent/ca.pem"), true)
            .unwrap_err()
            .contains("/nonexistent/ca.pem"));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(client_config(empty.to_str(), true).is_err());
        assert!(client_config(None, false).is_ok());
    }
}
