//! Source mode: pushes an MP3 file to a mount at real time, as a live encoder would.
//!
//! The file is cut into frames once (tags and garbage dropped); each frame is written when its
//! start time comes due, measured against absolute deadlines from one start instant, so sleep
//! overshoot never accumulates into drift.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::SourceOptions;
use cycast::ingest::mp3::Mp3Framer;
use cycast::url::{Credentials, HttpUrl};

/// How the source announces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// `PUT /mount HTTP/1.1` with `Expect: 100-continue` (Icecast 2.4+).
    Put,
    /// The legacy `SOURCE /mount HTTP/1.0`.
    Source,
}

/// The file's audio as frames ready to send.
#[derive(Debug, Clone, Default)]
pub struct Frames {
    /// The frames back to back.
    pub bytes: Vec<u8>,
    /// End offset in `bytes` and start time (µs from the file start) of each frame.
    pub index: Vec<(usize, u64)>,
    /// Length of the whole file in microseconds.
    pub duration_us: u64,
    /// Average bitrate in kbps.
    pub kbps: u32,
    /// Sample rate of the first frame.
    pub sample_rate: u32,
    /// Channels of the first frame.
    pub channels: u8,
}

impl Frames {
    /// Cuts `file` into frames, dropping tags and anything that is not audio.
    pub fn from_file(file: &[u8]) -> Frames {
        let mut framer = Mp3Framer::new();
        framer.push(file);
        framer.finish();
        let mut out = Frames::default();
        while let Some((h, frame)) = framer.next_frame() {
            if out.index.is_empty() {
                out.sample_rate = h.sample_rate;
                out.channels = h.channels;
            }
            out.bytes.extend_from_slice(frame);
            out.index.push((out.bytes.len(), out.duration_us));
            out.duration_us += h.duration_micros();
        }
        out.kbps = (out.bytes.len() as u64 * 8_000)
            .checked_div(out.duration_us)
            .unwrap_or(0) as u32;
        out
    }
}

/// Runs the source mode; returns the exit code (0 done, 1 refused or failed, 2 bad options).
pub fn main_source(opts: SourceOptions) -> i32 {
    let url = match HttpUrl::parse(&opts.url) {
        Ok(u) if u.tls => {
            eprintln!(
                "cycast-load source: {}: the source mode speaks http:// only",
                u.redacted()
            );
            return 2;
        }
        Ok(u) => u,
        Err(e) => {
            eprintln!("cycast-load source: --url: {e}");
            return 2;
        }
    };
    let file = match std::fs::read(&opts.file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cycast-load source: {}: {e}", opts.file.display());
            return 2;
        }
    };
    let frames = Frames::from_file(&file);
    if frames.index.is_empty() {
        eprintln!("cycast-load source: {}: no MP3 frames", opts.file.display());
        return 2;
    }
    match stream(&url, &opts, &frames) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cycast-load source: {e}");
            1
        }
    }
}

/// The request head announcing the source.
fn request_head(url: &HttpUrl, method: Method, frames: &Frames) -> String {
    let auth = url
        .credentials
        .clone()
        .unwrap_or_else(|| Credentials {
            user: "source".into(),
            password: String::new(),
        })
        .basic_authorization();
    let first = match method {
        Method::Put => format!(
            "PUT {} HTTP/1.1\r\nHost: {}\r\nExpect: 100-continue\r\n",
            url.path,
            url.host_header()
        ),
        Method::Source => format!("SOURCE {} HTTP/1.0\r\n", url.path),
    };
    format!(
        "{first}Authorization: {auth}\r\nUser-Agent: cycast-load/{}\r\nContent-Type: audio/mpeg\r\n\
ice-name: cycast-load\r\nice-public: 0\r\nice-bitrate: {}\r\n\
ice-audio-info: ice-samplerate={};ice-bitrate={};ice-channels={}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        frames.kbps,
        frames.sample_rate,
        frames.kbps,
        frames.channels
    )
}

/// Reads one response head, byte by byte so no audio-side byte is consumed.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
        if head.len() > 16 * 1024 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Connects, announces the source and writes the frames at real time.
fn stream(url: &HttpUrl, opts: &SourceOptions, frames: &Frames) -> Result<(), String> {
    let addr = super::resolve_ipv4(url)?;
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request_head(url, opts.method, frames).as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut head = read_head(&mut stream).map_err(|e| format!("reading the answer: {e}"))?;
    if head.split_whitespace().nth(1) == Some("100") {
        head = read_head(&mut stream).map_err(|e| format!("reading the answer: {e}"))?;
    }
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(format!(
            "refused: {}",
            head.lines().next().unwrap_or("(no answer)")
        ));
    }
    eprintln!(
        "cycast-load source: streaming {} ({} frames, {:.1} s, {} kbps) to {}{}",
        opts.file.display(),
        frames.index.len(),
        frames.duration_us as f64 / 1e6,
        frames.kbps,
        url.host_header(),
        url.path
    );
    let start = Instant::now();
    let stop = opts.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut pass = 0u64;
    loop {
        let pass_start = pass * frames.duration_us;
        let mut sent_to = 0;
        let mut i = 0;
        while i < frames.index.len() {
            // Every frame due by now goes out in one write.
            let now_us = start.elapsed().as_micros() as u64;
            let mut j = i;
            while j < frames.index.len() && pass_start + frames.index[j].1 <= now_us {
                j += 1;
            }
            if j > i {
                let end = frames.index[j - 1].0;
                stream
                    .write_all(&frames.bytes[sent_to..end])
                    .map_err(|e| format!("the server closed the source: {e}"))?;
                sent_to = end;
                i = j;
                continue;
            }
            let due = start + Duration::from_micros(pass_start + frames.index[i].1);
            if stop.is_some_and(|s| due >= s) {
                return Ok(());
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        if !opts.repeat {
            return Ok(());
        }
        pass += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cycast::ingest::mp3::silence_frame;

    #[test]
    fn frames_skip_tags_and_time_the_file() {
        let mut file = b"ID3\x03\x00\x00\x00\x00\x00\x0aTTTTTTTTTT".to_vec();
        for _ in 0..100 {
            file.extend_from_slice(&silence_frame(128, 44100, true));
        }
        let f = Frames::from_file(&file);
        assert_eq!(f.index.len(), 100);
        assert_eq!(f.bytes.len(), 100 * 417);
        // 1152 samples at 44.1 kHz: 26,122 µs per frame.
        assert_eq!(f.duration_us, 100 * 26_122);
        assert_eq!(f.index[1], (834, 26_122));
        assert_eq!((f.sample_rate, f.channels), (44100, 2));
        assert!((127..=128).contains(&f.kbps));
    }

    #[test]
    fn heads_carry_credentials_and_method() {
        let url = HttpUrl::parse("http://source:hackme@127.0.0.1:8000/stream").unwrap();
        let frames = Frames {
            kbps: 128,
            sample_rate: 44100,
            channels: 2,
            ..Frames::default()
        };
        let put = request_head(&url, Method::Put, &frames);
        assert!(put.starts_with("PUT /stream HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"));
        assert!(put.contains("Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n"));
        assert!(put.contains("Content-Type: audio/mpeg\r\n") && put.ends_with("\r\n\r\n"));
        let src = request_head(&url, Method::Source, &frames);
        assert!(src.starts_with("SOURCE /stream HTTP/1.0\r\n"));
    }
}
