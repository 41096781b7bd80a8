//! The ICY metadata wire format, shared by the admin API (titles arrive in a charset) and the
//! shard (titles leave as metadata blocks): a block is one length byte L and L×16 bytes of
//! `StreamTitle='…';`, NUL padded.
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

#[cfg(test)]
mod tests {
    use super::*;

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
