//! The fan-out's io_uring: the only `unsafe` of the shard, kept apart so each block can be
//! checked by eye.
//!
//! A [`SendRing`] is one shard's private ring, driven synchronously from the shard's task (the
//! glommio executor has its own ring; this one is separate). Listener sockets sit in a sparse
//! fixed-file table at the slot of their own descriptor number: a number is unique in the
//! process while the socket is open, so the slot is free by construction and needs no
//! bookkeeping in the listener.
//!
//! A [`Batch`] collects the sends of one slice of listeners without handing anything to the
//! kernel; [`Batch::flush`] pushes them all, enters the kernel once and reaps every completion
//! before it returns. The borrow of the bytes lasts as long as the batch, so they cannot change
//! while the kernel may read them, and a batch that is never flushed handed the kernel nothing.

use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use io_uring::{opcode, types, IoUring};

use crate::mount::StreamHeaders;

/// Most pieces one send may have: every ICY piece, plus one where the audio splits between
/// codec headers and the ring's bytes.
pub const MAX_PARTS: usize = super::icy::MAX_PIECES + 1;

/// Most owned buffers one send may point into (a partial ICY block and codec headers).
pub const MAX_OWNERS: usize = 2;

/// Flags of every send: never block (a full socket buffer is `EAGAIN`, retried next chunk) and
/// never raise SIGPIPE.
const SEND_FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// The largest sparse table the kernel accepts.
const MAX_TABLE: u64 = 1 << 20;

/// How completions are delivered to the submitting task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taskrun {
    /// `IORING_SETUP_DEFER_TASKRUN`: completion work runs only when the shard enters the ring.
    Defer,
    /// `IORING_SETUP_COOP_TASKRUN`: no interrupting IPI, work runs at the next kernel entry.
    Coop,
}

/// A buffer one send points into that the batch keeps alive until the send completed.
pub enum Owner {
    /// A shared block (an ICY title block a previous send stopped inside of).
    Block(Rc<[u8]>),
    /// A stream's codec headers (Ogg header pages owed to a joining listener).
    Headers(Arc<StreamHeaders>),
}

impl Owner {
    fn bytes(&self) -> &[u8] {
        match self {
            Owner::Block(block) => block,
            Owner::Headers(headers) => &headers.bytes,
        }
    }
}

/// One piece of a send.
pub enum Part<'a> {
    /// Bytes borrowed for the life of the batch (the shard's validated copy, a title block).
    Borrowed(&'a [u8]),
    /// A range of the bytes of one of the send's kept owners (see [`Batch::push`]).
    Kept {
        /// Index into the owners given with the send.
        owner: usize,
        /// The bytes of that owner.
        range: std::ops::Range<usize>,
    },
}

/// One queued send, preallocated: its iovecs and message header live here while the kernel
/// reads them.
struct Op {
    /// The pieces, in wire order.
    iov: [libc::iovec; MAX_PARTS],
    /// Pieces used.
    count: usize,
    /// The message header of a several-piece send (points at `iov`).
    msg: libc::msghdr,
    /// The socket.
    fd: RawFd,
    /// Buffers pointed into that nothing else keeps alive for the batch.
    owners: [Option<Owner>; MAX_OWNERS],
    /// The completion's result: bytes sent, or a negated errno.
    result: i32,
}

impl Op {
    fn empty() -> Self {
        Self {
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_PARTS],
            count: 0,
            // SAFETY: `msghdr` is a plain C struct of pointers and integers; all-zero is its
            // documented empty value (no name, no iovecs, no control data).
            msg: unsafe { std::mem::zeroed() },
            fd: -1,
            owners: [None, None],
            result: 0,
        }
    }
}

/// One shard's io_uring for listener sends.
pub struct SendRing {
    /// The ring; `None` once a failed submission made it unusable.
    ring: Option<IoUring>,
    /// Size of the fixed-file table.
    table: u32,
    /// Which slots hold their descriptor's socket, one bit each: only those are sent through
    /// the table (a registration that failed falls back to the plain descriptor).
    registered: Box<[u64]>,
    /// The ops of the batch being built or flushed; as many as the ring has entries.
    ops: Box<[Op]>,
    /// `io_uring_enter` calls made.
    submits: u64,
}

impl SendRing {
    /// Sets up a ring of `entries` for a single submitting thread, with a sparse file table as
    /// large as the process may have descriptors.
    pub fn new(entries: u32, taskrun: Taskrun) -> io::Result<Self> {
        let mut builder = IoUring::builder();
        // One task submits; every entry is submitted even if an earlier one fails, so a wait
        // for all completions never waits for entries left in the queue.
        builder.setup_single_issuer().setup_submit_all();
        match taskrun {
            Taskrun::Defer => builder.setup_defer_taskrun(),
            Taskrun::Coop => builder.setup_coop_taskrun(),
        };
        let ring = builder.build(entries)?;
        let table = open_files_limit()?.min(MAX_TABLE) as u32;
        ring.submitter()
            .register_files_sparse(table)
            .map_err(|e| io::Error::new(e.kind(), format!("registering {table} files: {e}")))?;
        let slots = ring.params().sq_entries() as usize;
        Ok(Self {
            ring: Some(ring),
            table,
            registered: vec![0; (table as usize).div_ceil(64)].into_boxed_slice(),
            ops: (0..slots).map(|_| Op::empty()).collect(),
            submits: 0,
        })
    }

    /// Puts a listener socket into the fixed-file table (at the slot of its number). Without a
    /// slot the socket is still sent to by descriptor.
    pub fn register(&mut self, fd: RawFd) {
        if let (Some(ring), Ok(slot)) = (&self.ring, u32::try_from(fd)) {
            if slot < self.table {
                match ring.submitter().register_files_update(slot, &[fd]) {
                    Ok(_) => self.registered[slot as usize / 64] |= 1 << (slot % 64),
                    Err(e) => {
                        tracing::debug!(fd, "listener socket not registered with io_uring: {e}")
                    }
                }
            }
        }
    }

    /// Empties a leaving listener's slot; its socket is only closed once the ring lets go.
    pub fn unregister(&mut self, fd: RawFd) {
        if let (Some(ring), Ok(slot)) = (&self.ring, u32::try_from(fd)) {
            if self.is_registered(slot) {
                let _ = ring.submitter().register_files_update(slot, &[-1]);
                self.registered[slot as usize / 64] &= !(1 << (slot % 64));
            }
        }
    }

    /// Whether `slot` holds its descriptor's socket.
    fn is_registered(&self, slot: u32) -> bool {
        has_bit(&self.registered, slot)
    }

    /// Whether a failed submission made the ring unusable.
    pub fn is_broken(&self) -> bool {
        self.ring.is_none()
    }

    /// `io_uring_enter` calls made so far.
    pub fn submits(&self) -> u64 {
        self.submits
    }

    /// An empty batch whose sends may point into bytes borrowed for `'a`.
    pub fn batch<'a>(&'a mut self) -> Batch<'a> {
        Batch {
            ring: self,
            len: 0,
            _bytes: PhantomData,
        }
    }

    /// The result of op `index` of the last flushed batch: bytes sent or a negated errno.
    pub fn result(&self, index: usize) -> i32 {
        self.ops[index].result
    }
}

/// The sends of one slice, queued but not yet handed to the kernel.
pub struct Batch<'a> {
    /// The ring and its preallocated ops.
    ring: &'a mut SendRing,
    /// Ops queued.
    len: usize,
    /// The bytes the queued iovecs point into are borrowed for `'a`.
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> Batch<'a> {
    /// Whether no more sends fit.
    pub fn is_full(&self) -> bool {
        self.len == self.ring.ops.len()
    }

    /// Ops queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues one send of `parts` to `fd`, keeping `owners` alive until it completed; returns
    /// its index for [`SendRing::result`], or `None` when the batch is full or the parts are
    /// more than one send may have.
    pub fn push(
        &mut self,
        fd: RawFd,
        owners: [Option<Owner>; MAX_OWNERS],
        parts: impl IntoIterator<Item = Part<'a>>,
    ) -> Option<usize> {
        if self.is_full() {
            return None;
        }
        let op = &mut self.ring.ops[self.len];
        op.owners = owners;
        op.count = 0;
        op.fd = fd;
        op.result = 0;
        for part in parts {
            let bytes: &[u8] = match part {
                Part::Borrowed(bytes) => bytes,
                Part::Kept { owner, range } => op
                    .owners
                    .get(owner)
                    .and_then(Option::as_ref)
                    .and_then(|o| o.bytes().get(range))
                    .unwrap_or(&[]),
            };
            if bytes.is_empty() {
                continue;
            }
            if op.count == MAX_PARTS {
                op.owners = [None, None];
                return None;
            }
            // The kernel only reads through this pointer (a send), never writes.
            op.iov[op.count] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            op.count += 1;
        }
        self.len += 1;
        Some(self.len - 1)
    }

    /// Hands every queued send to the kernel with one `io_uring_enter`, waits for all their
    /// completions and records each result. On an error the ring is closed (it is never used
    /// again) and every send without a completion gets `-EIO`.
    pub fn flush(self) -> io::Result<()> {
        let Batch {
            ring: this, len, ..
        } = self;
        if len == 0 {
            return Ok(());
        }
        let Some(ring) = this.ring.as_mut() else {
            for op in &mut this.ops[..len] {
                op.result = -libc::EIO;
            }
            return Err(io::Error::other("the io_uring was closed after an error"));
        };
        // Entries in the queue, each owed one completion.
        let mut queued = 0;
        {
            let mut sq = ring.submission();
            for (index, op) in this.ops[..len].iter_mut().enumerate() {
                let fixed = u32::try_from(op.fd)
                    .ok()
                    .filter(|&slot| has_bit(&this.registered, slot));
                let entry = if op.count <= 1 {
                    let (ptr, size) = match op.count {
                        0 => (std::ptr::null(), 0),
                        _ => (op.iov[0].iov_base as *const u8, op.iov[0].iov_len as u32),
                    };
                    match fixed {
                        Some(slot) => opcode::Send::new(types::Fixed(slot), ptr, size),
                        None => opcode::Send::new(types::Fd(op.fd), ptr, size),
                    }
                    .flags(SEND_FLAGS)
                    .build()
                } else {
                    op.msg.msg_iov = op.iov.as_mut_ptr();
                    op.msg.msg_iovlen = op.count as _;
                    let msg = &op.msg as *const libc::msghdr;
                    match fixed {
                        Some(slot) => opcode::SendMsg::new(types::Fixed(slot), msg),
                        None => opcode::SendMsg::new(types::Fd(op.fd), msg),
                    }
                    .flags(SEND_FLAGS as u32)
                    .build()
                };
                op.result = -libc::EIO;
                // SAFETY: the entry points at `op.iov`/`op.msg` (in `this.ops`, which is not
                // touched until this function returns) and at bytes that are either borrowed
                // for `'a` (outliving this call, which consumed the batch) or held by
                // `op.owners` (dropped only below, after every completion was reaped). A full
                // queue refuses the entry (it is sized for a full batch and empty between
                // flushes, so that does not happen); the send is then retried next chunk.
                if unsafe { sq.push(&entry.user_data(index as u64)) }.is_ok() {
                    queued += 1;
                } else {
                    op.result = -libc::EAGAIN;
                }
            }
        }
        let mut reaped = 0;
        let mut failure = None;
        while reaped < queued {
            this.submits += 1;
            match ring.submit_and_wait(queued - reaped) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            for cqe in ring.completion() {
                if let Some(op) = this.ops.get_mut(cqe.user_data() as usize) {
                    op.result = cqe.result();
                    reaped += 1;
                }
            }
        }
        if failure.is_some() {
            // Entries the kernel never took would point at bytes about to be released: closing
            // the ring discards them. Non-blocking sends complete inline, so none is in flight.
            this.ring = None;
        }
        for op in &mut this.ops[..len] {
            op.owners = [None, None];
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Whether bit `slot` of `bits` is set (out of range: no).
fn has_bit(bits: &[u64], slot: u32) -> bool {
    bits.get(slot as usize / 64)
        .is_some_and(|word| word & (1 << (slot % 64)) != 0)
}

/// The soft limit on open descriptors: every descriptor number is below it.
fn open_files_limit() -> io::Result<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _hard)| soft)
}
