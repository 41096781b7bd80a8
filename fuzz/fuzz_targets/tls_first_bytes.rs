#![no_main]
//! The first bytes a peer sends to the HTTPS port, split across reads anywhere: the handshake
//! and request-head code never panics, whatever arrives (a ClientHello, plain HTTP, junk), and
//! it always ends in a request, an error, or a wait for more bytes.

use std::sync::{Arc, OnceLock};

use cycast::config::TlsConfig;
use cycast::tls::session::{Handshake, Step};
use cycast::tls::Certificates;
use libfuzzer_sys::fuzz_target;

/// A self-signed P-256 certificate for `localhost`, valid until 2126 (test material only).
const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUPgnE5tLO8YK8SBz2gu6pHnL4y9gwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNjE3MjYxNVoYDzIxMjYxMTEy
MTcyNjE1WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASURy6mrn957X7G9UCuOGFmmW08iUn79IJPFKLn/BhdhOIwSInVpvc9
ZKMBUJFmtx+Ysl32T46PgSFmu3sjCXMIo2kwZzAdBgNVHQ4EFgQUqeR8/INFk+Qn
0F7kupyrFqC1r+0wHwYDVR0jBBgwFoAUqeR8/INFk+Qn0F7kupyrFqC1r+0wDwYD
VR0TAQH/BAUwAwEB/zAUBgNVHREEDTALgglsb2NhbGhvc3QwCgYIKoZIzj0EAwID
SAAwRQIgHFxJkRQzx1AGje1zBrb6m05oM0vBoyf4+QNw9x4wND8CIQCcOfysN5+7
WUB3CEJdP7smzW0lWFj1L3hySth4QYpAXQ==
-----END CERTIFICATE-----";
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg4ItmgK5Hi1ZR74LI
LKLwjduI7cO4jIhqzWt3mZR1vqChRANCAASURy6mrn957X7G9UCuOGFmmW08iUn7
9IJPFKLn/BhdhOIwSInVpvc9ZKMBUJFmtx+Ysl32T46PgSFmu3sjCXMI
-----END PRIVATE KEY-----";

fn server_config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("cycast-fuzz-tls-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            std::fs::write(&cert, CERT).unwrap();
            std::fs::write(&key, KEY).unwrap();
            let tls = TlsConfig {
                certificate: cert.display().to_string(),
                key: key.display().to_string(),
                ..TlsConfig::default()
            };
            Certificates::load(&tls).unwrap().server_config()
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks where the first read ends; the rest is what the peer sent.
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let cut = (cut as usize).min(input.len());
    let mut reads = [&input[..cut], &input[cut..]].into_iter();
    let Ok(mut handshake) = Handshake::new(server_config(), 8192) else {
        return;
    };
    // Each step either consumes input, produces output, or asks for more: bounded.
    for _ in 0..10_000 {
        match handshake.step() {
            Ok(Step::Again) => {}
            Ok(Step::Transmit) => {
                assert!(!handshake.to_send().is_empty());
                handshake.sent();
            }
            Ok(Step::NeedInput) => {
                let Some(bytes) = reads.find(|r| !r.is_empty()) else {
                    return;
                };
                let Ok(room) = handshake.input_room() else {
                    return;
                };
                let n = bytes.len().min(room.len());
                room[..n].copy_from_slice(&bytes[..n]);
                handshake.received(n);
            }
            Ok(Step::Done(_)) | Ok(Step::NotHttp(_)) | Err(_) => return,
        }
    }
    panic!("the handshake neither finished nor asked for input");
});
