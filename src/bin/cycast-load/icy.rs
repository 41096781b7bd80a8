//! ICY metadata: splitting the interleaved blocks out of the audio and checking each one.
//!
//! After every `icy-metaint` audio bytes comes one length byte L, then L * 16 bytes of text such
//! as `StreamTitle='Artist - Title';`, padded with NULs. L = 0 means "no change".

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

/// Checks one block's content (the L * 16 bytes after the length byte).
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
enum State {
    /// This many audio bytes remain before the next length byte.
    Audio(usize),
    /// The next byte is a length byte.
    Length,
    /// This many metadata bytes remain in the current block.
    Meta(usize),
}

/// Splits an ICY-interleaved body into audio and metadata blocks, validating every block.
#[derive(Debug, Clone)]
pub struct IcyDemux {
    /// Audio bytes between blocks (`icy-metaint`).
    metaint: usize,
    /// Current position in the interleaving.
    state: State,
    /// Content of the block being gathered; kept small (at most 4,080 bytes).
    block: Vec<u8>,
    /// Blocks seen, empty ones included.
    pub blocks: u64,
    /// Non-empty blocks seen.
    pub titles: u64,
    /// Malformed blocks.
    pub errors: u64,
}

impl IcyDemux {
    /// A demultiplexer for a body whose first `metaint` bytes are audio.
    pub fn new(metaint: usize) -> IcyDemux {
        IcyDemux {
            metaint,
            state: State::Audio(metaint),
            block: Vec::new(),
            blocks: 0,
            titles: 0,
            errors: 0,
        }
    }

    /// Feeds body bytes; `audio` gets the audio runs in order.
    pub fn feed<'a>(&mut self, mut data: &'a [u8], mut audio: impl FnMut(&'a [u8])) {
        while !data.is_empty() {
            match self.state {
                State::Audio(left) => {
                    let n = left.min(data.len());
                    audio(&data[..n]);
                    data = &data[n..];
                    self.state = if n == left {
                        State::Length
                    } else {
                        State::Audio(left - n)
                    };
                }
                State::Length => {
                    let len = data[0] as usize * 16;
                    data = &data[1..];
                    self.blocks += 1;
                    self.state = if len == 0 {
                        State::Audio(self.metaint)
                    } else {
                        self.block.clear();
                        State::Meta(len)
                    };
                }
                State::Meta(left) => {
                    let n = left.min(data.len());
                    self.block.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if n < left {
                        self.state = State::Meta(left - n);
                    } else {
                        self.titles += 1;
                        if validate_block(&self.block).is_err() {
                            self.errors += 1;
                        }
                        self.block.clear();
                        self.state = State::Audio(self.metaint);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let mut audio = Vec::new();
            for chunk in body.chunks(piece) {
                demux.feed(chunk, |a| audio.extend_from_slice(a));
            }
            assert_eq!(audio, expected_audio, "piece {piece}");
            assert_eq!((demux.blocks, demux.titles, demux.errors), (5, 3, 0));
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
        demux.feed(&body, |_| {});
        assert!(demux.errors >= 1);
    }
}
