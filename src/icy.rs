//! The ICY metadata wire format, shared by the admin API (titles arrive in a charset), the
//! shard (titles leave as metadata blocks), relays and `cycast-load` (blocks arrive
//! interleaved with the audio, [`IcyDemux`]): after every `icy-metaint` audio bytes comes one
//! length byte L and L×16 bytes of `StreamTitle='…';`, NUL padded. L = 0 means "no change".
//!
//! A leaf: it imports nothing from the crate, so any layer may use it.

/// Longest title text that fits a block (255 × 16 bytes minus `StreamTitle='';`).
const MAX_TITLE_BYTES: usize = 255 * 16 - "StreamTitle='';".len();

/// How titles are encoded in blocks (and in title updates that name a charset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    /// UTF-8, the default: titles stay intact in modern players.
    #[default]
    Utf8,
    /// ISO-8859-1, for old players; characters outside it become `?`.
    Latin1,
}

impl Charset {
    /// The charset `name` names, in any case: `utf-8`/`utf8` or `latin1`/`latin-1`/`iso-8859-1`;
    /// `None` for any other name. The one list of accepted names, for the configuration's
    /// `icy_charset` keys and for title updates' `charset=`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Charset::Utf8),
            "latin1" | "latin-1" | "iso-8859-1" => Some(Charset::Latin1),
            _ => None,
        }
    }

    /// Text from bytes in this charset: ISO-8859-1 maps each byte to the character of the same
    /// number; UTF-8 replaces invalid sequences with U+FFFD.
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Charset::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Charset::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        }
    }
}

/// `StreamTitle='…';` as one metadata block: length byte, text, NUL padding. Too long a title
/// is cut on a character boundary.
pub fn metadata_block(title: &str, charset: Charset) -> Vec<u8> {
    let mut text: Vec<u8> = match charset {
        Charset::Utf8 => {
            let mut end = title.len().min(MAX_TITLE_BYTES);
            while !title.is_char_boundary(end) {
                end -= 1;
            }
            title.as_bytes()[..end].to_vec()
        }
        Charset::Latin1 => title
            .chars()
            .take(MAX_TITLE_BYTES)
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect(),
    };
    // A control character would end the string early in some players.
    text.retain(|&b| b >= 0x20 || b == b'\t');
    let body_len = "StreamTitle='';".len() + text.len();
    let blocks = body_len.div_ceil(16);
    let mut out = Vec::with_capacity(1 + blocks * 16);
    out.push(blocks as u8);
    out.extend_from_slice(b"StreamTitle='");
    out.extend_from_slice(&text);
    out.extend_from_slice(b"';");
    out.resize(1 + blocks * 16, 0);
    out
}

/// The `StreamTitle` value of a block's content (the L×16 bytes after the length byte), read
/// as UTF-8; `None` when the block has no title.
pub fn stream_title(block: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(block);
    let start = text.find("StreamTitle='")? + "StreamTitle='".len();
    let rest = &text[start..];
    let end = rest.find("';").unwrap_or(rest.trim_end_matches('\0').len());
    Some(rest[..end].to_string())
}

/// Why a metadata block is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcyError {
    /// A non-empty block holds only padding.
    Empty,
    /// A NUL before the end of the text: padding in the middle, or a misplaced block.
    NulInText,
    /// The text is not a run of `Key='value';` items.
    Syntax,
    /// No `StreamTitle` item.
    NoTitle,
}

/// Checks one block's content (the L×16 bytes after the length byte).
pub fn validate_block(content: &[u8]) -> Result<(), IcyError> {
    let end = content
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1);
    let text = &content[..end];
    if text.is_empty() {
        return Err(IcyError::Empty);
    }
    if text.contains(&0) {
        return Err(IcyError::NulInText);
    }
    let mut rest = text;
    let mut title = false;
    while !rest.is_empty() {
        let eq = rest
            .iter()
            .position(|&b| b == b'=')
            .ok_or(IcyError::Syntax)?;
        let key = &rest[..eq];
        if key.is_empty() || !key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            return Err(IcyError::Syntax);
        }
        if rest.get(eq + 1) != Some(&b'\'') {
            return Err(IcyError::Syntax);
        }
        let value_start = eq + 2;
        // Values may contain quotes ("Guns N' Roses"); an item ends at the first `';`.
        let close = rest[value_start..]
            .windows(2)
            .position(|w| w == b"';")
            .ok_or(IcyError::Syntax)?;
        title |= key == b"StreamTitle";
        rest = &rest[value_start + close + 2..];
    }
    if title {
        Ok(())
    } else {
        Err(IcyError::NoTitle)
    }
}

/// Where the demultiplexer is within the interleaved stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DemuxState {
    /// This many audio bytes remain before the next length byte.
    Audio(usize),
    /// The next byte is a length byte.
    Length,
    /// This many metadata bytes remain in the current block.
    Meta(usize),
}

/// Splits an ICY-interleaved body into audio and metadata blocks, however it was cut into
/// reads, and counts the blocks and the malformed ones.
#[derive(Debug, Clone)]
pub struct IcyDemux {
    /// Audio bytes between blocks (`icy-metaint`).
    metaint: usize,
    /// Current position in the interleaving.
    state: DemuxState,
    /// Content of the block being gathered; kept small (at most 4,080 bytes).
    block: Vec<u8>,
    /// Blocks seen, empty ones included.
    pub blocks: u64,
    /// Non-empty blocks seen.
    pub titles: u64,
    /// Malformed blocks ([`validate_block`]).
    pub errors: u64,
}

impl IcyDemux {
    /// A demultiplexer for a body whose first `metaint` bytes are audio.
    pub fn new(metaint: usize) -> IcyDemux {
        IcyDemux {
            metaint,
            state: DemuxState::Audio(metaint),
            block: Vec::new(),
            blocks: 0,
            titles: 0,
            errors: 0,
        }
    }

    /// Feeds body bytes: `audio` gets the audio runs in order, `block` the content of each
    /// complete non-empty metadata block (padding included).
    pub fn feed<'a>(
        &mut self,
        mut data: &'a [u8],
        mut audio: impl FnMut(&'a [u8]),
        mut block: impl FnMut(&[u8]),
    ) {
        while !data.is_empty() {
            match self.state {
                DemuxState::Audio(left) => {
                    let n = left.min(data.len());
                    audio(&data[..n]);
                    data = &data[n..];
                    self.state = if n == left {
                        DemuxState::Length
                    } else {
                        DemuxState::Audio(left - n)
                    };
                }
                DemuxState::Length => {
                    let len = data[0] as usize * 16;
                    data = &data[1..];
                    self.blocks += 1;
                    self.state = if len == 0 {
                        DemuxState::Audio(self.metaint)
                    } else {
                        self.block.clear();
                        DemuxState::Meta(len)
                    };
                }
                DemuxState::Meta(left) => {
                    let n = left.min(data.len());
                    self.block.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if n < left {
                        self.state = DemuxState::Meta(left - n);
                    } else {
                        self.titles += 1;
                        if validate_block(&self.block).is_err() {
                            self.errors += 1;
                        }
                        block(&self.block);
                        self.block.clear();
                        self.state = DemuxState::Audio(self.metaint);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of `text` as it goes on the wire: length byte, text, NUL padding.
    fn block(text: &str) -> Vec<u8> {
        let len = text.len().div_ceil(16);
        let mut out = vec![len as u8];
        out.extend_from_slice(text.as_bytes());
        out.resize(1 + len * 16, 0);
        out
    }

    #[test]
    fn well_formed_blocks_pass() {
        assert_eq!(validate_block(b"StreamTitle='A - B';\0\0\0\0"), Ok(()));
        assert_eq!(validate_block(b"StreamTitle='';"), Ok(()));
        assert_eq!(
            validate_block(b"StreamTitle='Guns N' Roses - X';StreamUrl='http://x/';\0"),
            Ok(())
        );
    }

    #[test]
    fn malformed_blocks_fail() {
        assert_eq!(validate_block(&[0; 16]), Err(IcyError::Empty));
        assert_eq!(
            validate_block(b"StreamTitle='A';\0junk"),
            Err(IcyError::NulInText)
        );
        assert_eq!(
            validate_block(b"StreamTitle='A'\0\0"),
            Err(IcyError::Syntax)
        );
        assert_eq!(validate_block(b"StreamTitle=A;"), Err(IcyError::Syntax));
        assert_eq!(validate_block(b"\xff\xfb\x90\x64"), Err(IcyError::Syntax));
        assert_eq!(validate_block(b"StreamUrl='x';"), Err(IcyError::NoTitle));
    }

    #[test]
    fn demux_splits_audio_and_blocks_across_any_read_size() {
        let metaint = 100;
        let mut body = Vec::new();
        let mut expected_audio = Vec::new();
        for i in 0..5u8 {
            let audio: Vec<u8> = (0..metaint).map(|j| (j as u8).wrapping_add(i)).collect();
            body.extend_from_slice(&audio);
            expected_audio.extend_from_slice(&audio);
            if i % 2 == 0 {
                body.extend_from_slice(&block(&format!("StreamTitle='Song {i}';")));
            } else {
                body.push(0);
            }
        }
        body.extend_from_slice(&[7; 30]);
        expected_audio.extend_from_slice(&[7; 30]);
        for piece in [1, 3, 16, 17, 101, 4096] {
            let mut demux = IcyDemux::new(metaint);
            let (mut audio, mut titles) = (Vec::new(), Vec::new());
            for chunk in body.chunks(piece) {
                demux.feed(
                    chunk,
                    |a| audio.extend_from_slice(a),
                    |b| titles.extend(stream_title(b)),
                );
            }
            assert_eq!(audio, expected_audio, "piece {piece}");
            assert_eq!((demux.blocks, demux.titles, demux.errors), (5, 3, 0));
            assert_eq!(titles, ["Song 0", "Song 2", "Song 4"], "piece {piece}");
        }
    }

    #[test]
    fn demux_takes_out_the_blocks_the_shard_makes_in_any_split() {
        let mut stream = Vec::new();
        let audio: Vec<u8> = (0..100u8).collect();
        let block = metadata_block("A - B", Charset::Utf8);
        for chunk in audio.chunks(10) {
            stream.extend_from_slice(chunk);
            stream.extend_from_slice(&block);
        }
        for step in [1, 3, 7, 64, 1000] {
            let mut demux = IcyDemux::new(10);
            let (mut got, mut titles) = (Vec::new(), Vec::new());
            for piece in stream.chunks(step) {
                demux.feed(
                    piece,
                    |a| got.extend_from_slice(a),
                    |b| titles.extend(stream_title(b)),
                );
            }
            assert_eq!(got, audio, "step {step}");
            assert_eq!(titles.len(), 10);
            assert!(titles.iter().all(|t| t == "A - B"));
        }
    }

    #[test]
    fn demux_counts_a_shifted_stream_as_errors() {
        // One stray audio byte shifts every later length byte into the audio.
        let metaint = 32;
        let mut body = vec![1u8; metaint + 1];
        for _ in 0..4 {
            body.extend_from_slice(&block("StreamTitle='x';"));
            body.extend_from_slice(&[b'a'; 32]);
        }
        let mut demux = IcyDemux::new(metaint);
        demux.feed(&body, |_| {}, |_| {});
        assert!(demux.errors >= 1);
    }

    #[test]
    fn titles_come_out_of_blocks() {
        assert_eq!(
            stream_title(b"StreamTitle='Guns N' Roses';StreamUrl='x';\0\0").as_deref(),
            Some("Guns N' Roses")
        );
        assert_eq!(
            stream_title(b"StreamTitle='cut\0\0").as_deref(),
            Some("cut")
        );
        assert_eq!(stream_title(b"StreamUrl='x';"), None);
    }

    #[test]
    fn blocks_are_padded_and_cut_on_character_boundaries() {
        let block = metadata_block("Artist - Title", Charset::Utf8);
        assert_eq!(block[0] as usize * 16 + 1, block.len());
        assert_eq!(&block[1..30], b"StreamTitle='Artist - Title';");
        assert!(block[30..].iter().all(|&b| b == 0));

        let long = "日本語".repeat(2000);
        let block = metadata_block(&long, Charset::Utf8);
        assert_eq!(block[0], 255);
        let text = &block[1..];
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        let s = std::str::from_utf8(&text[..end]).expect("valid UTF-8 after truncation");
        assert!(s.starts_with("StreamTitle='日本語") && s.ends_with("';"));

        let latin = metadata_block("Café ☕", Charset::Latin1);
        assert_eq!(&latin[1..22], b"StreamTitle='Caf\xe9 ?';");
    }

    #[test]
    fn charset_names_are_one_list_in_any_case() {
        for name in ["utf-8", "UTF8", "Utf-8"] {
            assert_eq!(Charset::from_name(name), Some(Charset::Utf8), "{name}");
        }
        for name in ["latin1", "Latin-1", "ISO-8859-1"] {
            assert_eq!(Charset::from_name(name), Some(Charset::Latin1), "{name}");
        }
        for name in ["", "utf-16", "latin2", "ascii"] {
            assert_eq!(Charset::from_name(name), None, "{name}");
        }
    }
}
