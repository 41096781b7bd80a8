//! Command line: config file selection and per-key overrides.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{Config, ConfigError, DEFAULT_CONFIG_HCL};

/// Exit status of `--check-config` when the file is rejected.
pub const CHECK_CONFIG_FAILED: i32 = 2;

/// Command line arguments. Flags override the matching config file keys.
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "cycast",
    version,
    about = "Icecast-compatible internet radio server",
    long_about = "Icecast-compatible internet radio server. Sources connect to the source port \
                  (SOURCE/PUT with Basic auth); listeners connect to the listen port. \
                  A playlist plays while no source is connected."
)]
pub struct Cli {
    /// Config file (HCL). Without it the built-in defaults are used.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Load and validate FILE, print the effective config with secrets redacted, then exit
    /// (status 0 if valid, 2 if not).
    #[arg(long = "check-config", value_name = "FILE")]
    pub check_config: Option<PathBuf>,

    /// Address to bind (overrides server.host).
    #[arg(long, value_name = "IP")]
    pub host: Option<String>,

    /// Port for sources (overrides server.source_port).
    #[arg(long, value_name = "PORT")]
    pub source_port: Option<u16>,

    /// Port for listeners (overrides server.listen_port).
    #[arg(long, value_name = "PORT")]
    pub listen_port: Option<u16>,

    /// Listener executors, 0 = one per core (overrides server.shards).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,

    /// CPU the ingest executor is pinned to (overrides server.ingest_core).
    #[arg(long, value_name = "CPU")]
    pub ingest_core: Option<usize>,

    /// Mount path, e.g. /stream (overrides server.mount_point).
    #[arg(long = "mount", value_name = "PATH")]
    pub mount: Option<String>,

    /// Fallback playlist directory (overrides playlist.directory).
    #[arg(long, value_name = "DIR")]
    pub playlist_dir: Option<PathBuf>,

    /// Source password (overrides server.source_password). Prefer the environment
    /// variable: command lines are visible to other users.
    #[arg(
        long,
        env = "CYCAST_SOURCE_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub source_password: Option<String>,

    /// Admin API password; empty disables the admin API (overrides server.admin_password).
    #[arg(
        long,
        env = "CYCAST_ADMIN_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub admin_password: Option<String>,

    /// Debug logging (sets advanced.verbose_logging).
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

impl Cli {
    /// Loads the file named by --check-config or --config (or the embedded default),
    /// applies the overrides, validates.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut cfg = match self.check_config.as_ref().or(self.config.as_ref()) {
            Some(path) => Config::load(path)?,
            None => Config::from_hcl_str(DEFAULT_CONFIG_HCL)?,
        };
        self.apply_overrides(&mut cfg);
        // Overrides can break rules the file satisfied, e.g. equal ports.
        cfg.validate()?;
        Ok(cfg)
    }

    /// Copies every flag that was given into `cfg`.
    pub fn apply_overrides(&self, cfg: &mut Config) {
        let s = &mut cfg.server;
        if let Some(v) = &self.host {
            s.host = v.clone();
        }
        if let Some(v) = self.source_port {
            s.source_port = v;
        }
        if let Some(v) = self.listen_port {
            s.listen_port = v;
        }
        if let Some(v) = self.shards {
            s.shards = v;
        }
        if let Some(v) = self.ingest_core {
            s.ingest_core = v;
        }
        if let Some(v) = &self.mount {
            s.mount_point = v.clone();
        }
        if let Some(v) = &self.source_password {
            s.source_password = v.clone();
        }
        if let Some(v) = &self.admin_password {
            s.admin_password = v.clone();
        }
        if let Some(v) = &self.playlist_dir {
            cfg.playlist.directory = v.to_string_lossy().into_owned();
        }
        if self.verbose {
            cfg.advanced.verbose_logging = true;
        }
        // What the operator gave here is as deliberate as what the file says.
        let given = [
            ("server.host", self.host.is_some()),
            ("server.source_port", self.source_port.is_some()),
            ("server.listen_port", self.listen_port.is_some()),
            ("server.shards", self.shards.is_some()),
            ("server.ingest_core", self.ingest_core.is_some()),
            ("server.mount_point", self.mount.is_some()),
            ("server.source_password", self.source_password.is_some()),
            ("server.admin_password", self.admin_password.is_some()),
            ("playlist.directory", self.playlist_dir.is_some()),
            ("advanced.verbose_logging", self.verbose),
        ];
        for (key, _) in given.iter().filter(|(_, set)| *set) {
            cfg.explicit.insert((*key).to_string());
        }
    }

    /// Handles `--check-config`: returns `None` when it was not given, otherwise prints the
    /// redacted effective config (stdout) or the one-line error (stderr) and returns the exit
    /// status for the caller to exit with.
    pub fn run_check_config(&self) -> Option<i32> {
        self.check_config.as_ref()?;
        Some(match self.load_config() {
            Ok(cfg) => {
                print!("{}", cfg.to_redacted_hcl());
                for key in cfg.legacy_keys_in_use() {
                    eprintln!("warning: {key} is accepted for compatibility and ignored");
                }
                0
            }
            Err(e) => {
                eprintln!("{e}");
                CHECK_CONFIG_FAILED
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("cycast").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn parses_all_flags() {
        let cli = parse(&[
            "-c",
            "/etc/cycast.hcl",
            "--host",
            "127.0.0.1",
            "--source-port",
            "9000",
            "--listen-port",
            "9001",
            "--shards",
            "3",
            "--ingest-core",
            "1",
            "--mount",
            "/live",
            "--playlist-dir",
            "/srv/music",
            "--source-password",
            "pw",
            "--admin-password",
            "apw",
            "-v",
        ]);
        assert_eq!(
            cli.config.as_deref(),
            Some(std::path::Path::new("/etc/cycast.hcl"))
        );
        assert_eq!(cli.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(cli.source_port, Some(9000));
        assert_eq!(cli.listen_port, Some(9001));
        assert_eq!(cli.shards, Some(3));
        assert_eq!(cli.ingest_core, Some(1));
        assert_eq!(cli.mount.as_deref(), Some("/live"));
        assert_eq!(
            cli.playlist_dir.as_deref(),
            Some(std::path::Path::new("/srv/music"))
        );
        assert_eq!(cli.source_password.as_deref(), Some("pw"));
        assert_eq!(cli.admin_password.as_deref(), Some("apw"));
        assert!(cli.verbose);

        let cli = parse(&["--config", "a.hcl", "--check-config", "b.hcl"]);
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("a.hcl")));
        assert_eq!(
            cli.check_config.as_deref(),
            Some(std::path::Path::new("b.hcl"))
        );
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(Cli::try_parse_from(["cycast", "--source-port", "70000"]).is_err());
        assert!(Cli::try_parse_from(["cycast", "--no-such-flag"]).is_err());
    }

    #[test]
    fn overrides_win_over_file_values() {
        let mut cfg = Config::from_hcl_str(
            "server {\n  host = \"0.0.0.0\"\n  source_port = 7000\n  listen_port = 7001\n  \
             mount_point = \"/file\"\n  source_password = \"from-file\"\n}\n\
             playlist {\n  directory = \"/file/music\"\n}\n",
        )
        .unwrap();
        let cli = Cli {
            host: Some("127.0.0.1".into()),
            source_port: Some(9000),
            mount: Some("/live".into()),
            playlist_dir: Some("/srv/music".into()),
            source_password: Some("from-cli".into()),
            verbose: true,
            ..Cli::default()
        };
        cli.apply_overrides(&mut cfg);
        assert_eq!(cfg.server.host, "127.0.0.1");
        assert_eq!(cfg.server.source_port, 9000);
        assert_eq!(cfg.server.listen_port, 7001, "unset flags keep file values");
        assert_eq!(cfg.server.mount_point, "/live");
        assert_eq!(cfg.server.source_password, "from-cli");
        assert_eq!(cfg.playlist.directory, "/srv/music");
        assert!(cfg.advanced.verbose_logging);
    }

    #[test]
    fn load_config_reads_file_and_revalidates() {
        let path = std::env::temp_dir().join(format!("cycast-cli-test-{}.hcl", std::process::id()));
        std::fs::write(
            &path,
            "server {\n  source_port = 7000\n  listen_port = 7001\n}\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path.clone()),
            shards: Some(2),
            ..Cli::default()
        };
        let cfg = cli.load_config().unwrap();
        assert_eq!(cfg.server.source_port, 7000);
        assert_eq!(cfg.server.shards, 2);

        // An override that collides with a file value is caught.
        let cli = Cli {
            config: Some(path.clone()),
            listen_port: Some(7000),
            ..Cli::default()
        };
        let e = cli.load_config().unwrap_err().to_string();
        assert!(e.contains("server.listen_port"), "{e}");
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn overrides_count_as_explicit() {
        let mut cfg = Config::from_hcl_str("metadata {\n  station_name = \"x\"\n}\n").unwrap();
        assert!(cfg.explicit.contains("metadata.station_name"));
        assert!(!cfg.explicit.contains("server"));
        let cli = Cli {
            admin_password: Some(String::new()),
            ..Cli::default()
        };
        cli.apply_overrides(&mut cfg);
        assert!(cfg.explicit.contains("server.admin_password"));
        assert!(!cfg.explicit.contains("server.source_password"));
    }

    #[test]
    fn no_file_uses_embedded_default() {
        let cfg = Cli::default().load_config().unwrap();
        assert_eq!(cfg.server.mount_point, "/stream");
    }
}
