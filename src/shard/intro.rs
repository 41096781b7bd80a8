//! Intros (`intro = "path.mp3"` in a mount block): every new listener of the mount first
//! gets the intro, then joins the live edge on a frame boundary.
//!
//! Each intro is read once, at start and at every reload, cut into whole MP3 frames (tags
//! and garbage dropped by the same framer sources go through) and kept in memory; every
//! listener gets the one copy through the codec-header slot of the fan-out, so it costs no
//! copy and no extra send per listener. An intro that does not match its mount's stream
//! (another sample rate, layer or channel layout) would break players mid-stream: it is
//! left out, with one warning.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::ingest::lockon::SyncFramer;
use crate::ingest::mp3::{parse_header, FrameHeader, Mp3Sync};
use crate::logging::escape;
use crate::mount::StreamHeaders;
use crate::ring::Ring;

/// One loaded intro.
pub struct Intro {
    /// The intro's frames, handed to listeners as bytes owed before the stream.
    pub frames: Arc<StreamHeaders>,
    /// Its first frame's header, to compare with the mount's stream.
    header: FrameHeader,
    /// Set once a mismatch with the mount was logged, so it is logged once per load.
    warned: AtomicBool,
}

/// The intros of the configuration in force, by mount.
static INTROS: LazyLock<ArcSwap<HashMap<String, Arc<Intro>>>> =
    LazyLock::new(|| ArcSwap::from_pointee(HashMap::new()));

/// Loads the intros `config` names (at start and on reload), warning once about each one that
/// cannot be used.
pub fn load(config: &Config) {
    let mut intros = HashMap::new();
    for (mount, block) in &config.mount {
        let Some(path) = &block.intro else { continue };
        match read(path) {
            Ok(intro) => {
                intros.insert(mount.clone(), Arc::new(intro));
            }
            Err(e) => tracing::warn!(
                mount = %escape(mount),
                path = %escape(path),
                "intro not used: {e}"
            ),
        }
    }
    INTROS.store(Arc::new(intros));
}

/// Reads an intro file into whole frames of one MP3 stream.
fn read(path: &str) -> Result<Intro, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut framer = SyncFramer::<Mp3Sync>::new();
    let mut frames = Vec::with_capacity(bytes.len());
    let mut first: Option<FrameHeader> = None;
    let mut take = |framer: &mut SyncFramer<Mp3Sync>| -> Result<(), String> {
        while let Some((header, frame)) = framer.next_frame() {
            match &first {
                Some(f) if !f.same_stream(&header) => {
                    return Err("its frames change sample rate or channels".into())
                }
                Some(_) => {}
                None => first = Some(header),
            }
            frames.extend_from_slice(frame);
        }
        Ok(())
    };
    for piece in bytes.chunks(4096) {
        framer.push(piece);
        take(&mut framer)?;
    }
    framer.finish();
    take(&mut framer)?;
    let header = first.ok_or("it holds no MP3 audio frames")?;
    Ok(Intro {
        frames: Arc::new(StreamHeaders {
            bytes: frames,
            starts_at: 0,
            ends_at: None,
        }),
        header,
        warned: AtomicBool::new(false),
    })
}

/// The intro a listener of `mount` joining at `cursor` (a chunk start in `ring`) gets: `None`
/// when the mount has none, or when it does not match the stream there (warned once).
pub fn for_listener(mount: &str, ring: &Ring, cursor: u64) -> Option<Arc<StreamHeaders>> {
    let intros = INTROS.load();
    let intro = intros.get(mount)?;
    let mut head = [0u8; 4];
    // Nothing published yet: the mount's stream is not known, the intro goes first anyway.
    if ring.committed() >= cursor + 4 && ring.read(cursor, &mut head).is_ok() {
        let matches = parse_header(&head).is_some_and(|h| h.same_stream(&intro.header));
        if !matches {
            if !intro.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    mount = %escape(mount),
                    "intro not used: its sample rate, codec or channels differ from the mount's stream"
                );
            }
            return None;
        }
    }
    Some(intro.frames.clone())
}
