#![no_main]
//! ICY metadata blocks for any title: the length byte is right, the block is NUL padded, the
//! text is `StreamTitle='…';` and, in UTF-8 mode, valid UTF-8.

use cycast::icy::{metadata_block, Charset};
use libfuzzer_sys::fuzz_target;

fn check(title: &str, charset: Charset) {
    let block = metadata_block(title, charset);
    assert!(!block.is_empty());
    assert_eq!(
        block[0] as usize * 16 + 1,
        block.len(),
        "length byte is wrong"
    );
    let body = &block[1..];
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    assert!(body[end..].iter().all(|&b| b == 0), "NUL inside the text");
    assert!(body.len() - end < 16, "more than one block of padding");
    let text = &body[..end];
    assert!(text.starts_with(b"StreamTitle='"), "{text:?}");
    assert!(text.ends_with(b"';"), "{text:?}");
    assert!(
        text.iter().all(|&b| b >= 0x20 || b == b'\t'),
        "control byte in the text"
    );
    let inner = &text[b"StreamTitle='".len()..text.len() - 2];
    match charset {
        Charset::Utf8 => {
            let s = std::str::from_utf8(inner).expect("UTF-8 mode produced invalid UTF-8");
            // Cut on a character boundary, never rewritten.
            let kept: String = title.chars().filter(|&c| c >= ' ' || c == '\t').collect();
            assert!(kept.starts_with(s), "text is not a prefix of the title");
        }
        Charset::Latin1 => {
            assert!(inner.len() <= title.chars().count());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(title) = std::str::from_utf8(data) else {
        return;
    };
    check(title, Charset::Utf8);
    check(title, Charset::Latin1);
});
