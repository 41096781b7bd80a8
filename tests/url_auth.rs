//! Listener authentication by URL (Icecast 2.4's `auth_url`) against a small HTTP backend on
//! loopback that records every POST and answers as the test tells it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// One POST the backend received.
#[derive(Debug, Clone)]
struct Post {
    /// Request line and headers.
    head: String,
    /// The form body.
    body: String,
}

impl Post {
    fn action(&self) -> &str {
        self.param("action").unwrap_or("")
    }

    /// A body parameter, still escaped.
    fn param(&self, name: &str) -> Option<&str> {
        self.body
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }
}

/// What the backend sends back for a POST.
enum Reply {
    /// This response, whole.
    Send(String),
    /// Nothing: the connection is held open until the test ends.
    Hang,
}

type Responder = dyn Fn(&Post) -> Reply + Send + Sync;

/// The auth backend: one thread per connection, so slow answers overlap.
struct Backend {
    addr: SocketAddr,
    posts: Arc<(Mutex<Vec<Post>>, Condvar)>,
}

impl Backend {
    fn start(respond: impl Fn(&Post) -> Reply + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let posts: Arc<(Mutex<Vec<Post>>, Condvar)> = Arc::default();
        let respond: Arc<Responder> = Arc::new(respond);
        let recorded = posts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let (recorded, respond) = (recorded.clone(), respond.clone());
                std::thread::spawn(move || serve(conn, &recorded, &*respond));
            }
        });
        Backend { addr, posts }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until `n` POSTs came; panics after `timeout`.
    fn wait_posts(&self, n: usize, timeout: Duration) -> Vec<Post> {
        let (lock, cond) = &*self.posts;
        let deadline = Instant::now() + timeout;
        let mut posts = lock.lock().unwrap();
        while posts.len() < n {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("{} of {n} POSTs arrived: {posts:#?}", posts.len()));
            posts = cond.wait_timeout(posts, left).unwrap().0;
        }
        posts.clone()
    }

    /// Waits for the first POST with `action`.
    fn wait_action(&self, action: &str, timeout: Duration) -> Post {
        let deadline = Instant::now() + timeout;
        loop {
            let posts = self.posts.0.lock().unwrap().clone();
            if let Some(post) = posts.iter().find(|p| p.action() == action) {
                return post.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {action} POST; got {posts:#?}"
            );
            self.wait_posts(posts.len() + 1, deadline - Instant::now());
        }
    }
}

fn serve(mut conn: TcpStream, recorded: &(Mutex<Vec<Post>>, Condvar), respond: &Responder) {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = all.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&all[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while all.len() < head_end + length {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    let post = Post {
        head,
        body: String::from_utf8_lossy(&all[head_end..]).into_owned(),
    };
    // Recorded before answering, so a test sees checks that are still waiting.
    {
        let (lock, cond) = recorded;
        lock.lock().unwrap().push(post.clone());
        cond.notify_all();
    }
    match respond(&post) {
        Reply::Send(text) => {
            let _ = conn.write_all(text.as_bytes());
        }
        Reply::Hang => {
            let _ = conn.read(&mut buf);
        }
    }
}

/// The answer that admits a listener, plus `extra` header lines.
fn admit(extra: &str) -> Reply {
    Reply::Send(format!(
        "HTTP/1.1 200 OK\r\nicecast-auth-user: 1\r\n{extra}Content-Length: 0\r\n\r\n"
    ))
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// No playlist: only the test source feeds `/stream`.
const BASE: &str = r#"
buffer { size_mb = 4 }
limits {
  queue_size = 131072
  burst_size = 16384
}
broadcaster { chunk_ms = 100 }
playlist { directory = "/nonexistent/cycast-test-music" }
"#;

/// A source on `/stream` sending frames in real time until the flag is cleared.
fn live_source(server: &Server) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let mut source = Source::mp3(server.source, "/stream");
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
    let feeder = std::thread::spawn(move || {
        let mut next = 1;
        while flag.load(Ordering::Relaxed) {
            source.send_frames(next, 4, 1.0);
            next += 4;
        }
    });
    (running, feeder)
}

#[test]
fn requests_carry_icecasts_parameters_byte_for_byte() {
    let backend = Backend::start(|_| admit(""));
    // A name, not an address: resolved off the shard, each address tried.
    let by_name = format!("http://localhost:{}/mount", backend.addr.port());
    let config = format!(
        "{BASE}auth {{\n  listener_add = \"{}\"\n  listener_remove = \"{}\"\n  mount_add = \"{}\"\n  mount_remove = \"{}\"\n  username = \"cycast\"\n  password = \"s3cret\"\n  headers = [\"Referer\", \"X-Absent\"]\n}}\n",
        backend.url("/auth.php?station=7"),
        backend.url("/remove"),
        by_name,
        backend.url("/mount"),
    );
    let server = Server::start(&config);
    let port = server.listen.port();

    // A source coming and going is announced.
    let source = Source::mp3(server.source, "/stream");
    let added = backend.wait_action("mount_add", Duration::from_secs(10));
    assert_eq!(
        added.body,
        format!("action=mount_add&mount=%2Fstream&server=127%2E0%2E0%2E1&port={port}")
    );
    let host = format!("\r\nHost: localhost:{}\r\n", backend.addr.port());
    assert!(added.head.contains(&host), "{}", added.head);
    drop(source);
    let removed = backend.wait_action("mount_remove", Duration::from_secs(10));
    assert_eq!(
        removed.body,
        format!("action=mount_remove&mount=%2Fstream&server=127%2E0%2E0%2E1&port={port}")
    );

    let connected = Instant::now();
    let mut listener = Listener::connect_with(
        server.listen,
        "/stream?token=a%20b&x=1",
        "Referer: http://site.example/page?a=b c\r\n",
    );
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    let add = backend.wait_action("listener_add", Duration::from_secs(10));
    let client = add.param("client").unwrap().to_string();
    assert!(client.parse::<u64>().is_ok(), "client={client}");
    assert_eq!(
        add.body,
        format!(
            "action=listener_add&server=127%2E0%2E0%2E1&port={port}&client={client}\
             &mount=%2Fstream%3Ftoken%3Da%2520b%26x%3D1&user=&pass=&ip=127%2E0%2E0%2E1\
             &agent=cycast%2Dtest&ClientHeader%2EReferer=http%3A%2F%2Fsite%2Eexample%2Fpage%3Fa%3Db%20c"
        )
    );
    assert!(
        add.head.starts_with("POST /auth.php?station=7 HTTP/1."),
        "{}",
        add.head
    );
    let head = &add.head;
    assert!(
        head.contains("\r\nContent-Type: application/x-www-form-urlencoded\r\n"),
        "{head}"
    );
    // cycast:s3cret
    assert!(
        head.contains("\r\nAuthorization: Basic Y3ljYXN0OnMzY3JldA==\r\n"),
        "{head}"
    );

    // Gone after two seconds and a bit: the backend hears how long it stayed.
    listener.read_for(Duration::from_millis(2200));
    drop(listener);
    let remove = backend.wait_action("listener_remove", Duration::from_secs(10));
    let stayed = connected.elapsed().as_secs();
    let duration: u64 = remove.param("duration").unwrap().parse().unwrap();
    assert!(
        (2..=stayed).contains(&duration),
        "duration={duration}, stayed {stayed} s"
    );
    assert_eq!(
        remove.body,
        format!(
            "action=listener_remove&server=127%2E0%2E0%2E1&port={port}&client={client}\
             &mount=%2Fstream%3Ftoken%3Da%2520b%26x%3D1&user=&pass=&duration={duration}\
             &ip=127%2E0%2E0%2E1&agent=cycast%2Dtest"
        )
    );
    assert!(
        remove.head.starts_with("POST /remove HTTP/1."),
        "{}",
        remove.head
    );
}

#[test]
fn a_refused_listener_gets_401_and_the_backends_message_is_logged_escaped() {
    let backend = Backend::start(|post| {
        if post.param("pass") == Some("right") {
            admit("")
        } else {
            Reply::Send(
                "HTTP/1.0 200 OK\r\nicecast-auth-user: 0\r\nicecast-auth-message: bad \"token\"\r\n\r\n"
                    .into(),
            )
        }
    });
    let config = format!(
        "{BASE}mount \"/stream\" {{\n  auth {{ listener_add = \"{}\" }}\n}}\n",
        backend.url("/")
    );
    let server = Server::start(&config);
    let (head, _) = server.get("/stream");
    assert!(head.starts_with("HTTP/1.0 401"), "{head}");
    assert!(head.contains("WWW-Authenticate: Basic"), "{head}");
    // The listener's own credentials go to the backend, which lets this one in.
    let listener = Listener::connect_with(
        server.listen,
        "/stream",
        "Authorization: Basic Ym9iOnJpZ2h0\r\n", // bob:right
    );
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    let posts = backend.wait_posts(2, Duration::from_secs(5));
    assert_eq!(posts[1].param("user"), Some("bob"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains(r#"bad \"token\""#) {
        assert!(
            Instant::now() < deadline,
            "message not logged:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_backends_time_limit_ends_the_listener() {
    let backend = Backend::start(|_| admit("icecast-auth-timelimit: 2\r\n"));
    // The mount's own limit is longer: the backend's, shorter, wins.
    let config = format!(
        "{BASE}mount \"/stream\" {{ max_listener_duration = 600 }}\nauth {{ listener_add = \"{}\" }}\n",
        backend.url("/")
    );
    let server = Server::start(&config);
    let (running, feeder) = live_source(&server);
    let joined = Instant::now();
    let mut listener = Listener::connect(server.listen, "/stream");
    assert!(
        listener.head.starts_with("HTTP/1.0 200"),
        "{}",
        listener.head
    );
    assert!(
        listener.closed_within(Duration::from_secs(15)),
        "the listener was not ended at the backend's time limit"
    );
    assert!(
        joined.elapsed() >= Duration::from_secs(2),
        "ended before its time"
    );
    assert!(!listener.body.is_empty(), "the listener got no audio");
    let offsets = walk_frames(&listener.body)
        .unwrap_or_else(|at| panic!("capture is not a frame sequence at byte {at}"));
    assert_eq!(
        offsets.last().unwrap() + FRAME_LEN,
        listener.body.len(),
        "cut inside a frame"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.disconnects("time_limit") != 1.0 {
        assert!(
            Instant::now() < deadline,
            "time_limit disconnect not counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    running.store(false, Ordering::Relaxed);
    feeder.join().unwrap();
}

#[test]
fn on_error_decides_for_unreachable_slow_and_garbled_backends() {
    let slow = Backend::start(|_| Reply::Hang);
    let garbled = Backend::start(|_| Reply::Send("<html>maintenance</html>\r\n\r\n".into()));
    let failing = Backend::start(|_| {
        Reply::Send("HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".into())
    });
    // Credentials in a URL stay out of the log.
    let unreachable = format!("http://user:pw-in-url@127.0.0.1:{}/", closed_port());
    let mount = |name: &str, url: &str, on_error: &str| {
        format!("mount \"{name}\" {{\n  auth {{\n    listener_add = \"{url}\"\n    on_error = \"{on_error}\"\n    timeout = 0.5\n  }}\n}}\n")
    };
    let config = [
        BASE.to_string(),
        mount("/down-deny", &unreachable, "deny"),
        mount("/down-allow", &unreachable, "allow"),
        mount("/slow-deny", &slow.url("/"), "deny"),
        mount("/slow-allow", &slow.url("/"), "allow"),
        mount("/garbled-deny", &garbled.url("/"), "deny"),
        mount("/garbled-allow", &garbled.url("/"), "allow"),
        mount("/failing-deny", &failing.url("/"), "deny"),
        mount("/failing-allow", &failing.url("/"), "allow"),
    ]
    .concat();
    let server = Server::start(&config);
    for backend in ["down", "slow", "garbled", "failing"] {
        let denied = Listener::connect(server.listen, &format!("/{backend}-deny"));
        assert!(
            denied.head.starts_with("HTTP/1.0 401"),
            "{backend}: {}",
            denied.head
        );
        let allowed = Listener::connect(server.listen, &format!("/{backend}-allow"));
        assert!(
            allowed.head.starts_with("HTTP/1.0 200"),
            "{backend}: {}",
            allowed.head
        );
    }
    assert_eq!(slow.wait_posts(2, Duration::from_secs(5)).len(), 2);
    let log = server.log();
    assert!(log.contains("http://user:***@127.0.0.1:"), "{log}");
    assert!(!log.contains("pw-in-url"), "{log}");
}

#[test]
fn checks_beyond_max_pending_get_503() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let held = gate.clone();
    let backend = Backend::start(move |_| {
        let (open, cond) = &*held;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cond.wait(open).unwrap();
        }
        admit("")
    });
    let config = format!(
        "{BASE}server {{ shards = 1 }}\nauth {{\n  listener_add = \"{}\"\n  max_pending = 1\n}}\n",
        backend.url("/")
    );
    let server = Server::start(&config);
    let listen = server.listen;
    let first = std::thread::spawn(move || Listener::connect(listen, "/stream").head);
    // Once the first check is at the backend, the shard has no room for another.
    backend.wait_posts(1, Duration::from_secs(10));
    let (head, _) = server.get("/stream");
    assert!(head.starts_with("HTTP/1.0 503"), "{head}");
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let head = first.join().unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
}

#[test]
fn two_hundred_listeners_wait_for_a_slow_backend_while_others_keep_streaming() {
    const WAITING: usize = 200;
    // The first listener is let in at once; the others wait until the test opens the gate.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let held = gate.clone();
    let backend = Backend::start(move |post| {
        if post.param("agent") != Some("cycast%2Dtest") {
            let (open, cond) = &*held;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cond.wait(open).unwrap();
            }
        }
        admit("")
    });
    let config = format!(
        "{BASE}auth {{\n  listener_add = \"{}\"\n  timeout = 60\n}}\n",
        backend.url("/")
    );
    let server = Server::start(&config);
    let (running, feeder) = live_source(&server);
    let mut existing = Listener::connect(server.listen, "/stream");
    assert!(
        existing.head.starts_with("HTTP/1.0 200"),
        "{}",
        existing.head
    );
    existing.read_at_least(1, Duration::from_secs(10));

    let listen = server.listen;
    let waiting: Vec<_> = (0..WAITING)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(listen).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                s.write_all(b"GET /stream HTTP/1.0\r\nUser-Agent: waiting\r\n\r\n")
                    .unwrap();
                read_head(&mut s)
            })
        })
        .collect();
    backend.wait_posts(WAITING + 1, Duration::from_secs(60));
    // Every check is now in flight at once: the shards must still be streaming.
    let before = existing.body.len();
    existing.read_at_least(before + 4 * FRAME_LEN, Duration::from_secs(10));

    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for handle in waiting {
        let head = handle.join().unwrap();
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    }
    let before = existing.body.len();
    existing.read_at_least(before + 4 * FRAME_LEN, Duration::from_secs(10));
    running.store(false, Ordering::Relaxed);
    feeder.join().unwrap();
}

/// An Argon2id PHC hash of `password`, with small costs so the test is quick.
fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(64, 1, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::from_b64("dGVzdHNhbHR0ZXN0").unwrap();
    argon
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

#[test]
fn local_accounts_admit_the_right_password_only() {
    let accounts = tempfile::tempdir().unwrap();
    let users = accounts.path().join("listeners");
    let file = format!(
        "# user:hash\nalice:{}\nbob:{}\n",
        argon2_hash("open sesame"),
        argon2_hash("builder")
    );
    assert!(!file.contains("open sesame"), "the file holds hashes only");
    std::fs::write(&users, file).unwrap();
    let config = format!(
        "{BASE}mount \"/stream\" {{\n  auth {{ users_file = \"{}\" }}\n}}\n",
        users.display()
    );
    let server = Server::start(&config);
    let basic = |user: &str, pass: &str| {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Authorization: Basic {token}\r\n")
    };
    let right = Listener::connect_with(server.listen, "/stream", &basic("alice", "open sesame"));
    assert!(right.head.starts_with("HTTP/1.0 200"), "{}", right.head);
    let wrong = Listener::connect_with(server.listen, "/stream", &basic("alice", "builder"));
    assert!(wrong.head.starts_with("HTTP/1.0 401"), "{}", wrong.head);
    let stranger = Listener::connect_with(server.listen, "/stream", &basic("mallory", "builder"));
    assert!(
        stranger.head.starts_with("HTTP/1.0 401"),
        "{}",
        stranger.head
    );
    let (missing, _) = server.get("/stream");
    assert!(missing.starts_with("HTTP/1.0 401"), "{missing}");
    assert!(missing.contains("WWW-Authenticate: Basic"), "{missing}");
    // Accounts added to the file count at once.
    std::fs::write(&users, format!("carol:{}\n", argon2_hash("new"))).unwrap();
    let added = Listener::connect_with(server.listen, "/stream", &basic("carol", "new"));
    assert!(added.head.starts_with("HTTP/1.0 200"), "{}", added.head);
}
