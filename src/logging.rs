//! Log output through `tracing`: `RUST_LOG` wins, otherwise `info` (or `debug` with
//! `advanced.verbose_logging`). Also the one escaping function for peer text in any log line,
//! and the panic policy.

use std::fmt;
use std::io::Write as _;

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

/// Text from a peer, made safe for a log line: control characters (newline, CR, tab, ESC,
/// DEL, C1) and Unicode line separators become `\xNN` / `\u{NNNN}`, and `\` and `"` are
/// backslash-escaped (as Apache does), so no peer can forge a line, a quoted field or a
/// terminal sequence. Every peer field goes through this before any log.
pub fn escape(text: &str) -> Escaped<'_> {
    Escaped { text, space: false }
}

/// [`escape`] for an unquoted field of a space-separated line (the access log's user): spaces
/// are escaped too.
pub fn escape_token(text: &str) -> Escaped<'_> {
    Escaped { text, space: true }
}

/// Peer text that displays escaped; see [`escape`].
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a> {
    /// The raw text.
    text: &'a str,
    /// Whether spaces are escaped as well.
    space: bool,
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.text;
        // Runs of plain characters are written whole.
        while let Some(at) = rest.find(|c| needs_escape(c, self.space)) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:04x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

fn needs_escape(c: char, space: bool) -> bool {
    c.is_control() || matches!(c, '\\' | '"' | '\u{2028}' | '\u{2029}') || (space && c == ' ')
}

/// Makes any panic end the process: a panicking executor thread would otherwise leave the
/// server half alive (a shard's socket taking connections nobody accepts, the ingest core's
/// mounts silent) with nothing for systemd to restart.
///
/// The hook logs one escaped line to standard error and calls `abort`, rather than
/// `exit(101)`: it is what `panic = "abort"` (the release profile) does anyway, so debug and
/// release builds behave alike; `exit` would run `atexit` handlers while the other executors
/// still run; and systemd counts SIGABRT as a failure (`Restart=on-failure`), with a core dump
/// for the post-mortem. The default hook is not called: a panic message may quote peer bytes.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let thread = std::thread::current();
        let line = panic_line(thread.name().unwrap_or("unnamed"), info.location(), message);
        // Straight to stderr, not through tracing: the panic may have happened inside the
        // subscriber, and a hook that blocks would leave the process half alive again.
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(line.as_bytes());
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            let _ = writeln!(stderr, "{backtrace}");
        }
        let _ = stderr.flush();
        std::process::abort();
    }));
}

/// The log line a panic is reported with, newline included.
pub fn panic_line(
    thread: &str,
    location: Option<&std::panic::Location<'_>>,
    message: &str,
) -> String {
    let place = location.map_or_else(
        || "an unknown place".to_string(),
        |l| format!("{}:{}:{}", escape(l.file()), l.line(), l.column()),
    );
    format!(
        "{} ERROR cycast: thread \"{}\" panicked at {place}: {}; aborting so the supervisor restarts the server\n",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        escape(thread),
        escape(message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_cannot_forge_lines_fields_or_terminal_sequences() {
        assert_eq!(escape("plain text é").to_string(), "plain text é");
        assert_eq!(
            escape("a\nb\r\tc\x1b[31m\x7f\u{85}\u{2028}").to_string(),
            "a\\x0ab\\x0d\\x09c\\x1b[31m\\x7f\\x85\\u{2028}"
        );
        assert_eq!(escape(r#"q"\"#).to_string(), r#"q\"\\"#);
        assert_eq!(escape_token("a b").to_string(), "a\\x20b");
    }

    #[test]
    fn a_panic_line_is_one_escaped_line_naming_thread_and_place() {
        let here = std::panic::Location::caller();
        let line = panic_line("cycast-shard1", Some(here), "bad\nbyte `%a\u{1b}`");
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line}"
        );
        assert!(line.contains(" ERROR "), "{line}");
        assert!(line.contains("thread \"cycast-shard1\" panicked at src/logging.rs:"));
        assert!(line.contains("bad\\x0abyte `%a\\x1b`"), "{line}");
        assert!(line.contains("aborting"), "{line}");
    }
}
