//! ICY metadata for listeners that ask for it (`Icy-MetaData: 1`): after every `metaint` audio
//! bytes comes one metadata block ([`crate::icy`]); a block that repeats the listener's last
//! title is the single byte 0.
//!
//! Interleaving costs no copy of the audio: one send is a `writev` of ring slices with the
//! shard's prebuilt block between them. A send the kernel cuts short, even inside a block, is
//! resumed exactly where it stopped.

use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::rc::Rc;

use crate::icy::{metadata_block, Charset};

/// Most pieces (audio runs and blocks) in one send; more waits for the next send.
pub const MAX_PIECES: usize = 32;

/// The one-byte block meaning "title unchanged".
pub static UNCHANGED: [u8; 1] = [0];

/// A mount's current title as a ready block, shared by the shard's listeners.
#[derive(Debug, Clone)]
pub struct TitleBlock {
    /// Length byte plus padded text.
    pub bytes: Rc<[u8]>,
    /// The mount's `title_version` it was built from.
    pub version: u64,
    /// No title is set: a listener that never had one is sent "unchanged" instead of an empty
    /// title.
    pub is_empty: bool,
}

impl TitleBlock {
    /// Builds the block for `title`.
    pub fn new(title: &str, version: u64, charset: Charset) -> Self {
        Self {
            bytes: metadata_block(title, charset).into(),
            version,
            is_empty: title.is_empty(),
        }
    }
}

/// Where one listener stands in the ICY interleave.
#[derive(Debug)]
pub struct IcyCursor {
    /// Audio bytes between blocks.
    metaint: usize,
    /// Audio bytes still to send before the next block.
    audio_left: usize,
    /// A block a previous send stopped inside of, and how much of it went out.
    partial: Option<(Rc<[u8]>, usize)>,
    /// Title version this listener was last sent; `None` before its first block.
    version: Option<u64>,
}

/// One piece of a planned send.
#[derive(Clone, Copy, Debug)]
pub enum Piece {
    /// `len` bytes of the audio handed to [`IcyCursor::plan`], from `offset`.
    Audio {
        /// Where the run starts in the planned audio.
        offset: usize,
        /// Bytes in the run.
        len: usize,
    },
    /// The rest of the partially sent block ([`IcyCursor::partial_block`]) from `from`.
    Partial {
        /// Offset of the first unsent byte of the block.
        from: usize,
    },
    /// The mount's full title block.
    Title,
    /// The "unchanged" byte.
    Unchanged,
}

/// One planned send: its pieces in wire order. Plain data, so both fan-out engines can keep it
/// until the kernel says how much went out.
#[derive(Clone, Copy)]
pub struct IcyPlan {
    /// The pieces; only the first `count` are meaningful.
    pieces: [Piece; MAX_PIECES],
    /// Number of pieces planned.
    count: usize,
}

impl Default for IcyPlan {
    fn default() -> Self {
        Self {
            pieces: [Piece::Unchanged; MAX_PIECES],
            count: 0,
        }
    }
}

impl IcyPlan {
    /// The planned pieces in wire order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces[..self.count]
    }

    fn push(&mut self, piece: Piece) {
        self.pieces[self.count] = piece;
        self.count += 1;
    }
}

impl IcyCursor {
    /// A listener that just joined: the first block comes after `metaint` audio bytes.
    pub fn new(metaint: usize) -> Self {
        Self {
            metaint,
            audio_left: metaint,
            partial: None,
            version: None,
        }
    }

    /// Makes the next block carry the title whatever was sent before (the listener moved to
    /// another mount, whose title versions are unrelated).
    pub fn forget_title(&mut self) {
        self.version = None;
    }

    /// The block a previous send stopped inside of, whose rest a [`Piece::Partial`] sends.
    pub fn partial_block(&self) -> Option<&Rc<[u8]>> {
        self.partial.as_ref().map(|(block, _)| block)
    }

    /// The bytes of `piece` of a plan made with `audio` and `title`.
    pub fn piece_bytes<'a>(
        &'a self,
        piece: Piece,
        audio: &'a [u8],
        title: &'a TitleBlock,
    ) -> &'a [u8] {
        match piece {
            Piece::Audio { offset, len } => &audio[offset..offset + len],
            Piece::Partial { from } => self.partial_block().map_or(&[], |b| &b[from..]),
            Piece::Title => &title.bytes,
            Piece::Unchanged => &UNCHANGED,
        }
    }

    /// Plans the next send of up to `audio_len` audio bytes with blocks where they belong. The
    /// state changes only in [`commit`](Self::commit), once the kernel said what it took.
    pub fn plan(&self, audio_len: usize, title: &TitleBlock) -> IcyPlan {
        let mut plan = IcyPlan::default();
        let mut audio_left = self.audio_left;
        let mut version = self.version;
        let mut offset = 0;
        if let Some((_, sent)) = &self.partial {
            plan.push(Piece::Partial { from: *sent });
            // The rest of the block ends its interval: audio comes next, not another block.
            audio_left = self.metaint;
        }
        while offset < audio_len && plan.count + 2 <= MAX_PIECES {
            let take = audio_left.min(audio_len - offset);
            if take > 0 {
                plan.push(Piece::Audio { offset, len: take });
                offset += take;
                audio_left -= take;
            }
            if audio_left == 0 {
                if version == Some(title.version) || (version.is_none() && title.is_empty) {
                    plan.push(Piece::Unchanged);
                } else {
                    plan.push(Piece::Title);
                    version = Some(title.version);
                }
                audio_left = self.metaint;
            }
        }
        plan
    }

    /// Takes in that `written` bytes of `plan` (made with `title`) went out; returns the audio
    /// bytes among them (block bytes are not counted).
    pub fn commit(&mut self, plan: &IcyPlan, mut written: usize, title: &TitleBlock) -> usize {
        let mut audio_sent = 0;
        for &piece in plan.pieces() {
            if written == 0 {
                break;
            }
            match piece {
                Piece::Audio { len, .. } => {
                    let took = written.min(len);
                    written -= took;
                    audio_sent += took;
                    self.audio_left -= took;
                }
                Piece::Partial { from } => {
                    let Some((block, _)) = self.partial.take() else {
                        continue;
                    };
                    let len = block.len() - from;
                    let took = written.min(len);
                    written -= took;
                    if took < len {
                        self.partial = Some((block, from + took));
                    } else {
                        self.audio_left = self.metaint;
                    }
                }
                Piece::Title | Piece::Unchanged => {
                    let len = if matches!(piece, Piece::Title) {
                        self.version = Some(title.version);
                        title.bytes.len()
                    } else {
                        UNCHANGED.len()
                    };
                    let took = written.min(len);
                    written -= took;
                    if took < len {
                        self.partial = Some((title.bytes.clone(), took));
                    } else {
                        self.audio_left = self.metaint;
                    }
                }
            }
        }
        audio_sent
    }

    /// Sends as much of `audio` as the socket takes, with blocks where they belong, in one
    /// `writev`. Returns the audio bytes sent (block bytes are not counted).
    pub fn send(
        &mut self,
        socket: &TcpStream,
        audio: &[u8],
        title: &TitleBlock,
    ) -> io::Result<usize> {
        let plan = self.plan(audio.len(), title);
        if plan.count == 0 {
            return Ok(0);
        }
        let mut slices = [IoSlice::new(&[]); MAX_PIECES];
        for (slice, &piece) in slices.iter_mut().zip(plan.pieces()) {
            *slice = IoSlice::new(self.piece_bytes(piece, audio, title));
        }
        let written = (&*socket).write_vectored(&slices[..plan.count])?;
        Ok(self.commit(&plan, written, title))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// Reads a capture back as an ICY client does and returns (audio, titles seen).
    fn parse(capture: &[u8], metaint: usize) -> (Vec<u8>, Vec<String>) {
        let (mut audio, mut titles) = (Vec::new(), Vec::new());
        let mut pos = 0;
        loop {
            let take = metaint.min(capture.len() - pos);
            audio.extend_from_slice(&capture[pos..pos + take]);
            pos += take;
            if pos >= capture.len() {
                break;
            }
            let len = capture[pos] as usize * 16;
            let block = &capture[pos + 1..pos + 1 + len];
            if len > 0 {
                let text =
                    String::from_utf8(block.iter().copied().take_while(|&b| b != 0).collect())
                        .unwrap();
                titles.push(text);
            }
            pos += 1 + len;
        }
        (audio, titles)
    }

    #[test]
    fn interleave_survives_short_writes_inside_blocks() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        client.set_recv_buffer_size(2048).unwrap();
        client
            .connect(&listener.local_addr().unwrap().into())
            .unwrap();
        let client = TcpStream::from(client);
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        // The smallest send buffer and a slow reader: the kernel cuts sends short, inside
        // audio runs and inside blocks.
        socket2::SockRef::from(&server)
            .set_send_buffer_size(1)
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 97];
            loop {
                match (&client).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("{e}"),
                }
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            all
        });
        let audio: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut cursor = IcyCursor::new(1000);
        // Long titles, changed every few intervals, so many blocks are long enough to be cut.
        let titles: Vec<TitleBlock> = (0..40u64)
            .map(|n| TitleBlock::new(&format!("{n} {}", "é".repeat(300)), n + 1, Charset::Utf8))
            .collect();
        let mut sent = 0;
        let mut step = 1;
        while sent < audio.len() {
            let title = &titles[sent / 5_000];
            let end = (sent + step).min(audio.len());
            match cursor.send(&server, &audio[sent..end], title) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
            step = step % 7001 + 1009;
        }
        drop(server);
        let capture = reader.join().unwrap();
        let (got, seen) = parse(&capture, 1000);
        assert_eq!(got, audio);
        let numbers: Vec<u64> = seen
            .iter()
            .map(|t| {
                let text = t.strip_prefix("StreamTitle='").unwrap();
                let (n, rest) = text.split_once(' ').unwrap();
                assert_eq!(rest, format!("{}';", "é".repeat(300)), "block torn");
                n.parse().unwrap()
            })
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        assert_eq!(numbers.first(), Some(&0));
        assert_eq!(numbers.last(), Some(&39));
    }
}
