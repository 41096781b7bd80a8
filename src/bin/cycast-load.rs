//! `cycast-load`: load generator and real-time source for cycast or any Icecast-compatible
//! server. The work happens in [`cycast::load`].

use clap::{Parser, Subcommand};
use cycast::load::{self, ListenOptions, SourceOptions};

/// Drive thousands of listeners against a stream, or push an MP3 file as a live source.
#[derive(Parser)]
#[command(name = "cycast-load", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// `source` pushes a file; without a subcommand, listeners are run.
    #[command(subcommand)]
    command: Option<Command>,
    /// Listener options.
    #[command(flatten)]
    listen: ListenOptions,
}

#[derive(Subcommand)]
enum Command {
    /// Push an MP3 file to a mount at real time (PUT or SOURCE).
    Source(SourceOptions),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Source(opts)) => load::source::main_source(opts),
        None => load::main_listen(cli.listen),
    };
    std::process::exit(code);
}
