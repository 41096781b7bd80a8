//! Access log in the combined log format that log analysers read: one line per finished
//! request, and for a listener when it leaves (with the bytes it was sent and, appended as
//! Icecast does, the seconds it stayed).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use chrono::Local;

use crate::http::Request;
use crate::logging::{escape, escape_token};

/// Where one shard writes its access log lines. Each shard has its own handle on the file;
/// lines are single appends, so shards never interleave within a line.
pub enum AccessLog {
    /// Appending to a file.
    File(File),
    /// Standard error, beside the server log.
    Stderr,
}

impl AccessLog {
    /// Opens the log `advanced.access_log` names, `None` when it is off.
    pub fn open(setting: &str) -> std::io::Result<Option<AccessLog>> {
        match setting {
            "" => Ok(None),
            "-" => Ok(Some(AccessLog::Stderr)),
            path => Ok(Some(AccessLog::File(
                OpenOptions::new().create(true).append(true).open(path)?,
            ))),
        }
    }

    /// The part of a line known when the request arrives: client, time, request line.
    pub fn prefix(client: IpAddr, request: &Request) -> String {
        let user = request
            .basic_credentials()
            .map(|(u, _)| u)
            .filter(|u| !u.is_empty());
        let target = if request.query.is_empty() {
            request.path.clone()
        } else {
            format!("{}?{}", request.path, redact_query(&request.query))
        };
        format!(
            "{client} - {} [{}] \"{} {} HTTP/1.{}\"",
            user.as_deref().map_or(escape_token("-"), escape_token),
            Local::now().format("%d/%b/%Y:%H:%M:%S %z"),
            escape_token(&request.method),
            escape_token(&target),
            request.minor_version,
        )
    }

    /// The part of a line after status and bytes: referer and user agent.
    pub fn suffix(request: &Request) -> String {
        format!(
            " \"{}\" \"{}\"",
            escape(request.header("referer").unwrap_or("-")),
            escape(request.header("user-agent").unwrap_or("-")),
        )
    }

    /// Writes one line.
    pub fn write(
        &self,
        prefix: &str,
        status: u16,
        bytes: u64,
        suffix: &str,
        stayed: Option<Duration>,
    ) {
        let mut line = format!("{prefix} {status} {bytes}{suffix}");
        if let Some(stayed) = stayed {
            line.push_str(&format!(" {}", stayed.as_secs()));
        }
        line.push('\n');
        let _ = match self {
            AccessLog::File(file) => (&*file).write_all(line.as_bytes()),
            AccessLog::Stderr => std::io::stderr().write_all(line.as_bytes()),
        };
    }
}

/// Query values that carry secrets (Shoutcast's `pass=`) never reach the log, however the
/// name is spelled (`p%61ss=` is `pass=` to the admin API too).
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret(&crate::http::form_decode(k)) => format!("{k}=<redacted>"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a decoded query parameter name carries a password.
fn is_secret(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"pass") || name.eq_ignore_ascii_case(b"password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_combined_format_without_secrets() {
        let req = crate::http::parse_head(b"GET /admin.cgi?pass=secret&P%61SS=s2&mode=updinfo HTTP/1.1\r\nUser-Agent: a \"b\"\r\nReferer: http://x\r\n\r\n").unwrap().unwrap();
        let prefix = AccessLog::prefix("10.0.0.1".parse().unwrap(), &req);
        assert!(prefix.starts_with("10.0.0.1 - - ["), "{prefix}");
        assert!(
            prefix.ends_with(
                "\"GET /admin.cgi?pass=<redacted>&P%61SS=<redacted>&mode=updinfo HTTP/1.1\""
            ),
            "{prefix}"
        );
        assert_eq!(AccessLog::suffix(&req), " \"http://x\" \"a \\\"b\\\"\"");
    }

    #[test]
    fn a_user_name_cannot_forge_a_line_or_a_field() {
        let auth = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "x\n6.6.6.6 -\t- [01/Jan/2026:00:00:00 +0000]:pw",
        );
        let head = format!("GET / HTTP/1.0\r\nAuthorization: Basic {auth}\r\n\r\n");
        let req = crate::http::parse_head(head.as_bytes()).unwrap().unwrap();
        let prefix = AccessLog::prefix("10.0.0.1".parse().unwrap(), &req);
        assert!(
            prefix.starts_with("10.0.0.1 - x\\x0a6.6.6.6\\x20-\\x09-\\x20[01/Jan/2026 ["),
            "{prefix}"
        );
    }
}
