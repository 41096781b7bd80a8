//! Recording a mount (`dump_file`): every chunk the mount publishes, live or playlist, is
//! also written to a file named by a strftime pattern, a new file every `dump_rotate`
//! minutes. Stations keep these airchecks for legal logging.
//!
//! The ingest core never waits for the disk: chunks go to a writer thread through a bounded
//! queue. A full queue, a full disk or an unwritable path is logged once (until writing works
//! again) and counted in `cycast_dump_errors_total`; the stream never notices.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use crate::logging::escape;
use crate::observability::metrics;

/// Chunks queued for the writer; at the default 400 ms chunks about 25 s of audio, so a slow
/// disk is absorbed and a stuck one costs bounded memory.
const QUEUE_CHUNKS: usize = 64;

/// The ingest side of one mount's recording.
pub struct Recorder {
    /// Chunks to the writer thread; dropping it ends the thread after the queue is written.
    chunks: SyncSender<Vec<u8>>,
    /// The mount, for logs and the error counter.
    mount: String,
    /// Whether the last chunk was dropped on a full queue, so that is logged once.
    dropping: bool,
}

impl Recorder {
    /// Starts recording `mount` to files named by `pattern` (strftime, local time), a new file
    /// every `rotate` (none when `None`).
    pub fn start(mount: &str, pattern: &str, rotate: Option<Duration>) -> std::io::Result<Self> {
        let (chunks, queue) = sync_channel(QUEUE_CHUNKS);
        let writer = Writer {
            mount: mount.to_string(),
            pattern: pattern.to_string(),
            rotate,
            file: None,
            failing: false,
        };
        std::thread::Builder::new()
            .name("cycast-dump".into())
            .spawn(move || writer.run(queue))?;
        Ok(Self {
            chunks,
            mount: mount.to_string(),
            dropping: false,
        })
    }

    /// Hands one published chunk to the writer, never waiting.
    pub fn record(&mut self, chunk: &[u8]) {
        match self.chunks.try_send(chunk.to_vec()) {
            Ok(()) => self.dropping = false,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                if !self.dropping {
                    tracing::warn!(
                        mount = %escape(&self.mount),
                        "recording cannot keep up (disk too slow?); audio is missing from the dump"
                    );
                }
                self.dropping = true;
                metrics::dump_error(&self.mount);
            }
        }
    }
}

/// The writer thread's state.
struct Writer {
    /// The mount, for logs and the error counter.
    mount: String,
    /// strftime pattern of file names.
    pattern: String,
    /// How long one file covers.
    rotate: Option<Duration>,
    /// The open file and when it was opened.
    file: Option<(File, Instant)>,
    /// Whether the last write failed, so failures are logged once until one succeeds.
    failing: bool,
}

impl Writer {
    fn run(mut self, queue: Receiver<Vec<u8>>) {
        for chunk in queue {
            if let Err(e) = self.write(&chunk) {
                // A failed file is let go, so the next chunk tries a fresh one.
                self.file = None;
                if !self.failing {
                    tracing::error!(
                        mount = %escape(&self.mount),
                        "cannot write the recording: {e}; the stream goes on without it"
                    );
                }
                self.failing = true;
                metrics::dump_error(&self.mount);
            } else {
                self.failing = false;
            }
        }
    }

    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let due = match (&self.file, self.rotate) {
            (None, _) => true,
            (Some((_, opened)), Some(rotate)) => opened.elapsed() >= rotate,
            (Some(_), None) => false,
        };
        if due {
            // Chunks start on frame boundaries, so every file is whole frames.
            let path = chrono::Local::now().format(&self.pattern).to_string();
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            tracing::info!(mount = %escape(&self.mount), path = %escape(&path), "recording to a new file");
            self.file = Some((file, Instant::now()));
        }
        match &mut self.file {
            Some((file, _)) => file.write_all(chunk),
            None => Ok(()),
        }
    }
}
