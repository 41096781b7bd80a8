//! The load generator's only `unsafe`: epoll and the clock tick rate, wrapped so the rest of
//! `load` stays safe. Sockets go through `socket2` and `std`, the open-files limit through
//! the `rlimit` crate, as in the server.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Readable (or peer closed).
pub const READABLE: u32 = libc::EPOLLIN as u32;
/// Writable: a non-blocking connect finished, or send space opened up.
pub const WRITABLE: u32 = libc::EPOLLOUT as u32;
/// Peer shut down its side, or the socket failed.
pub const HANGUP: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// Edge-triggered: one wake-up per change, the caller drains until `WouldBlock`.
pub const EDGE: u32 = libc::EPOLLET as u32;

/// One readiness event: the token given at registration and the event bits.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// Token passed to [`Epoll::add`].
    pub token: u64,
    /// Bitwise OR of [`READABLE`], [`WRITABLE`], [`HANGUP`] bits.
    pub events: u32,
}

/// An epoll instance; closed on drop.
pub struct Epoll {
    /// The epoll file descriptor.
    fd: OwnedFd,
    /// Kernel-filled event array, reused by every wait.
    buf: Vec<libc::epoll_event>,
}

impl Epoll {
    /// Creates an epoll instance that reports up to `batch` events per wait.
    pub fn new(batch: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let buf = vec![libc::epoll_event { events: 0, u64: 0 }; batch.max(1)];
        Ok(Epoll { fd, buf })
    }

    /// Registers `fd` for `events`, reported with `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: both descriptors are open for the duration of the call (one owned by self,
        // one borrowed) and `ev` is a valid epoll_event the kernel only reads.
        let rc = unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` (-1: forever) and returns the ready events.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<impl Iterator<Item = Event> + '_> {
        // SAFETY: `buf` holds `buf.len()` initialised epoll_event slots the kernel may
        // overwrite; it writes at most `maxevents` of them.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr(),
                self.buf.len() as i32,
                timeout_ms,
            )
        };
        let n = if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
            0
        } else {
            n as usize
        };
        // The struct is packed on x86_64: copy fields out by value, never by reference.
        Ok(self.buf[..n].iter().map(|ev| Event {
            token: ev.u64,
            events: ev.events,
        }))
    }
}

/// Clock ticks per second, the unit of utime/stime in `/proc/PID/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes no pointers and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}
