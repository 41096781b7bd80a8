//! Which files the playlist has: every matching file under a directory, or the entries of an
//! `.m3u`/`.m3u8` file.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::PlaylistConfig;

/// Subdirectory depth searched; also stops symlink loops.
const MAX_DEPTH: usize = 16;
/// Largest `.m3u` file read.
const MAX_M3U_BYTES: u64 = 16 * 1024 * 1024;

/// Where the playlist's files are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Listing {
    /// Every matching file under a directory, searched recursively, sorted by path.
    Directory(PathBuf),
    /// The entries of an `.m3u`/`.m3u8` file, in its order.
    M3u(PathBuf),
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listing::Directory(p) | Listing::M3u(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Listing {
    pub(super) fn from_config(cfg: &PlaylistConfig) -> Self {
        if cfg.file.is_empty() {
            Listing::Directory(PathBuf::from(&cfg.directory))
        } else {
            Listing::M3u(PathBuf::from(&cfg.file))
        }
    }

    /// The playable paths right now. Err only when the listing itself cannot be read.
    pub(super) fn scan(&self, extensions: &[String]) -> io::Result<Vec<PathBuf>> {
        match self {
            Listing::Directory(dir) => scan_dir(dir, extensions),
            Listing::M3u(file) => {
                let len = std::fs::metadata(file)?.len();
                if len > MAX_M3U_BYTES {
                    return Err(io::Error::other(format!(
                        "playlist file is {len} bytes, more than {MAX_M3U_BYTES}"
                    )));
                }
                let bytes = std::fs::read(file)?;
                let base = file.parent().unwrap_or(Path::new("."));
                let mut entries = parse_m3u(&String::from_utf8_lossy(&bytes), base);
                // Missing entries drop out, so their appearance later counts as a change.
                entries.retain(|p| p.is_file());
                Ok(entries)
            }
        }
    }
}

/// Whether a file name ends with one of the (lower-cased) endings.
fn has_extension(name: &str, extensions: &[String]) -> bool {
    let name = name.to_lowercase();
    extensions.iter().any(|e| name.ends_with(e.as_str()))
}

/// Files under `root` whose names end with one of `extensions`, sorted. Names starting with
/// "." are skipped (hidden files, macOS `._` resource forks). Err if `root` is unreadable.
fn scan_dir(root: &Path, extensions: &[String]) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), 0usize)];
    let mut at_root = true;
    while let Some((dir, depth)) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if at_root => return Err(e),
            Err(_) => continue,
        };
        at_root = false;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(mut kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(meta) => kind = meta.file_type(),
                    Err(_) => continue,
                }
            }
            if kind.is_dir() {
                if depth < MAX_DEPTH {
                    dirs.push((path, depth + 1));
                }
            } else if kind.is_file() && has_extension(&name, extensions) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The file entries of an M3U/M3U8 playlist: one per line, `#` lines (`#EXTM3U`, `#EXTINF`)
/// ignored, relative paths taken from `base`, `file://` URLs accepted, other URLs (streams)
/// skipped.
pub fn parse_m3u(text: &str, base: &Path) -> Vec<PathBuf> {
    text.trim_start_matches('\u{feff}')
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            // A `file://` path is bytes once decoded: a file name need not be UTF-8.
            let line: std::ffi::OsString = match line.strip_prefix("file://") {
                Some(rest) => std::os::unix::ffi::OsStringExt::from_vec(
                    crate::http::percent_decode_bytes(rest),
                ),
                None if line.contains("://") => return None,
                None => line.into(),
            };
            let path = Path::new(&line);
            Some(if path.is_absolute() {
                path.to_path_buf()
            } else {
                base.join(path)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::playlist::tests::{paths, TempDir};

    #[test]
    fn m3u_parsing() {
        let text = "\u{feff}#EXTM3U\r\n#EXTINF:123,Artist - Song\r\nsong one.mp3\r\n\r\n  sub/two.mp3  \n/abs/three.mp3\nfile:///abs/four%20x.mp3\nhttp://example.com/stream\n# comment\n";
        let got = parse_m3u(text, Path::new("/lists"));
        assert_eq!(
            got,
            paths(&[
                "/lists/song one.mp3",
                "/lists/sub/two.mp3",
                "/abs/three.mp3",
                "/abs/four x.mp3",
            ])
        );
        assert!(parse_m3u("", Path::new("/")).is_empty());
        assert_eq!(
            parse_m3u("file:///a%2\nfile:///b%2B+c", Path::new("/")),
            paths(&["/a%2", "/b++c"])
        );
    }

    /// An escape is `%` and two hex digits. A decoder built on `u8::from_str_radix` alone
    /// also takes a sign, turning `%+1` into byte 0x01 and `%+0` into a NUL inside a path;
    /// `http::percent_decode_bytes`, which the playlist shares, leaves them as they are.
    #[test]
    fn m3u_sign_after_percent_is_not_an_escape() {
        let got = parse_m3u(
            "file:///a%+1b.mp3\nfile:///c%+0d.mp3\nfile:///e%-1f.mp3\n",
            Path::new("/"),
        );
        assert_eq!(got, paths(&["/a%+1b.mp3", "/c%+0d.mp3", "/e%-1f.mp3"]));
        // Beside it, a real escape still decodes to its byte, whatever the charset.
        let latin1: std::ffi::OsString =
            std::os::unix::ffi::OsStringExt::from_vec(b"/caf\xe9%+1.mp3".to_vec());
        assert_eq!(
            parse_m3u("file:///caf%E9%+1.mp3", Path::new("/")),
            [PathBuf::from(latin1)]
        );
    }

    #[test]
    fn scan_is_recursive_filtered_and_sorted() {
        let dir = TempDir::new("scan");
        dir.write("b.mp3", b"x");
        dir.write("a.MP3", b"x");
        dir.write("sub/deeper/c.Mp3", b"x");
        dir.write("notes.txt", b"x");
        dir.write(".hidden.mp3", b"x");
        dir.write(".hidden-dir/d.mp3", b"x");
        dir.write("e.ogg", b"x");
        let exts = vec![".mp3".to_string()];
        let got = scan_dir(&dir.0, &exts).unwrap();
        let rel: Vec<PathBuf> = got
            .iter()
            .map(|p| p.strip_prefix(&dir.0).unwrap().to_path_buf())
            .collect();
        assert_eq!(rel, paths(&["a.MP3", "b.mp3", "sub/deeper/c.Mp3"]));
        assert!(scan_dir(&dir.0.join("missing"), &exts).is_err());
        assert!(has_extension("X.OGG", &[".ogg".into()]));
    }

    #[test]
    fn m3u_listing_resolves_relative_to_the_file_and_drops_missing() {
        let dir = TempDir::new("m3u");
        dir.write("music/one.mp3", b"x");
        dir.write("two.mp3", b"x");
        let list = dir.write(
            "lists/radio.m3u",
            b"#EXTM3U\n../two.mp3\n../music/one.mp3\n../missing.mp3\n",
        );
        let got = Listing::M3u(list).scan(&[]).unwrap();
        let names: Vec<_> = got.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, ["two.mp3", "one.mp3"]);
    }
}
