//! Which framer a source's Content-Type gets, and one interface over them: MP3 frames, AAC
//! ADTS frames and Ogg pages all become whole, timed units for the feed, so joins, skips and
//! switches never cut one. Other types pass through unaligned.

use super::adts::AdtsFramer;
use super::feed::MountFeed;
use super::mp3::Mp3Framer;
use super::ogg::OggFramer;
use crate::hls::segment::{Codec, FrameTiming};

/// A stream format the server can align to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// MPEG audio (`audio/mpeg`).
    Mp3,
    /// AAC or HE-AAC in ADTS (`audio/aac`, `audio/aacp`).
    Aac,
    /// Ogg Vorbis or Opus (`audio/ogg`, `application/ogg`).
    Ogg,
    /// Anything else: passed through in chunks of bytes.
    Unframed,
}

impl Format {
    /// The format a Content-Type announces (parameters such as `; codecs=` ignored).
    pub fn from_content_type(content_type: &str) -> Format {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "audio/mpeg" | "audio/mp3" | "audio/mpeg3" => Format::Mp3,
            "audio/aac" | "audio/aacp" | "audio/x-aac" => Format::Aac,
            "audio/ogg" | "application/ogg" | "audio/opus" | "audio/vorbis" | "audio/x-ogg" => {
                Format::Ogg
            }
            _ => Format::Unframed,
        }
    }
}

/// Decides, frame by frame, whether a live MP3 frame goes on air: the dead-air fallback holds
/// back a silent source's frames (see [`super::silence`]). Other formats are not gated.
pub trait FrameGate {
    /// Whether `frame`, lasting `micros`, is published; may first change what is on air,
    /// through `feed`.
    fn admit(&mut self, frame: &[u8], micros: u64, feed: &mut MountFeed) -> bool;
}

/// The gate of a source without dead-air detection: every frame goes on air.
pub struct Ungated;

impl FrameGate for Ungated {
    #[inline]
    fn admit(&mut self, _frame: &[u8], _micros: u64, _feed: &mut MountFeed) -> bool {
        true
    }
}

/// The framer of one source connection.
pub enum Framer {
    /// MP3 frames.
    Mp3(Mp3Framer),
    /// ADTS frames.
    Aac(AdtsFramer),
    /// Ogg pages; its header pages are kept for listeners that join later.
    Ogg(OggFramer),
    /// No framing.
    Unframed,
}

impl Framer {
    /// A framer for `format`.
    pub fn new(format: Format) -> Framer {
        match format {
            Format::Mp3 => Framer::Mp3(Mp3Framer::new()),
            Format::Aac => Framer::Aac(AdtsFramer::new()),
            Format::Ogg => Framer::Ogg(OggFramer::new()),
            Format::Unframed => Framer::Unframed,
        }
    }

    /// Takes `bytes` from the source (`end`: the source finished cleanly, so the last unit is
    /// whole) and hands every complete unit to `feed`.
    pub fn feed(&mut self, bytes: &[u8], end: bool, feed: &mut MountFeed) {
        self.feed_gated(bytes, end, feed, &mut Ungated);
    }

    /// As [`feed`](Self::feed), with each MP3 frame first passed to `gate`, which may hold it
    /// back.
    pub fn feed_gated(
        &mut self,
        bytes: &[u8],
        end: bool,
        feed: &mut MountFeed,
        gate: &mut impl FrameGate,
    ) {
        match self {
            Framer::Mp3(framer) => {
                framer.push(bytes);
                if end {
                    framer.finish();
                }
                while let Some((header, frame)) = framer.next_frame() {
                    let micros = header.duration_micros();
                    if !gate.admit(frame, micros, feed) {
                        continue;
                    }
                    let timing = FrameTiming {
                        codec: Codec::Mp3,
                        samples: header.samples,
                        sample_rate: header.sample_rate,
                        channels: header.channels,
                    };
                    feed.push_timed_frame(frame, timing, micros);
                }
            }
            Framer::Aac(framer) => {
                framer.push(bytes);
                if end {
                    framer.finish();
                }
                while let Some((header, frame)) = framer.next_frame() {
                    let timing = FrameTiming {
                        codec: Codec::Aac,
                        samples: header.samples,
                        sample_rate: header.sample_rate,
                        channels: header.channels,
                    };
                    feed.push_timed_frame(frame, timing, header.duration_micros());
                }
            }
            Framer::Ogg(framer) => {
                framer.push(bytes);
                if end {
                    framer.finish();
                }
                while let Some((page, bytes)) = framer.next_frame() {
                    if page.starts_link {
                        // A new link starts a chunk, so a listener joining there gets its
                        // headers from the ring and one joining before it gets the previous
                        // link's.
                        feed.flush();
                        feed.mount.begin_stream_link(feed.published_end());
                    }
                    feed.push_frame(bytes, page.duration_micros);
                    if page.is_header_page {
                        // Each header page is a chunk of its own, so the end of the headers is
                        // a chunk start.
                        feed.flush();
                    }
                    if framer.headers_changed() {
                        feed.flush();
                        feed.mount.set_stream_headers(
                            framer.stream_headers().to_vec(),
                            feed.published_end(),
                        );
                        // The link's own tags are its title; an operator's update overrides
                        // them until the next link.
                        if let Some(title) = framer.title() {
                            feed.mount.set_title(title);
                        }
                    }
                }
            }
            Framer::Unframed => feed.push_unframed(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_pick_their_framer() {
        assert_eq!(Format::from_content_type("audio/mpeg"), Format::Mp3);
        assert_eq!(Format::from_content_type("Audio/AACP"), Format::Aac);
        assert_eq!(Format::from_content_type("application/ogg"), Format::Ogg);
        assert_eq!(
            Format::from_content_type("audio/ogg; codecs=opus"),
            Format::Ogg
        );
        assert_eq!(Format::from_content_type("audio/flac"), Format::Unframed);
    }
}
