# cycast configuration.
#
# Every key is optional; a missing key takes the default shown here. Files written for the
# original Cycast load unchanged. Expressions are evaluated, so `64 * 1024` is fine.
# Check a file without starting the server: cycast --check-config FILE

server {
  # IP address both ports bind to. Default "0.0.0.0" (all IPv4 addresses).
  host = "0.0.0.0"

  # Port sources (Mixxx, butt, ffmpeg, ...) connect to with SOURCE or PUT. Default 8000.
  source_port = 8000

  # Port listeners, the status page and the APIs are served on. Default 8001.
  listen_port = 8001

  # Username sources authenticate with (HTTP Basic). Default "source".
  source_user = "source"

  # Password sources authenticate with. Default "hackme": change it, or set
  # CYCAST_SOURCE_PASSWORD / --source-password instead of storing it here. With the
  # default on a host other than loopback, cycast warns in the log and on its status pages.
  # A reload that would bring "hackme" back without this key written is refused.
  source_password = "hackme"

  # Mount path listeners request, e.g. GET /stream. Default "/stream".
  mount_point = "/stream"

  # Listener executors (shards). 0 = one per online CPU core. Default 0.
  shards = 0

  # CPU index the ingest executor (sources, playlist) is pinned to. Default 0.
  ingest_core = 0

  # listen(2) backlog for both sockets. Default 4096.
  listen_backlog = 4096

  # Username for the admin API (/admin/metadata, ...). Default "admin".
  admin_user = "admin"

  # Password for the admin API. Empty disables the admin API. Default "".
  # A reload that would turn the admin API off without this key written is refused.
  # CYCAST_ADMIN_PASSWORD / --admin-password also set it.
  admin_password = ""

  # Memory for io_uring buffers per executor, in KiB. Kept small because the
  # locked-memory limit (RLIMIT_MEMLOCK) usually is. Default 1024.
  io_memory_kib = 1024

  # Reverse proxies (IP addresses) whose X-Forwarded-For header is believed for the
  # listener's address in stats, logs and limits. Default [] (trust nobody).
  trusted_proxies = []
}

buffer {
  # Ring buffer size per mount in MiB, 1 to 1000. Default 20.
  size_mb = 20
}

limits {
  # Bytes of recent audio sent at once to a new listener so playback starts quickly.
  # At most limits.queue_size. Default 65536.
  burst_size = 65536

  # A listener further behind the live stream than this many bytes is slow.
  # At least 16384 and at most half the ring buffer. Default 524288.
  queue_size = 524288

  # What happens to a slow listener: "drop" disconnects it, "skip" jumps it forward
  # to recent audio. Default "drop".
  slow_listener = "drop"

  # Maximum concurrent listeners, 0 = unlimited. When non-zero it overrides
  # advanced.max_listeners. Default 0.
  max_listeners = 0

  # Seconds a client has to send its complete request header. Default 5.0.
  header_timeout = 5.0

  # Largest request header accepted, in bytes, 1024 to 65536. Default 8192.
  max_header_bytes = 8192

  # Kernel send buffer per listener socket in bytes (what `ss -tm` shows as tb), or 0 to
  # derive it per mount: the larger of the mount's burst and 2 s of its bitrate, within
  # 16384 and limits.queue_size (64 KiB at the defaults and 128 kbps). A listener that
  # stops reading fills it within seconds, then is slow after limits.queue_size more
  # bytes. Without it Linux grows the buffer to MBs and a stalled listener holds them for
  # minutes. 0 or 8192 to 67108864; the kernel caps it at 2 x net.core.wmem_max. Default 0.
  send_buffer = 0

  # Seconds a listener may stay connected; then it is ended on a frame boundary and
  # counted with reason="time_limit". 0 = no limit. Default 0.
  max_listener_duration = 0

  # Edges a new listener is sent to with a 302, in turn, when the server or its mount is
  # at its listener limit, instead of a 503; the mount path and query are kept. Relays
  # (User-Agent cycast/… or Icecast…) are never redirected. Base URLs such as
  # "http://edge1:8001". Default [] (answer 503).
  redirect_when_full = []
}

broadcaster {
  # Maximum bytes per published chunk, at least 1024 and at most limits.queue_size.
  # Default 16384.
  chunk_size = 16384

  # Target audio duration per published chunk in milliseconds, 20 to 5000. Each listener
  # gets one send per chunk, so this sets the number of sends per second. Default 400.
  chunk_ms = 400

  # sleep_high, sleep_medium and sleep_low were polling intervals in the original Cycast.
  # They are accepted for compatibility and ignored (a warning names them at startup).
  # sleep_high = 0.0005
  # sleep_medium = 0.001
  # sleep_low = 0.002
}

fanout {
  # How a shard sends chunks to its listeners:
  #   "io_uring" queues the sends of up to 256 listeners and hands them to the kernel in one
  #              system call (per-shard ring, listener sockets as fixed files);
  #   "send"     makes one send system call per listener per chunk.
  # Both deliver the same bytes. If io_uring cannot be set up (old kernel, seccomp profile,
  # io_uring disabled by sysctl) the server uses "send" and logs one warning saying why.
  # Takes effect on reload. Default "io_uring". For measurements only, the environment
  # variables CYCAST_URING_ENTRIES (ring size, default 256) and CYCAST_URING_TASKRUN=coop
  # (COOP_TASKRUN instead of DEFER_TASKRUN) change the ring's setup.
  engine = "io_uring"
}

playlist {
  # Directory the fallback playlist is read from while no source is connected.
  # Default "./music".
  directory = "./music"

  # Play files in random order instead of by name (reshuffled every time the list has
  # played through, never the same track twice in a row). Default true.
  shuffle = true

  # File name endings included in the playlist, compared case-insensitively. Subdirectories
  # are searched too; names starting with "." are ignored. Only MP3 is played: other files
  # are skipped with one warning each. Default [".mp3", ".ogg"].
  extensions = [".mp3", ".ogg"]

  # An .m3u or .m3u8 playlist file to play instead of scanning the directory: one path per
  # line (relative to the file's own directory), "#" lines ignored. The list is played in
  # its own order unless shuffle is true. Empty: scan the directory. Default "".
  file = ""

  # When a live source leaves: true continues the track it interrupted where it stopped,
  # false starts the next track. Default true.
  resume = true

  # Seconds between checks for added or removed files (in the directory or the .m3u file).
  # A check never interrupts the track playing. At least 0.1. Default 10.0.
  rescan_interval = 10.0
}

# Dead-air fallback: a live source that stays silent is treated as gone (a DJ whose
# microphone died). Its mount switches to its playlist or fallback mount, exactly as if the
# source had disconnected, while the source stays connected and its audio keeps being
# measured; once it has sent sound again for 1 s it is back on air, as if it had just
# connected (that first second is not aired). Status pages show "silent": true meanwhile,
# and the metric cycast_source_silent{mount} is 1. Only MP3 sources are measured (each frame
# is decoded); AAC, Ogg and relays are never switched. A mount with neither playlist nor
# fallback keeps airing its source, flagged silent. A mount block's silence_seconds and
# silence_db override these.
silence {
  # Seconds of silence before the switch, 0 to 86400 (fractions allowed); 0 turns the
  # detector and its decoding off. Default 15.
  seconds = 15

  # Level in dBFS (RMS of each decoded frame) below which audio counts as silence, -120 up
  # to (not including) 0. Default -50.
  db = -50
}

metadata {
  # Station name (icy-name header, status page). Default "Cycast Radio".
  station_name = "Cycast Radio"

  # Station description (icy-description header). Default "High-performance internet radio".
  station_description = "High-performance internet radio"

  # Station genre (icy-genre header, status page). Default "Various".
  station_genre = "Various"

  # Station home page (icy-url header). Default "http://localhost:8001".
  station_url = "http://localhost:8001"

  # Send ICY metadata (stream titles) to listeners that ask for it. Default true.
  enable_icy = true

  # Audio bytes between ICY metadata blocks, 1 to 65535. Default 16000.
  icy_metaint = 16000

  # Encoding of ICY titles: "utf-8", or "latin1" for old players that show UTF-8 as
  # mojibake. Default "utf-8".
  icy_charset = "utf-8"
}

advanced {
  # Maximum concurrent listeners, 0 = unlimited. limits.max_listeners wins when
  # non-zero. Default 0.
  max_listeners = 0

  # Seconds without data after which a source is dropped and the playlist resumes.
  # Default 10.0.
  source_timeout = 10.0

  # A mount a source created (one not configured here) is removed this many seconds after
  # its source left and its last listener went, and its ring freed; until then listeners
  # already on it stay, and new ones get 404 while no source feeds it. Configured mounts
  # are never removed. Default 5.0.
  source_mount_grace = 5.0

  # Log at debug level (same as -v). Default false.
  verbose_logging = false

  # Serve /api/stats; when false it answers 403. Default true.
  enable_stats = true

  # Access log in combined log format, one line per finished listener or request:
  # a file path, "-" for standard error, or "" for none. Default "".
  access_log = ""

  # Path of the Prometheus endpoint on the listen port; "" turns it off there.
  # Default "/metrics".
  metrics_path = "/metrics"

  # A separate port that serves only the metrics (bound on server.host), so the
  # public port need not expose them. It serves every series, hidden mounts' too; the
  # listen port's metrics_path leaves hidden mounts out. 0 = none. Default 0.
  metrics_port = 0

  # flask_debug and flask_secret_key configured the original's web framework.
  # They are accepted for compatibility and ignored (a warning names them at startup).
  # flask_debug = false
  # flask_secret_key = "change-me-in-production"
}

# HLS output (RFC 8216 packed audio) of every MP3 and AAC (ADTS) mount:
# GET /<mount>/index.m3u8 and the .mp3/.aac segments it lists, cut on frame
# boundaries from the ring, each with an ID3 tag carrying its timestamp and title.
# Ogg mounts answer 404. Settings apply when a mount is created (restart to change
# those of configured mounts).
hls {
  # Serve HLS. Default true.
  enabled = true

  # Target segment length in seconds (1..60); segments end on the first frame
  # boundary past it. Default 4.
  segment_seconds = 4

  # Segments in the playlist (3..100). Removed segments stay available for their
  # duration plus the playlist's (RFC 8216 6.2.2), so the ring (buffer.size_mb) must
  # hold 2 x window + 2 segments at 320 kbps. Default 6.
  window = 6
}

# More mounts. server.mount_point is the default mount; each `mount` block adds one
# (or configures the default mount itself). Every key is optional and falls back to
# the global setting. None by default; an example:
#
# mount "/live" {
#   source_user       = "dj"           # default server.source_user
#   source_password   = "secret"       # default server.source_password
#   max_listeners     = 0              # 0 = only the server-wide limit
#   burst_size        = 65536          # default limits.burst_size
#   icy_metaint       = 16000          # default metadata.icy_metaint
#   icy_charset       = "utf-8"        # default metadata.icy_charset
#   station_name      = "Live Show"    # and station_description, station_genre, station_url
#   hidden            = false          # true: left out of status pages, the station page,
#                                      # /api/stats and the listen port's /metrics (admin views
#                                      # and advanced.metrics_port still show it)
#   fallback_mount    = "/stream"      # listeners go there while nothing feeds this mount
#   fallback_override = true           # and come back when this mount's source returns
#   max_listener_duration = 3600       # seconds; default limits.max_listener_duration, 0 = none
#   redirect_when_full = ["http://edge1:8001"]  # default limits.redirect_when_full
#   intro       = "/etc/cycast/station-id.mp3"  # every new listener hears it first, then
#                                      # the live stream; MP3 matching the mount's sample
#                                      # rate and channels, else left out with a warning
#   dump_file   = "/var/lib/cycast/live-%Y-%m-%d_%H-%M.mp3"  # record what the mount plays
#                                      # (strftime, local time); errors are logged once and
#                                      # counted in cycast_dump_errors_total, never felt by
#                                      # listeners
#   dump_rotate = 60                   # minutes per file (fractions allowed), 0 = one file
#   silence_seconds = 15               # dead air: default silence.seconds, 0 = off here
#   silence_db      = -50              # default silence.db
#   playlist {                         # a playlist of its own (same keys as above)
#     directory = "./music/live"
#   }
#   hls {                              # HLS settings of its own (same keys as hls below)
#     window = 10
#   }
#   auth {                             # URL authentication of its own, replacing the
#     listener_add = "http://127.0.0.1/paid.php"  # top-level auth block whole
#   }
# }
#
# Formats: audio/mpeg (MP3), audio/aac and audio/aacp (ADTS) and audio/ogg (Vorbis,
# Opus) are cut on frame or page boundaries; Ogg header pages are replayed to every
# listener who joins later. Other types pass through unaligned.

# Relays pull another Icecast-compatible server's stream into a local mount, with its
# ICY titles; the way to serve more listeners than one machine can (see
# deploy/relay/). None by default; an example:
#
# relay "/stream" {
#   url            = "http://origin.example:8001/stream"
#                            # an upstream that wants a login: "http://user:pass@host/mount"
#                            # (percent-escape @ : / in them); sent as Basic auth, and
#                            # shown as user:***@ in logs and --print-config
#   on_demand      = false   # true: pull only while the mount has listeners
#   relay_metadata = true    # take the upstream's titles
#   reconnect_min  = 1.0     # seconds before the first reconnect; doubles per failure
#   reconnect_max  = 30.0    # longest wait between reconnects
#   # https:// upstreams are checked against the system's roots, or:
#   # ca_file      = "/etc/cycast/origin-ca.pem"   # PEM CA(s) of a private origin
#   # tls_verify   = false   # lab use only: any certificate is accepted (logged as a warning)
# }

# Listener authentication by URL, compatible with Icecast 2.4's auth_url, so existing
# backends (AzuraCast, WHMCS modules, custom PHP) work unchanged. Here it covers every
# mount; an `auth` block in a `mount` block replaces it for that mount (one without
# any URL turns authentication off there). See docs/operations.md. None by default; an
# example with the defaults:
#
# auth {
#   listener_add    = "http://127.0.0.1/auth.php"  # asked about every new listener (POST
#                                    # action=listener_add&server=&port=&client=&mount=
#                                    # &user=&pass=&ip=&agent=); "" lets everyone in
#   listener_remove = ""             # told when an authenticated listener leaves (adds
#                                    # duration=<seconds>)
#   mount_add       = ""             # told when a source starts feeding a mount
#   mount_remove    = ""             # and when it leaves
#   username        = ""             # HTTP Basic credentials for the backend; without
#   password        = ""             # them (or user:pass@ in the URL) the listener's own go
#   auth_header     = "icecast-auth-user: 1"   # response header that admits the listener
#   timelimit_header = "icecast-auth-timelimit" # its value: seconds the listener may stay
#   headers         = []             # listener request headers passed on, e.g. ["Referer"],
#   headers_prefix  = "ClientHeader." # as &ClientHeader.Referer=...
#   timeout         = 5              # seconds for the whole exchange
#   on_error        = "deny"         # "deny" or "allow" when the backend is unreachable,
#                                    # times out, answers garbage or a 5xx
#   users_file      = ""             # local accounts: "user:hash" lines, Argon2 PHC hashes
#                                    # (`echo -n PASSWORD | argon2 SALT -id -e`); when set,
#                                    # listeners log in with HTTP Basic before any listener_add
#   max_pending     = 512            # checks in flight per shard; more get a 503
# }
#
# Backends are reached over plain http:// (no https). Use an IP address where you can:
# a host name is resolved on a helper thread for every request.

# HTTPS on its own port, served next to listen_port by every shard (see docs/operations.md).
# None by default; an example:
#
# tls {
#   port           = 8443                # HTTPS listeners, pages and APIs
#   source_port    = 8444                # sources over TLS (ffmpeg -tls 1, Icecast 2.5
#                                        # clients); absent: sources only on source_port
#   certificate    = "/etc/letsencrypt/live/radio.example.org/fullchain.pem"
#   key            = "/etc/letsencrypt/live/radio.example.org/privkey.pem"
#   redirect_pages = false               # true: page requests on the plain port get a 301
#                                        # to HTTPS (streams are not redirected)
#   sni            = []                  # more pairs picked by SNI name:
#                                        # [{ certificate = "...", key = "..." }]
# }
