//! ID3 tag decoding: the "Artist - Title" a playlist announces for a file.
//!
//! Only the playlist reads ID3 tags for their content; live ingest measures and drops them
//! ([`super::mp3`]). `join_title` is the one "Artist - Title" format, shared with the Ogg
//! comment reader.

use std::borrow::Cow;

/// A 28-bit ID3v2 "syncsafe" integer (7 bits per byte); `None` if a high bit is set.
#[inline]
pub(super) fn syncsafe(b: &[u8]) -> Option<u32> {
    if b[..4].iter().any(|&x| x & 0x80 != 0) {
        return None;
    }
    Some((b[0] as u32) << 21 | (b[1] as u32) << 14 | (b[2] as u32) << 7 | b[3] as u32)
}

/// The big-endian `u32` in the first four bytes.
#[inline]
pub(super) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Title from a file's tags: "Artist - Title" from ID3v2 (TPE1/TIT2; v2.2,
/// v2.3 and v2.4; text encodings Latin-1, UTF-16 with BOM, UTF-16BE, UTF-8),
/// else from ID3v1, else `None`. With only one of artist/title present, that
/// one alone is returned.
pub fn tag_title(file_bytes: &[u8]) -> Option<String> {
    let (artist, title) = id3v2_fields(file_bytes).unwrap_or_default();
    if let Some(t) = join_title(artist, title) {
        return Some(t);
    }
    let (artist, title) = id3v1_fields(file_bytes)?;
    join_title(artist, title)
}

/// "Artist - Title", or whichever of the two is there.
pub(crate) fn join_title(artist: Option<String>, title: Option<String>) -> Option<String> {
    match (artist, title) {
        (Some(a), Some(t)) => Some(format!("{a} - {t}")),
        (a, t) => t.or(a),
    }
}

/// Reverses ID3 unsynchronisation (0xFF 0x00 -> 0xFF).
fn unsynchronise(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut prev_ff = false;
    for &b in data {
        if !(prev_ff && b == 0) {
            out.push(b);
        }
        prev_ff = b == 0xFF;
    }
    out
}

fn looks_like_frame_start(body: &[u8], pos: usize) -> bool {
    match body.get(pos..pos + 4) {
        None => pos >= body.len() || body[pos] == 0,
        Some(id) => {
            id[0] == 0
                || id
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        }
    }
}

type Fields = (Option<String>, Option<String>);

fn id3v2_fields(b: &[u8]) -> Option<Fields> {
    if b.len() < 10 || &b[..3] != b"ID3" {
        return None;
    }
    let ver = b[3];
    if !(2..=4).contains(&ver) {
        return None;
    }
    let flags = b[5];
    let size = syncsafe(&b[6..10])? as usize;
    let raw = &b[10..(10 + size).min(b.len())];
    // Before v2.4 unsynchronisation applies to the whole tag body.
    let body: Cow<[u8]> = if ver < 4 && flags & 0x80 != 0 {
        Cow::Owned(unsynchronise(raw))
    } else {
        Cow::Borrowed(raw)
    };
    let mut pos = 0usize;
    if ver >= 3 && flags & 0x40 != 0 {
        let ext = body.get(..4)?;
        pos = if ver == 3 {
            be32(ext) as usize + 4
        } else {
            syncsafe(ext)? as usize
        };
    }
    let (id_len, hdr_len) = if ver == 2 { (3, 6) } else { (4, 10) };
    let (mut artist, mut title) = (None, None);
    while pos + hdr_len <= body.len() {
        let hdr = &body[pos..pos + hdr_len];
        let id = &hdr[..id_len];
        if !id
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            break; // padding or junk
        }
        let size = match ver {
            2 => (hdr[3] as usize) << 16 | (hdr[4] as usize) << 8 | hdr[5] as usize,
            3 => be32(&hdr[4..8]) as usize,
            _ => {
                // Some writers put plain big-endian sizes in v2.4 tags.
                let plain = be32(&hdr[4..8]) as usize;
                match syncsafe(&hdr[4..8]) {
                    Some(s)
                        if looks_like_frame_start(&body, pos + hdr_len + s as usize)
                            || !looks_like_frame_start(&body, pos + hdr_len + plain) =>
                    {
                        s as usize
                    }
                    _ => plain,
                }
            }
        };
        let start = pos + hdr_len;
        let Some(data) = body.get(start..start + size) else {
            break;
        };
        pos = start + size;
        let slot = match id {
            b"TPE1" | b"TP1" => &mut artist,
            b"TIT2" | b"TT2" => &mut title,
            _ => continue,
        };
        if slot.is_some() {
            continue;
        }
        let fmt = if ver >= 3 { hdr[9] } else { 0 };
        let mut data: Cow<[u8]> = Cow::Borrowed(data);
        if ver == 3 {
            if fmt & 0xC0 != 0 {
                continue; // compressed or encrypted
            }
            if fmt & 0x20 != 0 {
                data = Cow::Owned(data.get(1..).unwrap_or_default().to_vec()); // group id
            }
        } else if ver == 4 {
            if fmt & 0x0C != 0 {
                continue; // compressed or encrypted
            }
            let mut skip = 0;
            if fmt & 0x40 != 0 {
                skip += 1; // group id
            }
            if fmt & 0x01 != 0 {
                skip += 4; // data length indicator
            }
            let rest = data.get(skip..).unwrap_or_default();
            data = if fmt & 0x02 != 0 {
                Cow::Owned(unsynchronise(rest))
            } else {
                Cow::Owned(rest.to_vec())
            };
        }
        *slot = decode_text_frame(&data);
    }
    Some((artist, title))
}

/// Decodes a text frame body (encoding byte + text). Multiple NUL-separated
/// values (v2.4) are joined with "/", the v2.3 convention.
fn decode_text_frame(data: &[u8]) -> Option<String> {
    let (&enc, text) = data.split_first()?;
    let values: Vec<String> = match enc {
        0 => text
            .split(|&c| c == 0)
            .map(|v| v.iter().map(|&c| c as char).collect())
            .collect(),
        3 => text
            .split(|&c| c == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect(),
        1 | 2 => {
            let units: Vec<[u8; 2]> = text.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
            units
                .split(|u| *u == [0, 0])
                .map(|v| {
                    // Encoding 2 is big-endian; for 1 each value carries a
                    // BOM, and little-endian is the common case without one.
                    let (mut le, mut v) = (enc == 1, v);
                    match v.first() {
                        Some([0xFF, 0xFE]) => (le, v) = (true, &v[1..]),
                        Some([0xFE, 0xFF]) => (le, v) = (false, &v[1..]),
                        _ => {}
                    }
                    let units = v.iter().map(|u| {
                        if le {
                            u16::from_le_bytes(*u)
                        } else {
                            u16::from_be_bytes(*u)
                        }
                    });
                    char::decode_utf16(units)
                        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                        .collect()
                })
                .collect()
        }
        _ => return None,
    };
    let values: Vec<&str> = values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.join("/"))
    }
}

fn id3v1_fields(b: &[u8]) -> Option<Fields> {
    let tag = b.get(b.len().checked_sub(128)?..)?;
    if &tag[..3] != b"TAG" {
        return None;
    }
    let field = |f: &[u8]| {
        let f = &f[..f.iter().position(|&c| c == 0).unwrap_or(f.len())];
        // ID3v1 is nominally Latin-1, but UTF-8 is common in practice and
        // unambiguous when it validates.
        let s = match std::str::from_utf8(f) {
            Ok(s) => s.to_owned(),
            Err(_) => f.iter().map(|&c| c as char).collect(),
        };
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    Some((field(&tag[33..63]), field(&tag[3..33])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::mp3::tests::{frames, id3v1};

    fn v2_text_frame(ver: u8, id: &[u8; 4], enc: u8, text: &[u8]) -> Vec<u8> {
        let mut f = id.to_vec();
        let n = text.len() as u32 + 1;
        if ver == 4 {
            f.extend([
                (n >> 21) as u8 & 0x7F,
                (n >> 14) as u8 & 0x7F,
                (n >> 7) as u8 & 0x7F,
                n as u8 & 0x7F,
            ]);
        } else {
            f.extend(n.to_be_bytes());
        }
        f.extend([0, 0, enc]);
        f.extend(text);
        f
    }

    fn v2_tag(ver: u8, frames: &[Vec<u8>]) -> Vec<u8> {
        let mut body = frames.concat();
        body.extend([0u8; 64]); // padding
        let mut t = b"ID3".to_vec();
        let s = body.len() as u32;
        t.extend([
            ver,
            0,
            0,
            (s >> 21) as u8 & 0x7F,
            (s >> 14) as u8 & 0x7F,
            (s >> 7) as u8 & 0x7F,
            s as u8 & 0x7F,
        ]);
        t.extend(body);
        t
    }

    fn utf16(s: &str, le: bool, bom: bool) -> Vec<u8> {
        let mut v = Vec::new();
        if bom {
            v.extend(if le { [0xFF, 0xFE] } else { [0xFE, 0xFF] });
        }
        for u in s.encode_utf16() {
            v.extend(if le { u.to_le_bytes() } else { u.to_be_bytes() });
        }
        v
    }

    #[test]
    fn tag_titles() {
        let audio = frames(3, 14).concat();
        let file = |tag: Vec<u8>| [tag, audio.clone()].concat();

        // v2.3 Latin-1 (0xE9 = é) with NUL terminator.
        let t = v2_tag(
            3,
            &[
                v2_text_frame(3, b"TALB", 0, b"Album"),
                v2_text_frame(3, b"TPE1", 0, b"Beyonc\xE9\0"),
                v2_text_frame(3, b"TIT2", 0, b"Halo"),
            ],
        );
        assert_eq!(tag_title(&file(t)).as_deref(), Some("Beyoncé - Halo"));

        // v2.3 UTF-16 with BOM, both byte orders.
        let t = v2_tag(
            3,
            &[
                v2_text_frame(3, b"TIT2", 1, &utf16("Ça va ♪", true, true)),
                v2_text_frame(3, b"TPE1", 1, &utf16("Zoë", false, true)),
            ],
        );
        assert_eq!(tag_title(&file(t)).as_deref(), Some("Zoë - Ça va ♪"));

        // v2.4 UTF-16BE and UTF-8, with multiple values.
        let t = v2_tag(
            4,
            &[
                v2_text_frame(
                    4,
                    b"TPE1",
                    2,
                    &[
                        utf16("A", false, false),
                        vec![0, 0],
                        utf16("B", false, false),
                    ]
                    .concat(),
                ),
                v2_text_frame(4, b"TIT2", 3, "日本語 🎵\0".as_bytes()),
            ],
        );
        assert_eq!(tag_title(&file(t)).as_deref(), Some("A/B - 日本語 🎵"));

        // v2.4 large frame (syncsafe size differs from plain).
        let long = "x".repeat(300);
        let t = v2_tag(
            4,
            &[
                v2_text_frame(4, b"TIT2", 3, long.as_bytes()),
                v2_text_frame(4, b"TPE1", 3, b"Me"),
            ],
        );
        assert_eq!(tag_title(&file(t)), Some(format!("Me - {long}")));

        // Title only.
        let t = v2_tag(3, &[v2_text_frame(3, b"TIT2", 0, b"Lonely")]);
        assert_eq!(tag_title(&file(t)).as_deref(), Some("Lonely"));

        // ID3v1 fallback when ID3v2 lacks both fields, and when absent.
        let v1 = id3v1("Old Song", "Old Band");
        let t = v2_tag(3, &[v2_text_frame(3, b"TALB", 0, b"Album")]);
        assert_eq!(
            tag_title(&[t, audio.clone(), v1.clone()].concat()).as_deref(),
            Some("Old Band - Old Song")
        );
        assert_eq!(
            tag_title(&[audio.clone(), v1].concat()).as_deref(),
            Some("Old Band - Old Song")
        );

        assert_eq!(tag_title(&audio), None);
        assert_eq!(tag_title(b""), None);
        assert_eq!(tag_title(b"ID3\x03\x00\x00\x7F\x7F"), None);
    }
}
