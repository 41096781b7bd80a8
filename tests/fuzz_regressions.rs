//! Inputs the fuzz targets in `fuzz/` found or that are known to be nasty, replayed on every
//! `cargo test` so a fixed parser stays fixed without running the fuzzer.

use cycast::api::admin::title_update;
use cycast::config::Config;
use cycast::http::{parse_head, percent_decode, Request, RequestError};
use cycast::icy::{metadata_block, Charset};
use cycast::ingest::id3::tag_title;
use cycast::ingest::mp3::{parse_header, Mp3Framer};

/// Basic credentials of the default source user.
const SOURCE_AUTH: &str = "Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n"; // source:hackme

// ---------------------------------------------------------------------------------------------
// HTTP request heads

/// Everything the `http_head` target checks on a parsed request.
fn check_request(req: &Request, buf: &[u8]) {
    assert!(buf.ends_with(&req.body));
    for (name, _) in &req.headers {
        assert!(req.header(name).is_some());
    }
    for pair in req.query.split('&') {
        let key = percent_decode(pair.split_once('=').map_or(pair, |(k, _)| k));
        assert!(req.query_param(&key).is_some());
    }
    if let Some((user, _)) = req.basic_credentials() {
        assert!(!user.contains(':'));
    }
}

/// Parses `buf` whole and as two reads split at every point, as `read_request` would see it.
fn parse_split_everywhere(buf: &[u8]) -> Result<Option<Request>, RequestError> {
    let whole = parse_head(buf);
    if let Ok(Some(req)) = &whole {
        check_request(req, buf);
    }
    for cut in 0..buf.len() {
        match (parse_head(&buf[..cut]), &whole) {
            (Ok(None), _) | (Err(_), Err(_)) => {}
            (Ok(Some(a)), Ok(Some(b))) => {
                assert_eq!(
                    (&a.method, &a.path, &a.headers),
                    (&b.method, &b.path, &b.headers)
                );
                assert!(b.body.starts_with(&a.body));
            }
            (first, whole) => panic!("cut at {cut}: {first:?}, whole: {whole:?}"),
        }
    }
    whole
}

#[test]
fn http_empty_and_tiny_inputs_are_partial() {
    for buf in [&b""[..], b"\r", b"\n", b"G", b"GET", b"GET ", b"GET /"] {
        assert!(matches!(parse_head(buf), Ok(None)), "{buf:?}");
    }
}

#[test]
fn http_ordinary_requests_split_anywhere() {
    let req = parse_split_everywhere(
        b"GET /stream?song=A%20-+B&x HTTP/1.1\r\nHost: x\r\nIcy-MetaData: 1\r\n\r\nrest",
    )
    .unwrap()
    .unwrap();
    assert_eq!(req.query_param("song").as_deref(), Some("A - B"));
    assert_eq!(req.query_param("x").as_deref(), Some(""));
    assert_eq!(req.body, b"rest");
    parse_split_everywhere(b"PUT /live HTTP/1.1\nAuthorization: Basic c291cmNlOmhhY2ttZQ==\n\n")
        .unwrap()
        .unwrap();
}

/// `SOURCE /m ICE/1.0` whose request line is cut before its newline (a slow or fragmented
/// source) must read as partial, like any other head; today it is refused as malformed.
/// Found by the `http_head` target.
#[test]
fn http_ice_request_line_split_across_reads() {
    let head = b"SOURCE /live ICE/1.0\r\nAuthorization: Basic c291cmNlOmhhY2ttZQ==\r\n\r\n";
    for cut in [
        "SOURCE /live I",
        "SOURCE /live ICE/1.",
        "SOURCE /live ICE/1.0\r",
    ] {
        assert!(
            matches!(parse_head(cut.as_bytes()), Ok(None)),
            "{cut:?}: {:?}",
            parse_head(cut.as_bytes())
        );
    }
    let req = parse_split_everywhere(head).unwrap().unwrap();
    assert_eq!(req.method, "SOURCE");
}

#[test]
fn http_ice_request_line_complete() {
    for head in [
        &b"SOURCE /live ICE/1.0\r\n\r\n"[..],
        b"SOURCE /live ICE/1.0\n\n\xff\xfb",
        b"SOURCE ICE/1.0\n\n",
    ] {
        let whole = parse_head(head);
        if let Ok(Some(req)) = &whole {
            check_request(req, head);
            assert_eq!(req.minor_version, 0);
        }
    }
}

#[test]
fn http_huge_header_line() {
    let value = "v".repeat(1 << 20);
    let head = format!("GET / HTTP/1.0\r\nX-Big: {value}\r\n\r\n");
    let req = parse_head(head.as_bytes()).unwrap().unwrap();
    assert_eq!(req.header("x-big").map(str::len), Some(value.len()));
    let long_path = format!("GET /{value} HTTP/1.0\r\n\r\n");
    let req = parse_head(long_path.as_bytes()).unwrap().unwrap();
    assert_eq!(req.path.len(), value.len() + 1);
}

#[test]
fn http_too_many_headers_is_malformed() {
    let mut head = String::from("GET / HTTP/1.1\r\n");
    for i in 0..65 {
        head.push_str(&format!("h{i}: x\r\n"));
    }
    head.push_str("\r\n");
    assert!(matches!(
        parse_head(head.as_bytes()),
        Err(RequestError::Malformed(_))
    ));
}

#[test]
fn http_nul_bytes_and_invalid_utf8() {
    for head in [
        &b"\0\0\0\0\r\n\r\n"[..],
        b"GET /\0 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\n\0: x\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: \xff\xfe\xc3\r\n\r\n",
        b"GET / HTTP/1.1\r\nAuthorization: Basic //79/A==\r\n\r\n",
        b"\xff\xfb\x90\x64\r\n\r\n",
    ] {
        if let Ok(Some(req)) = parse_split_everywhere(head) {
            assert!(req.basic_credentials().is_none());
        }
    }
}

#[test]
fn http_credentials_edge_cases() {
    for (auth, expect) in [
        ("Basic", None),
        ("Basic ", None),
        ("Basic !!!!", None),
        ("Basic c291cmNl", None),            // "source", no colon
        ("Basic Og==", Some(("", ""))),      // ":"
        ("basic  OjpA  ", Some(("", ":@"))), // "::@", extra spaces
        ("Bearer c291cmNlOmhhY2ttZQ==", None),
    ] {
        let head = format!("GET / HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n");
        let req = parse_head(head.as_bytes()).unwrap().unwrap();
        let got = req.basic_credentials();
        assert_eq!(
            got.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            expect,
            "{auth:?}"
        );
    }
}

#[test]
fn percent_decode_edge_cases() {
    assert_eq!(percent_decode(""), "");
    assert_eq!(percent_decode("%"), "%");
    assert_eq!(percent_decode("%%"), "%%");
    assert_eq!(percent_decode("%4"), "%4");
    assert_eq!(percent_decode("%41"), "A");
    assert_eq!(percent_decode("%zz%41"), "%zzA");
    assert_eq!(percent_decode("%e2%82"), "\u{FFFD}");
    assert_eq!(percent_decode("%00"), "\0");
    assert_eq!(percent_decode("é%"), "é%");
    assert_eq!(percent_decode("%é"), "%é");
}

/// `%+1` is not an escape (`+` is no hex digit) but decodes to byte 0x01, because
/// `u8::from_str_radix` accepts a leading `+`; `%+0` smuggles a NUL into a decoded value.
/// Found by the `http_head` target's comparison with a strict decoder.
#[test]
fn percent_decode_rejects_signs() {
    assert_eq!(percent_decode("%+1"), "% 1");
    assert_eq!(percent_decode("%+0"), "% 0");
    assert_eq!(percent_decode("a%+Fb"), "a% Fb");
}

// ---------------------------------------------------------------------------------------------
// Admin title updates (the `admin_query` target)

/// `%a` before the two UTF-8 bytes of `é` made the old Latin-1 decoder slice inside the
/// character and panic, taking a shard (listen port) or the ingest core (source port) down.
#[test]
fn admin_escape_before_a_multibyte_character() {
    let config = Config::default();
    for target in [
        "/admin/metadata?mount=/stream&mode=updinfo&charset=latin1&song=%a\u{e9}",
        "/admin.cgi?pass=hackme&mode=updinfo&charset=latin1&song=%a\u{e9}x",
        "/admin.cgi?pass=hackme&mode=updinfo&charset=latin1&song=%\u{e9}",
        "/admin.cgi?pass=hackme&mode=updinfo&charset=latin1&song=%e\u{20ac}%",
        "/admin.cgi?pass=hackme&mode=updinfo&charset=utf-8&artist=%a\u{e9}&title=%",
    ] {
        let head = format!("GET {target} HTTP/1.0\r\n{SOURCE_AUTH}\r\n");
        let req = parse_head(head.as_bytes()).unwrap().unwrap();
        // Taken as the bytes say, or refused (Latin-1 reads `€`'s 0x82 as a control): no panic.
        match title_update(&config, &req) {
            Ok(update) => assert!(update.title.starts_with('%'), "{target}: {update:?}"),
            Err((status, _)) => assert_eq!(status, 400, "{target}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MP3 framing

struct Framed {
    frames: Vec<Vec<u8>>,
    skipped: u64,
    resyncs: u64,
}

/// Pushes `stream` in pieces of `piece` bytes, draining after each, as ingest does, and checks
/// what the `mp3_framer` target checks.
fn frame(stream: &[u8], piece: usize) -> Framed {
    let mut f = Mp3Framer::new();
    let mut frames = Vec::new();
    let mut take = |f: &mut Mp3Framer| {
        while let Some((h, data)) = f.next_frame() {
            assert_eq!(data.len(), h.frame_len);
            assert_eq!(parse_header(data), Some(h));
            frames.push(data.to_vec());
        }
    };
    for p in stream.chunks(piece.max(1)) {
        f.push(p);
        take(&mut f);
    }
    f.finish();
    take(&mut f);
    assert!(f.next_frame().is_none());
    let mut from = 0;
    for fr in &frames {
        let at = stream[from..]
            .windows(fr.len())
            .position(|w| w == &fr[..])
            .expect("frame not in the input");
        from += at + fr.len();
    }
    let emitted: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!(emitted + f.skipped_bytes(), stream.len() as u64);
    Framed {
        frames,
        skipped: f.skipped_bytes(),
        resyncs: f.resyncs(),
    }
}

/// Same result whether the stream arrives whole or in pieces of any of these sizes.
fn frame_all_pieces(stream: &[u8]) -> Framed {
    let whole = frame(stream, stream.len());
    for piece in [1, 2, 3, 4, 5, 9, 417, 4096] {
        let o = frame(stream, piece);
        assert_eq!(o.frames, whole.frames, "pieces of {piece}");
        assert_eq!((o.skipped, o.resyncs), (whole.skipped, whole.resyncs));
    }
    whole
}

/// A zeroed MPEG-1 Layer III frame, 128 kbps, 44.1 kHz (417 bytes).
fn mp3_frame() -> Vec<u8> {
    let mut f = vec![0u8; 417];
    f[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
    f
}

#[test]
fn mp3_empty_and_tiny_inputs() {
    for stream in [
        &b""[..],
        b"\xff",
        b"\xff\xfb",
        b"\xff\xfb\x90",
        b"\xff\xfb\x90\x64",
        b"I",
        b"ID3",
        b"ID3\x04\x00\x00\x00\x00\x00",
        b"TA",
        b"APETAGE",
        b"\0",
    ] {
        let o = frame_all_pieces(stream);
        assert!(o.frames.is_empty(), "{stream:?}");
    }
}

#[test]
fn mp3_one_byte_pushes() {
    let stream = mp3_frame().repeat(6);
    let o = frame(&stream, 1);
    assert_eq!(o.frames.len(), 6);
    assert_eq!((o.skipped, o.resyncs), (0, 0));
}

#[test]
fn mp3_id3_claiming_2_pow_28_bytes_swallows_what_follows() {
    // Largest syncsafe size: 2^28 - 1. The tag is skipped as it streams past, never buffered.
    let mut stream = b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f".to_vec();
    stream.extend(mp3_frame().repeat(20));
    let o = frame_all_pieces(&stream);
    assert!(o.frames.is_empty());
    assert_eq!(o.skipped, stream.len() as u64);

    // With a footer flag the claimed size grows by 10; still no overflow and nothing emitted.
    stream[5] = 0x10;
    assert!(frame_all_pieces(&stream).frames.is_empty());
}

#[test]
fn mp3_ape_header_claiming_u32_max_is_garbage() {
    let mut ape = b"APETAGEX".to_vec();
    ape.extend(2000u32.to_le_bytes());
    ape.extend(u32::MAX.to_le_bytes());
    ape.extend(0u32.to_le_bytes());
    ape.extend(((1u32 << 31) | (1 << 29)).to_le_bytes());
    ape.extend([0u8; 8]);
    let stream = [ape, mp3_frame().repeat(5)].concat();
    let o = frame_all_pieces(&stream);
    // The rejected magic contains "TAG", which then reads as a 128-byte ID3v1 tag and costs the
    // first frame, and the second (its start follows garbage); everything after it comes
    // through.
    assert!(o.frames.len() >= 3, "{} frames", o.frames.len());
}

#[test]
fn mp3_sync_soup_and_nul_bytes() {
    for stream in [
        vec![0xFF; 10_000],
        [0xFF, 0xFB].repeat(5_000),
        [0xFF, 0xFB, 0x90, 0x64].repeat(2_500),
        vec![0; 10_000],
        b"ID3".repeat(3_000),
        b"TAG".repeat(100),
        b"APETAGEX".repeat(500),
    ] {
        frame_all_pieces(&stream);
        let _ = tag_title(&stream);
    }
}

#[test]
fn mp3_undrained_pushes_stay_consistent() {
    // A caller that never drains loses old bytes to the carry cap, but what does come out is
    // still whole frames from the input, and every byte is accounted for.
    let stream = mp3_frame().repeat(100);
    let mut f = Mp3Framer::new();
    for p in stream.chunks(1000) {
        f.push(p);
    }
    f.finish();
    let mut emitted = 0u64;
    while let Some((h, data)) = f.next_frame() {
        assert_eq!(data, &stream[..h.frame_len]);
        emitted += data.len() as u64;
    }
    assert_eq!(emitted + f.skipped_bytes(), stream.len() as u64);
}

#[test]
fn tag_title_hostile_tags() {
    let cases: &[&[u8]] = &[
        b"",
        b"ID3",
        b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f",
        // Extended header flag with no room for it (v2.3 and v2.4).
        b"ID3\x03\x00\x40\x00\x00\x00\x00",
        b"ID3\x04\x00\x40\x00\x00\x00\x02\x00\x00",
        // v2.3 extended header claiming 4 GiB.
        b"ID3\x03\x00\x40\x00\x00\x00\x08\xff\xff\xff\xff\x00\x00\x00\x00",
        // Frames claiming 4 GiB, 16 MiB (v2.2) and a syncsafe/plain size mismatch (v2.4).
        b"ID3\x03\x00\x00\x00\x00\x00\x10TIT2\xff\xff\xff\xff\x00\x00\x00x",
        b"ID3\x02\x00\x00\x00\x00\x00\x10TT2\xff\xff\xff\x00x",
        b"ID3\x04\x00\x00\x00\x00\x00\x14TIT2\x00\x00\x01\x00\x00\x01\x03ab",
        // Text frames with nothing after the flags, odd UTF-16 lengths, lone surrogates.
        b"ID3\x04\x00\x00\x00\x00\x00\x0bTIT2\x00\x00\x00\x01\x00\x4b\x00",
        b"ID3\x03\x00\x00\x00\x00\x00\x0fTIT2\x00\x00\x00\x05\x00\x00\x01\xff\xfe\x00",
        b"ID3\x03\x00\x00\x00\x00\x00\x10TIT2\x00\x00\x00\x06\x00\x00\x02\xd8\x00\xdc\x00",
        // Unsynchronised tag that ends on 0xFF.
        b"ID3\x03\x00\x80\x00\x00\x00\x0cTIT2\x00\x00\x00\x02\x00\x00\x00\xff",
        // ID3v1 only, with invalid bytes and NULs.
        &[b"TAG".as_slice(), &[0xFF; 60], &[0; 65]].concat(),
    ];
    for case in cases {
        let _ = tag_title(case);
    }
}

// ---------------------------------------------------------------------------------------------
// ICY metadata blocks

fn check_block(title: &str, charset: Charset) -> Vec<u8> {
    let block = metadata_block(title, charset);
    assert_eq!(block[0] as usize * 16 + 1, block.len());
    let body = &block[1..];
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    assert!(body[end..].iter().all(|&b| b == 0));
    assert!(body.len() - end < 16);
    let text = &body[..end];
    assert!(text.starts_with(b"StreamTitle='") && text.ends_with(b"';"));
    if charset == Charset::Utf8 {
        std::str::from_utf8(text).expect("valid UTF-8");
    }
    block
}

#[test]
fn icy_block_edge_cases() {
    let at_limit = "x".repeat(4065);
    let over_limit = "x".repeat(4066);
    let straddling = format!("{}€", "x".repeat(4063));
    for title in [
        "",
        "\0",
        "\0\0\0 NUL \0",
        "\x01\x02\x1f\x7f\t\r\n",
        "'; StreamUrl='http://evil/';",
        at_limit.as_str(),
        over_limit.as_str(),
        straddling.as_str(),
        "€".repeat(3000).as_str(),
        "🎵".repeat(5000).as_str(),
    ] {
        check_block(title, Charset::Utf8);
        check_block(title, Charset::Latin1);
    }
    assert_eq!(check_block("", Charset::Utf8).len(), 17);
    assert_eq!(check_block(&at_limit, Charset::Utf8)[0], 255);
    assert_eq!(check_block(&over_limit, Charset::Utf8)[0], 255);
    // The 3-byte € does not fit after 4063 bytes: cut before it, never through it.
    let block = check_block(&straddling, Charset::Utf8);
    assert!(!block.windows(3).any(|w| w == "€".as_bytes()));
}

// ---------------------------------------------------------------------------------------------
// Configuration

fn config_must_not_panic(text: &str) {
    if let Ok(c) = Config::from_hcl_str(text) {
        Config::from_hcl_str(&c.to_redacted_hcl()).expect("redacted config loads again");
    }
}

#[test]
fn config_hostile_text_is_an_error_not_a_panic() {
    let deep = format!("x = {}1{}", "(".repeat(200), ")".repeat(200));
    let long_string = format!("server {{ host = \"{}\" }}", "h".repeat(100_000));
    for text in [
        "",
        "\0",
        "server {",
        "server { listen_port = 99999999999999999999999 }",
        "server { listen_port = -1 }",
        "buffer { size_mb = 4294967295 }",
        "limits { header_timeout = 1e308 }",
        "limits { header_timeout = -1 }",
        "limits { queue_size = \"${1}\" }",
        "server { host = \"${\" }",
        "server \"a\" \"b\" { }",
        "server { server { } }",
        deep.as_str(),
        long_string.as_str(),
    ] {
        config_must_not_panic(text);
    }
}

/// Integer `%` by zero panics inside hcl-rs's evaluator (hcl-primitives `Number::rem`), even
/// in release builds, so such a config kills startup or a SIGHUP reload instead of being
/// refused. Integer `*` overflow and a non-finite `/` (`0/0`, `1/0`) panic the same way in
/// debug builds; release wraps or lets NaN/infinity through. Found by the `config` target
/// (`bu=-0%-0`, `bu=-0/0/t`).
#[test]
fn config_arithmetic_panics_are_errors() {
    for text in [
        "bu=-0%-0",
        "limits { queue_size = 512 % 0 }",
        "limits { queue_size = 9999999999 * 9999999999 }",
        "bu=-0/0/t",
        "limits { queue_size = 1 / 0 }",
        "limits { header_timeout = 0 / 0 }",
    ] {
        assert!(Config::from_hcl_str(text).is_err(), "{text}");
    }
}
