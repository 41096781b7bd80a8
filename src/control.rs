//! Messages between cores. The ingest core tells shards about new data and relays operator
//! actions to them; shards send operator actions they receive (admin API on the listen port) to
//! the ingest core, which owns the sources and fans the rest out to every shard.

use crate::mount::MountId;

/// To a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardMessage {
    /// New data was published on a mount.
    Published(MountId),
    /// Disconnect the listener with this id, if this shard has it.
    Kick(u64),
    /// Move every listener of `from` to `to`.
    Move {
        /// Mount the listeners leave.
        from: MountId,
        /// Mount they join.
        to: MountId,
    },
}

/// To the ingest core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMessage {
    /// Send this to every shard.
    Broadcast(ShardMessage),
    /// Disconnect the live source of a mount.
    KillSource(MountId),
    /// End the playlist's current track on a mount.
    Skip(MountId),
}

/// Actions the admin API asks of the cores that own listeners and sources.
pub trait Control {
    /// Disconnects listener `id`, wherever it is.
    fn kick(&self, id: u64);
    /// Disconnects the live source of `mount`; its listeners stay.
    fn kill_source(&self, mount: MountId);
    /// Moves every listener of `from` to `to`.
    fn move_clients(&self, from: MountId, to: MountId);
    /// Ends the playlist's current track on `mount`.
    fn skip(&self, mount: MountId);
}
