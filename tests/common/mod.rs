//! Test harness: runs the real `cycast` binary on loopback with ephemeral ports, and speaks to
//! it as raw sources and listeners would.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cycast::ingest::mp3::parse_header;

/// Basic credentials of the default source user.
pub const SOURCE_AUTH: &str = "Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n"; // source:hackme

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    /// Listen port address.
    pub listen: SocketAddr,
    /// Source port address.
    pub source: SocketAddr,
    log: Arc<Mutex<String>>,
    /// Holds the config file and any test files alive.
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts cycast with `config` (HCL, without the `server` ports, which are ephemeral) and
    /// extra command-line arguments.
    pub fn start(config: &str) -> Server {
        Self::start_with_args(config, &[])
    }

    pub fn start_with_args(config: &str, args: &[&str]) -> Server {
        Self::start_inner(config, args, None, &[])
    }

    /// Starts cycast with extra environment variables.
    pub fn start_with_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_inner(config, args, None, env)
    }

    /// Starts cycast allowed only `nofile` file descriptors (soft and hard limit).
    pub fn start_with_fd_limit(config: &str, nofile: u32) -> Server {
        Self::start_inner(config, &[], Some(nofile), &[])
    }

    fn start_inner(
        config: &str,
        args: &[&str],
        nofile: Option<u32>,
        env: &[(&str, &str)],
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cycast.hcl");
        std::fs::write(&path, config).unwrap();
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_cycast"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_cycast")),
        };
        let mut child = command
            .arg("--config")
            .arg(&path)
            .args(if args.contains(&"--host") {
                &[][..]
            } else {
                &["--host", "127.0.0.1"][..]
            })
            // Ephemeral ports unless the test names its own (to restart on the same ones).
            .args(if args.contains(&"--listen-port") {
                &[][..]
            } else {
                &["--listen-port", "0"][..]
            })
            .args(if args.contains(&"--source-port") {
                &[][..]
            } else {
                &["--source-port", "0"][..]
            })
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cycast");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let (Some(l), Some(s)) = (field(&line, "listeners="), field(&line, "sources=")) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((l, s));
                    }
                }
                log_writer.lock().unwrap().push_str(&line);
                log_writer.lock().unwrap().push('\n');
            }
        });
        let (listen, source) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                panic!("cycast did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Server {
            child,
            listen,
            source,
            log,
            dir,
        }
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, …) to the server process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the server to exit; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// CPU seconds (user + system) the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The address logged after `key` at start-up (`https=`, `tls_source=`: ports chosen by
    /// the system).
    pub fn logged_addr(&self, key: &str) -> SocketAddr {
        let log = self.log();
        let start = log.find(key).expect("address logged") + key.len();
        log[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Samples of `cycast_listener_disconnects_total` with `reason`, summed over shards.
    pub fn disconnects(&self, reason: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| {
                l.starts_with("cycast_listener_disconnects_total{")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Waits up to 10 s for a log line containing `text` (the log is read by another thread,
    /// so a line can trail the state change it reports); returns the log.
    pub fn wait_log(&self, text: &str) -> String {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            assert!(Instant::now() < until, "no {text:?} in {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A path inside the server's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// GET `path` on the listen port; returns (status line + headers, body).
    pub fn get(&self, path: &str) -> (String, Vec<u8>) {
        http_get(self.listen, path)
    }

    /// `/api/stats` parsed.
    pub fn stats(&self) -> serde_json::Value {
        let (_, body) = self.get("/api/stats");
        serde_json::from_slice(&body).expect("stats json")
    }

    /// Waits until `pred` holds for the stats, or panics after `timeout`.
    pub fn wait_stats(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if pred(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; stats: {stats}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, key: &str) -> Option<SocketAddr> {
    let start = line.find(key)? + key.len();
    line[start..].split_whitespace().next()?.parse().ok()
}

/// A one-shot HTTP GET; returns (head, body) read until the server closes.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    split_head(&all)
}

/// Sends raw bytes to `addr` and reads until close or `timeout`.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(request).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    all
}

/// Splits a response into its head (text) and body.
pub fn split_head(all: &[u8]) -> (String, Vec<u8>) {
    match all.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => (
            String::from_utf8_lossy(&all[..p + 4]).into_owned(),
            all[p + 4..].to_vec(),
        ),
        None => (String::from_utf8_lossy(all).into_owned(), Vec::new()),
    }
}

/// A listener connection reading the stream.
pub struct Listener {
    pub stream: TcpStream,
    pub head: String,
    pub body: Vec<u8>,
}

impl Listener {
    /// Connects and reads the response head (and any body bytes that came with it).
    pub fn connect(addr: SocketAddr, path: &str) -> Listener {
        Self::connect_with(addr, path, "")
    }

    pub fn connect_with(addr: SocketAddr, path: &str, extra_headers: &str) -> Listener {
        let stream = TcpStream::connect(addr).unwrap();
        Self::from_stream(stream, path, extra_headers)
    }

    pub fn from_stream(mut stream: TcpStream, path: &str, extra_headers: &str) -> Listener {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: cycast-test\r\n{extra_headers}\r\n").unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while !all.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("response head");
            assert!(
                n > 0,
                "closed before the head: {}",
                String::from_utf8_lossy(&all)
            );
            all.extend_from_slice(&buf[..n]);
        }
        let (head, body) = split_head(&all);
        Listener { stream, head, body }
    }

    /// Reads whatever arrives during `dur`.
    pub fn read_for(&mut self, dur: Duration) -> usize {
        let deadline = Instant::now() + dur;
        let before = self.body.len();
        let mut buf = vec![0u8; 64 * 1024];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.body.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        self.body.len() - before
    }

    /// Reads until the body holds at least `len` bytes; panics after `timeout`.
    pub fn read_at_least(&mut self, len: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        while self.body.len() < len {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_default();
            assert!(
                !left.is_zero(),
                "only {} of {len} bytes arrived",
                self.body.len()
            );
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("stream closed after {} bytes", self.body.len()),
                Ok(n) => self.body.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Whether the server closed the connection (reads to end within `timeout`).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.body.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// An MPEG-1 Layer III 128 kbps 44.1 kHz stereo frame header without padding: 417-byte frames.
pub const FRAME_HEADER: [u8; 4] = [0xFF, 0xFB, 0x90, 0x64];
/// Length of those frames.
pub const FRAME_LEN: usize = 417;

/// `count` test frames numbered from `first`: a valid header, then the frame number and a
/// pattern derived from it, so every frame is distinct and its position identifiable.
pub fn numbered_frames(first: u32, count: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(count as usize * FRAME_LEN);
    for n in first..first + count {
        out.extend_from_slice(&FRAME_HEADER);
        out.extend_from_slice(&n.to_be_bytes());
        for i in 0..FRAME_LEN - 8 {
            out.push((n as usize * 7 + i * 13) as u8 & 0x7F);
        }
    }
    out
}

/// Frame number of the test frame at the start of `frame`, if it is one.
pub fn frame_number(frame: &[u8]) -> Option<u32> {
    (frame.len() >= 8 && frame[..4] == FRAME_HEADER)
        .then(|| u32::from_be_bytes(frame[4..8].try_into().unwrap()))
}

/// Walks `bytes` as back-to-back MPEG audio frames from offset 0; returns the offsets of the
/// frames, or the offset where the walk broke. A trailing partial frame is allowed.
pub fn walk_frames(bytes: &[u8]) -> Result<Vec<usize>, usize> {
    let mut offsets = Vec::new();
    let mut pos = 0;
    while pos + 4 <= bytes.len() {
        let Some(header) = parse_header(&bytes[pos..]) else {
            return Err(pos);
        };
        offsets.push(pos);
        pos += header.frame_len;
    }
    Ok(offsets)
}

/// A source connection that has been accepted.
pub struct Source {
    pub stream: TcpStream,
    pub response: String,
}

impl Source {
    /// Sends `head` (a full request head) to the source port and reads the answer head.
    pub fn connect(addr: SocketAddr, head: &str) -> Source {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let response = read_head(&mut stream);
        Source { stream, response }
    }

    /// A `SOURCE /mount HTTP/1.0` stream with the default credentials.
    pub fn mp3(addr: SocketAddr, mount: &str) -> Source {
        let source = Self::connect(addr, &format!("SOURCE {mount} HTTP/1.0\r\n{SOURCE_AUTH}Content-Type: audio/mpeg\r\nice-name: Test Stream\r\n\r\n"));
        assert!(
            source.response.starts_with("HTTP/1.0 200"),
            "source refused: {}",
            source.response
        );
        source
    }

    /// Sends frames `first..first+count` at `speed` times real time.
    pub fn send_frames(&mut self, first: u32, count: u32, speed: f64) {
        let frames = numbered_frames(first, count);
        // 1152 samples at 44.1 kHz per frame.
        let frame_time = Duration::from_secs_f64(1152.0 / 44100.0 / speed);
        let start = Instant::now();
        for (i, frame) in frames.chunks(FRAME_LEN).enumerate() {
            self.stream.write_all(frame).unwrap();
            let due = start + frame_time * (i as u32 + 1);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// Reads one response head (up to the blank line) byte by byte, so nothing after it is consumed.
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Checks that from the first test frame it holds, `capture` is exactly the test frames
/// `first..first+count` in order (whatever played before the source, such as silence, is
/// skipped). Returns the first test frame number seen.
pub fn assert_exact_suffix(capture: &[u8], sent_first: u32, sent_count: u32) -> u32 {
    let offsets = walk_frames(capture)
        .unwrap_or_else(|at| panic!("capture is not a frame sequence at byte {at}"));
    let (start, first) = offsets
        .iter()
        .find_map(|&at| {
            let n = frame_number(&capture[at..])?;
            let in_range = n >= sent_first && n < sent_first + sent_count;
            (in_range && capture[at..].starts_with(&numbered_frames(n, 1))).then_some((at, n))
        })
        .expect("capture holds no test frame");
    let expected = numbered_frames(first, sent_first + sent_count - first);
    let got = &capture[start..];
    let n = got.len().min(expected.len());
    if got[..n] != expected[..n] {
        let at = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(n);
        panic!(
            "capture differs from the source at byte {at} after frame {first} (frame {})",
            first as usize + at / FRAME_LEN
        );
    }
    first
}

/// Position of test frame `n` in `capture`.
pub fn find_frame(capture: &[u8], n: u32) -> Option<usize> {
    let needle = numbered_frames(n, 1);
    capture
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Plays `seconds` of the demo track in real time as a live source on `/stream` at `source`,
/// re-encoded by ffmpeg at `rate` Hz (128 kbps MP3), and returns when ffmpeg is done.
pub fn ffmpeg_live_source(source: SocketAddr, seconds: u32, rate: u32) {
    let track = concat!(env!("CARGO_MANIFEST_DIR"), "/music/01-morning-tone.mp3");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-t", &seconds.to_string()])
        .args(["-i", track, "-c:a", "libmp3lame", "-ar", &rate.to_string()])
        .args(["-b:a", "128k", "-content_type", "audio/mpeg", "-f", "mp3"])
        .arg(format!("icecast://source:hackme@{source}/stream"))
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg source");
    assert!(
        out.status.success(),
        "{rate} Hz ffmpeg source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
