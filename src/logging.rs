//! Log output through `tracing`: `RUST_LOG` wins, otherwise `info` (or `debug` with
//! `advanced.verbose_logging`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber writing to standard error.
pub fn init(verbose: bool) {
    let default = if verbose { "cycast=debug,info" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
