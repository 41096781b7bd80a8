//! `tls { ... }` block: HTTPS on its own port, served next to the plain one by every shard.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `tls { ... }` block. Absent: no HTTPS port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Port HTTPS listeners, pages and APIs are served on (next to `server.listen_port`,
    /// because old players and hardware radios only speak plain HTTP).
    pub port: u16,
    /// Port sources connect to over TLS (Icecast 2.5 clients, ffmpeg with `tls=1`), with the
    /// same certificate and the same source protocol as `server.source_port`, which stays
    /// open in the clear. Absent: no TLS source port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    /// PEM file with the certificate chain, the server's own certificate first (what certbot
    /// calls `fullchain.pem`).
    pub certificate: String,
    /// PEM file with the private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// More certificates, picked by the name a client asks for (SNI) among each one's DNS
    /// names; the main pair answers every other name.
    pub sni: Vec<SniCertificate>,
    /// Answer page requests (not streams) on the plain port with a redirect to HTTPS, so
    /// browsers end up on the page that may play the stream.
    pub redirect_pages: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            port: 8443,
            source_port: None,
            certificate: String::new(),
            key: String::new(),
            sni: Vec::new(),
            redirect_pages: false,
        }
    }
}

/// One extra certificate of `tls.sni`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SniCertificate {
    /// PEM certificate chain, as `tls.certificate`.
    pub certificate: String,
    /// PEM private key, as `tls.key`.
    pub key: String,
}

impl TlsConfig {
    /// Checks what can be judged without reading the files (those are read when the server
    /// starts or reloads, see `crate::tls`).
    pub fn validate(&self, listen_port: u16, source_port: u16) -> Result<(), ConfigError> {
        if self.port != 0 && (self.port == listen_port || self.port == source_port) {
            return Err(ConfigError::invalid(
                "tls.port",
                format!(
                    "{} must differ from server.listen_port and server.source_port",
                    self.port
                ),
            ));
        }
        if let Some(port) = self.source_port.filter(|&p| p != 0) {
            if port == listen_port || port == source_port || port == self.port {
                return Err(ConfigError::invalid(
                    "tls.source_port",
                    format!(
                        "{port} must differ from server.listen_port, server.source_port and tls.port"
                    ),
                ));
            }
        }
        let files = [
            ("tls.certificate", &self.certificate),
            ("tls.key", &self.key),
        ];
        let sni = self.sni.iter().enumerate().flat_map(|(i, s)| {
            [
                (format!("tls.sni[{i}].certificate"), &s.certificate),
                (format!("tls.sni[{i}].key"), &s.key),
            ]
        });
        for (key, path) in files
            .map(|(k, p)| (k.to_string(), p))
            .into_iter()
            .chain(sni)
        {
            if path.trim().is_empty() {
                return Err(ConfigError::invalid(&key, "a PEM file path is required"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::err;
    use crate::config::Config;

    #[test]
    fn relays_take_https_urls_with_a_ca_file_and_verification_on_by_default() {
        let c = Config::from_hcl_str(
            "relay \"/r\" {\n  url = \"https://origin.example/stream\"\n  ca_file = \"/ca.pem\"\n}\n",
        )
        .unwrap();
        let relay = &c.relay["/r"];
        assert_eq!(relay.ca_file.as_deref(), Some("/ca.pem"));
        assert!(relay.tls_verify);
        assert!(err("relay \"/r\" {\n  url = \"https://\"\n}\n").contains("relay./r.url"));
        assert!(err("relay \"/r\" {\n  url = \"ftp://x/y\"\n}\n").contains("relay./r.url"));
        assert!(
            err("relay \"/r\" {\n  url = \"https://o/s\"\n  ca_file = \" \"\n}\n")
                .contains("relay./r.ca_file")
        );
    }

    #[test]
    fn tls_block_is_optional_and_checked() {
        assert!(Config::from_hcl_str("").unwrap().tls.is_none());
        let c = Config::from_hcl_str(
            "tls {\n  port = 9443\n  certificate = \"/c.pem\"\n  key = \"/k.pem\"\n}\n",
        )
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!((tls.port, tls.key.as_str()), (9443, "/k.pem"));
        assert!(err("tls {\n  key = \"/k.pem\"\n}\n").contains("tls.certificate"));
        assert!(err("tls {\n  certificate = \"/c.pem\"\n}\n").contains("tls.key"));
        assert!(
            err("tls {\n  port = 8001\n  certificate = \"/c\"\n  key = \"/k\"\n}\n")
                .contains("tls.port")
        );
        assert!(err(
            "tls {\n  certificate = \"/c\"\n  key = \"/k\"\n  sni = [{ certificate = \"/d\" }]\n}\n"
        )
        .contains("tls.sni[0].key"));
        assert!(err("tls {\n  cert = \"/c\"\n}\n").contains("tls"));
        assert_eq!(tls.source_port, None);
        let c = Config::from_hcl_str(
            "tls {\n  source_port = 9001\n  certificate = \"/c\"\n  key = \"/k\"\n}\n",
        )
        .unwrap();
        assert_eq!(c.tls.unwrap().source_port, Some(9001));
        for port in [8000, 8001, 8443] {
            let text = format!(
                "tls {{\n  source_port = {port}\n  certificate = \"/c\"\n  key = \"/k\"\n}}\n"
            );
            assert!(err(&text).contains("tls.source_port"), "{port}");
        }
    }
}
