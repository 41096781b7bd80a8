#![no_main]
//! Request heads as a hostile peer could send them: parsing never panics, a parsed request
//! is consistent with the bytes it came from, and the answer does not depend on how the bytes
//! were split across reads.

use cycast::http::{form_decode, parse_head, percent_decode, Request};
use libfuzzer_sys::fuzz_target;

fn exercise(req: &Request, buf: &[u8]) {
    // The body is whatever followed the head, untouched.
    assert!(
        buf.ends_with(&req.body),
        "body is not a suffix of the input"
    );
    for name in ["host", "authorization", "content-type", "icy-metadata", ""] {
        let _ = req.header(name);
    }
    for (name, _) in &req.headers {
        assert!(
            req.header(name).is_some(),
            "header {name:?} not found by name"
        );
        assert!(req.header(&name.to_ascii_uppercase()).is_some());
    }
    for name in ["mode", "mount", "song", "charset", "", " "] {
        let _ = req.query_param(name);
    }
    for pair in req.query.split('&') {
        let raw = pair.split_once('=').map_or(pair, |(k, _)| k);
        // Names are looked up by their decoded bytes; a name that is not UTF-8 cannot be asked for.
        if let Ok(key) = String::from_utf8(form_decode(raw)) {
            assert!(
                req.query_param(&key).is_some(),
                "query key {key:?} not found"
            );
        }
    }
    if let Some((user, pass)) = req.basic_credentials() {
        assert!(!user.contains(':'), "user {user:?} contains ':'");
        let _ = pass;
    }
    let _ = percent_decode(&req.path);
}

/// `%XX` with two hex digits is an escape, `+` a space, anything else stays as it is.
fn strict_percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks where the first read ends; the rest is what the peer sent.
    let Some((&cut, buf)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(buf) {
        assert_eq!(
            percent_decode(text),
            strict_percent_decode(text),
            "{text:?}"
        );
    }
    let whole = parse_head(buf);
    if let Ok(Some(req)) = &whole {
        exercise(req, buf);
    }

    // What read_request sees when the head arrives in two reads.
    let cut = (cut as usize).min(buf.len());
    let first = parse_head(&buf[..cut]);
    match (&first, &whole) {
        (Ok(None), _) => {}
        (Ok(Some(a)), Ok(Some(b))) => {
            assert_eq!(
                (&a.method, &a.path, &a.query, a.minor_version, &a.headers),
                (&b.method, &b.path, &b.query, b.minor_version, &b.headers),
                "the head parsed differently once more bytes arrived"
            );
            assert!(b.body.starts_with(&a.body));
        }
        (Err(_), Err(_)) => {}
        (first, whole) => {
            panic!("a prefix of {cut} bytes gave {first:?} but the whole input gave {whole:?}")
        }
    }
});
