//! `auth { ... }` block: listener authentication by URL, as Icecast 2.4's `auth_url`, so the
//! backends stations already run (AzuraCast, WHMCS modules, custom PHP) work unchanged.
//! At the top level it covers every mount; a mount's own block replaces it whole.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError};

/// What a listener gets when the backend cannot give an answer (unreachable, timed out,
/// not HTTP, a 5xx without the admitting header).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse the listener (a 401): a paid stream stays closed while its backend is down.
    #[default]
    Deny,
    /// Let the listener in: a free stream keeps playing while its statistics backend is down.
    Allow,
}

/// `auth { ... }` block, at the top level or in a `mount` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `http://` URL asked whether a new listener may listen (`action=listener_add`); empty:
    /// every listener is let in.
    pub listener_add: String,
    /// `http://` URL told when an authenticated listener leaves (`action=listener_remove`,
    /// with its `duration`), so a backend can count sessions; empty: not told.
    pub listener_remove: String,
    /// `http://` URL told when a source starts feeding a mount (`action=mount_add`).
    pub mount_add: String,
    /// `http://` URL told when a mount's source leaves (`action=mount_remove`).
    pub mount_remove: String,
    /// User for HTTP Basic authentication to the backend; empty: none is sent (unless the
    /// URL carries `user:pass@`).
    pub username: String,
    /// Password for HTTP Basic authentication to the backend.
    pub password: String,
    /// Response header that admits a listener, `name: value` (name compared without regard
    /// to case), as Icecast's `auth_header`.
    pub auth_header: String,
    /// Response header whose value is the most seconds the admitted listener may stay.
    pub timelimit_header: String,
    /// Request headers of the listener passed on to the backend (e.g. `Referer`), each as
    /// `<headers_prefix><name>=<value>`; headers the listener did not send are left out.
    pub headers: Vec<String>,
    /// Prefix of the passed headers' parameter names.
    pub headers_prefix: String,
    /// Seconds the backend has to answer (connect, send and response head together).
    pub timeout: f64,
    /// `"deny"` or `"allow"`: what a listener gets when the backend gives no answer.
    pub on_error: OnError,
    /// File of local listener accounts, `user:hash` lines with Argon2 PHC hashes; when set,
    /// listeners must log in (HTTP Basic) with one of them, before any `listener_add` check.
    pub users_file: String,
    /// Listener checks (and departure notices) in flight per shard; a listener arriving
    /// beyond this gets a 503, so a stalled backend cannot pile up connections without end.
    pub max_pending: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            listener_add: String::new(),
            listener_remove: String::new(),
            mount_add: String::new(),
            mount_remove: String::new(),
            username: String::new(),
            password: String::new(),
            auth_header: "icecast-auth-user: 1".into(),
            timelimit_header: "icecast-auth-timelimit".into(),
            headers: Vec::new(),
            headers_prefix: "ClientHeader.".into(),
            timeout: 5.0,
            on_error: OnError::Deny,
            users_file: String::new(),
            max_pending: 512,
        }
    }
}

impl AuthConfig {
    /// The backend's timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    /// `auth_header` split into its name and value.
    pub fn admit_header(&self) -> (&str, &str) {
        let (name, value) = self
            .auth_header
            .split_once(':')
            .unwrap_or((&self.auth_header, ""));
        (name.trim(), value.trim())
    }

    /// `timelimit_header`'s name (Icecast configs write it with its colon).
    pub fn timelimit_name(&self) -> &str {
        self.timelimit_header
            .trim()
            .trim_end_matches(':')
            .trim_end()
    }

    /// Whether anything is configured to be asked or told.
    pub fn is_active(&self) -> bool {
        [
            &self.listener_add,
            &self.listener_remove,
            &self.mount_add,
            &self.mount_remove,
            &self.users_file,
        ]
        .iter()
        .any(|url| !url.is_empty())
    }

    /// Checks the block; `key` is where it sits (`auth` or `mount./m.auth`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let bad =
            |field: &str, msg: String| Err(ConfigError::invalid(&format!("{key}.{field}"), msg));
        let urls = [
            ("listener_add", &self.listener_add),
            ("listener_remove", &self.listener_remove),
            ("mount_add", &self.mount_add),
            ("mount_remove", &self.mount_remove),
        ];
        for (field, url) in urls {
            if !url.is_empty() && !matches!(crate::url::HttpUrl::parse(url), Ok(u) if !u.tls) {
                return bad(
                    field,
                    format!(
                        "{url:?} is not an http://host[:port]/path URL (https is not supported)"
                    ),
                );
            }
        }
        if self.username.contains(':') {
            return bad("username", "must not contain ':'".into());
        }
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        if !token(self.admit_header().0) || !self.auth_header.contains(':') {
            return bad(
                "auth_header",
                format!("{:?} is not `name: value`", self.auth_header),
            );
        }
        if !token(self.timelimit_name()) {
            return bad(
                "timelimit_header",
                format!("{:?} is not a header name", self.timelimit_header),
            );
        }
        if let Some(name) = self.headers.iter().find(|h| !token(h)) {
            return bad("headers", format!("{name:?} is not a header name"));
        }
        if self
            .headers_prefix
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b"-._~".contains(&b)))
        {
            return bad(
                "headers_prefix",
                "may only hold letters, digits and - . _ ~".into(),
            );
        }
        if !(self.timeout.is_finite() && self.timeout > 0.0 && self.timeout <= 300.0) {
            return bad(
                "timeout",
                format!("must be between 0 and 300 seconds (got {})", self.timeout),
            );
        }
        if !self.users_file.is_empty() && self.users_file.trim().is_empty() {
            return bad("users_file", "must be a file path".into());
        }
        if self.max_pending == 0 {
            return bad("max_pending", "must be at least 1".into());
        }
        Ok(())
    }

    /// The block with its secrets replaced, for printing.
    pub(super) fn redacted(&self) -> AuthConfig {
        let hide = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                super::print::REDACTED.to_string()
            }
        };
        AuthConfig {
            password: hide(&self.password),
            listener_add: redact_url(&self.listener_add),
            listener_remove: redact_url(&self.listener_remove),
            mount_add: redact_url(&self.mount_add),
            mount_remove: redact_url(&self.mount_remove),
            ..self.clone()
        }
    }
}

/// `url` with the password of any `user:pass@` in it replaced, for printing and logging.
pub fn redact_url(url: &str) -> String {
    match crate::url::HttpUrl::parse(url) {
        Ok(parsed) if parsed.credentials.is_some() => parsed.redacted(),
        // Unparsable (refused by validation) or without credentials: nothing to hide.
        _ => url.to_string(),
    }
}

impl Config {
    /// The `auth` block in force for mount `name`: its own block's, else the top-level one.
    pub fn auth_for(&self, name: &str) -> Option<&AuthConfig> {
        self.mount
            .get(name)
            .and_then(|m| m.auth.as_ref())
            .or(self.auth.as_ref())
            .filter(|auth| auth.is_active())
    }

    /// The host name backends are told the server has (Icecast's `hostname`): the bound
    /// address, or `localhost` when it is a wildcard.
    pub fn public_host(&self) -> &str {
        match self.server.host.as_str() {
            "0.0.0.0" | "::" | "" => "localhost",
            host => host,
        }
    }

    /// Checks the top-level and every mount's `auth` block.
    pub(super) fn validate_auth(&self) -> Result<(), ConfigError> {
        if let Some(auth) = &self.auth {
            auth.validate("auth")?;
        }
        for (name, mount) in &self.mount {
            if let Some(auth) = &mount.auth {
                auth.validate(&format!("mount.{name}.auth"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::err;

    #[test]
    fn auth_blocks_are_checked_and_the_mount_one_wins() {
        let c = Config::from_hcl_str(
            "auth { listener_add = \"http://127.0.0.1:9/a\" }\n\
             mount \"/paid\" {\n  auth {\n    listener_add = \"http://127.0.0.1:9/b\"\n    on_error = \"allow\"\n  }\n}\n\
             mount \"/free\" {\n  auth { timeout = 2 }\n}\n",
        )
        .unwrap();
        assert_eq!(
            c.auth_for("/stream").unwrap().listener_add,
            "http://127.0.0.1:9/a"
        );
        let paid = c.auth_for("/paid").unwrap();
        assert_eq!(
            (paid.listener_add.as_str(), paid.on_error),
            ("http://127.0.0.1:9/b", OnError::Allow)
        );
        assert_eq!(paid.admit_header(), ("icecast-auth-user", "1"));
        assert_eq!(paid.timeout(), Duration::from_secs(5));
        // A block with no URL turns authentication off for its mount.
        assert!(c.auth_for("/free").is_none());
        assert!(Config::from_hcl_str("")
            .unwrap()
            .auth_for("/stream")
            .is_none());

        assert!(err("auth { listener_add = \"https://x/\" }").contains("auth.listener_add"));
        assert!(
            err("mount \"/m\" {\n  auth { listener_remove = \"x\" }\n}\n")
                .contains("mount./m.auth.listener_remove")
        );
        assert!(err("auth { on_error = \"maybe\" }").contains("auth.on_error"));
        assert!(err("auth { timeout = 0 }").contains("auth.timeout"));
        assert!(err("auth { max_pending = 0 }").contains("auth.max_pending"));
        assert!(err("auth { auth_header = \"no colon\" }").contains("auth.auth_header"));
        assert!(err("auth { headers = [\"bad header\"] }").contains("auth.headers"));
        assert!(err("auth { headers_prefix = \"a&b=\" }").contains("auth.headers_prefix"));
        assert!(err("auth { username = \"a:b\" }").contains("auth.username"));
        assert!(err("auth { urls = 1 }").contains("auth"));
        let c = Config::from_hcl_str("auth { timelimit_header = \"X-Limit:\" }").unwrap();
        assert_eq!(c.auth.unwrap().timelimit_name(), "X-Limit");
    }

    #[test]
    fn secrets_are_redacted_when_printed() {
        let c = Config::from_hcl_str(
            "auth {\n  listener_add = \"http://bob:urlsecret@127.0.0.1/a\"\n  password = \"topsecret\"\n  username = \"bob\"\n}\n\
             mount \"/m\" {\n  auth { password = \"mountsecret\" }\n}\n",
        )
        .unwrap();
        let printed = c.to_redacted_hcl();
        for secret in ["topsecret", "urlsecret", "mountsecret"] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        }
        assert!(
            printed.contains("http://bob:***@127.0.0.1:80/a"),
            "{printed}"
        );
        // What is printed loads again.
        Config::from_hcl_str(&printed).unwrap();
    }
}
