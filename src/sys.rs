//! The only module with `unsafe`: raw memory of the shared rings and the hand-over of
//! sockets between glommio and plain non-blocking sockets.
//!
//! Everything here is small on purpose so each block can be checked by eye.

use std::io;
use std::net::TcpStream as StdTcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};

/// Anonymous memory mapping that holds one mount's audio ring.
///
/// One thread writes (the ingest core, through the unique `RingWriter`), many read. Reads may
/// race with a write that laps them; callers detect that with the ring's `reserved` offset
/// (re-read after the copy, seqlock style) and throw the copy away, so a raced byte is never
/// used.
pub struct RingMemory {
    /// The mapping itself; kept for its lifetime and raw pointer.
    map: memmap2::MmapRaw,
    /// Length in bytes, cached to bounds-check without touching the map.
    len: usize,
}

impl RingMemory {
    /// Maps `len` bytes of zeroed anonymous memory.
    pub fn new(len: usize) -> io::Result<Self> {
        let map = memmap2::MmapOptions::new().len(len).map_anon()?;
        Ok(Self {
            map: map.into(),
            len,
        })
    }

    /// Copies `src` into the mapping at `offset`. Only the ring's single writer calls this.
    pub fn write_at(&self, offset: usize, src: &[u8]) {
        assert!(
            offset <= self.len && src.len() <= self.len - offset,
            "ring write out of bounds"
        );
        // SAFETY: the range is inside the mapping (asserted above) and `src` is ordinary memory,
        // so the regions cannot overlap. Concurrent readers of this range only copy bytes out
        // with raw copies (no references) and discard the copy when the ring's `reserved`
        // offset shows that a write overlapped it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.map.as_mut_ptr().add(offset),
                src.len(),
            );
        }
    }

    /// Copies bytes at `offset` into `dst`. The result is only meaningful after the caller has
    /// re-read the ring's `reserved` offset and found no write overlapped the copy.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) {
        assert!(
            offset <= self.len && dst.len() <= self.len - offset,
            "ring read out of bounds"
        );
        // SAFETY: the range is inside the mapping (asserted above); `dst` is exclusively
        // borrowed, ordinary memory, so no overlap. A concurrent write may change these bytes
        // while they are copied: the ring's seqlock check after the copy rejects such a copy,
        // and no reference into the mapping is ever created.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }
}

/// Wraps an already bound and listening socket in a glommio listener of this executor.
pub fn glommio_listener(socket: socket2::Socket) -> glommio::net::TcpListener {
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` was just released by `socket`, so the listener becomes its only owner.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
}

/// Takes a connection out of glommio so the fan-out can drive it with plain non-blocking
/// sends. The returned socket shares the connection; the glommio stream is dropped by the
/// caller, which closes only its own descriptor.
pub fn detach_stream(stream: &glommio::net::TcpStream) -> io::Result<StdTcpStream> {
    let raw = stream.as_raw_fd();
    // SAFETY: `stream` owns `raw` and outlives this borrow; the borrow is only used to
    // duplicate the descriptor.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let owned = borrowed.try_clone_to_owned()?;
    let socket = StdTcpStream::from(owned);
    socket.set_nonblocking(true)?;
    Ok(socket)
}
