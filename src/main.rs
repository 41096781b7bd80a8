use std::process::ExitCode;

use clap::Parser;
use cycast::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = cli.run_check_config() {
        return ExitCode::from(code as u8);
    }
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cycast: {e}");
            return ExitCode::from(2);
        }
    };
    cycast::logging::init(config.advanced.verbose_logging);
    // Any panic ends the process, so no core is ever lost while the rest runs on.
    cycast::logging::install_panic_hook();
    let legacy = config.legacy_keys_in_use();
    if !legacy.is_empty() {
        tracing::warn!(
            "config keys accepted for compatibility but without effect here: {}",
            legacy.join(", ")
        );
    }
    // SIGHUP re-reads the same file with the same command-line overrides.
    let reload: cycast::state::Reload = match cli.config.is_some() {
        true => Some(Box::new(move || cli.load_config())),
        false => None,
    };
    match cycast::server::run(config, reload) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cycast: {e}");
            ExitCode::FAILURE
        }
    }
}
