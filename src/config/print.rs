//! The effective config printed as HCL, secrets redacted.

use super::Config;

/// What every secret is printed as.
pub(super) const REDACTED: &str = "<redacted>";

impl Config {
    /// The effective config as HCL, with every password and secret replaced by `<redacted>`.
    /// An empty admin password stays `""` so it is visible that the admin API is off.
    pub fn to_redacted_hcl(&self) -> String {
        let mut c = self.clone();
        c.server.source_password = REDACTED.into();
        if !c.server.admin_password.is_empty() {
            c.server.admin_password = REDACTED.into();
        }
        if c.advanced.flask_secret_key.is_some() {
            c.advanced.flask_secret_key = Some(REDACTED.into());
        }
        for mount in c.mount.values_mut() {
            if mount.source_password.is_some() {
                mount.source_password = Some(REDACTED.into());
            }
            mount.auth = mount.auth.as_ref().map(|a| a.redacted());
        }
        // A relay URL may log in to its upstream: `http://user:password@host/mount`.
        for relay in c.relay.values_mut() {
            if let Ok(url) = crate::url::HttpUrl::parse(&relay.url) {
                if url
                    .credentials
                    .as_ref()
                    .is_some_and(|c| !c.password.is_empty())
                {
                    relay.url = url.redacted();
                }
            }
        }
        c.auth = c.auth.as_ref().map(|a| a.redacted());
        let mut body = hcl::Body::builder();
        // One block per section, matching the layout of config.hcl.
        let sections = [
            ("server", hcl::to_value(&c.server)),
            ("buffer", hcl::to_value(&c.buffer)),
            ("limits", hcl::to_value(&c.limits)),
            ("broadcaster", hcl::to_value(&c.broadcaster)),
            ("fanout", hcl::to_value(&c.fanout)),
            ("playlist", hcl::to_value(&c.playlist)),
            ("metadata", hcl::to_value(&c.metadata)),
            ("advanced", hcl::to_value(&c.advanced)),
            ("silence", hcl::to_value(&c.silence)),
        ];
        let optional = c.auth.as_ref().map(|a| ("auth", hcl::to_value(a)));
        for (name, value) in sections.into_iter().chain(optional) {
            let mut block = hcl::Block::builder(name);
            if let Ok(hcl::Value::Object(fields)) = value {
                for (k, v) in fields {
                    block = block.add_attribute((k, v));
                }
            }
            body = body.add_block(block.build());
        }
        // Labeled blocks: `mount "/name" { … }` and `relay "/name" { … }`.
        let labeled = c
            .mount
            .iter()
            .map(|(name, m)| ("mount", name, hcl::to_value(m)))
            .chain(
                c.relay
                    .iter()
                    .map(|(name, r)| ("relay", name, hcl::to_value(r))),
            );
        for (kind, name, value) in labeled {
            let mut block = hcl::Block::builder(kind).add_label(name.as_str());
            if let Ok(hcl::Value::Object(fields)) = value {
                for (k, v) in fields {
                    match v {
                        hcl::Value::Null => {}
                        hcl::Value::Object(inner) => {
                            let mut nested = hcl::Block::builder(k);
                            for (ik, iv) in inner {
                                nested = nested.add_attribute((ik, iv));
                            }
                            block = block.add_block(nested.build());
                        }
                        v => block = block.add_attribute((k, v)),
                    }
                }
            }
            body = body.add_block(block.build());
        }
        hcl::format::to_string(&body.build()).unwrap_or_default()
    }
}
