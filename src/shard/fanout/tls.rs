//! The fan-out for a listener on the HTTPS port: the same decisions as a plain listener
//! (`Sender::prepare`: lag, skips, moves), then its missing bytes, with codec headers and ICY
//! blocks where they belong, are sealed into TLS records and sent with one `send`. Ciphertext
//! the socket does not take is the listener's until a later chunk's send finishes it; no new
//! records are sealed meanwhile, so it stays bounded by [`MAX_PLAIN`].

use std::io::ErrorKind;

use super::{Listener, Pass, Sender, Verdict};
use crate::mount::MountId;
use crate::observability::stats::{DisconnectReason, MountCounters};
use crate::ring::Ring;
use crate::shard::icy::{IcyCursor, TitleBlock};

/// Most audio bytes sealed for one listener per chunk: a join burst fits.
const MAX_PLAIN: usize = 64 * 1024;

/// Appends `bytes` to `plain` with ICY blocks interleaved where `icy` says; returns how many
/// of `bytes` went in (fewer when the plan ran out of pieces).
fn interleave(
    plain: &mut Vec<u8>,
    icy: Option<&mut IcyCursor>,
    bytes: &[u8],
    title: &TitleBlock,
) -> usize {
    let Some(icy) = icy else {
        plain.extend_from_slice(bytes);
        return bytes.len();
    };
    let plan = icy.plan(bytes.len(), title);
    let before = plain.len();
    for &piece in plan.pieces() {
        plain.extend_from_slice(icy.piece_bytes(piece, bytes, title));
    }
    icy.commit(&plan, plain.len() - before, title)
}

impl Sender {
    /// Serves one TLS listener with at most one send.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn serve_tls(
        &mut self,
        listener: &mut Listener,
        ring: &Ring,
        title: &TitleBlock,
        mount: MountId,
        edge: u64,
        pass: &mut Pass,
        counters: &mut MountCounters,
    ) -> Verdict {
        // Lag is judged on what was sealed, so a listener that stops reading is dropped or
        // skipped as on the plain port.
        let end = match self.prepare(listener, ring, edge, pass) {
            Ok(end) => Some(end),
            Err(Verdict::Keep) => None,
            Err(verdict) => return verdict,
        };
        let Some(session) = listener.tls.as_mut() else {
            return Verdict::Keep;
        };
        if session.has_pending() {
            return match session.send_pending(&listener.socket) {
                Ok(_) => {
                    pass.sends += 1;
                    Verdict::Keep
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    Verdict::Keep
                }
                Err(_) => Verdict::Remove(DisconnectReason::ClientClosed),
            };
        }
        let Some(end) = end else {
            return Verdict::Keep;
        };
        let Ok(bytes) = self.scratch.view(ring, mount, listener.cursor, end) else {
            return Verdict::Remove(DisconnectReason::Lapped);
        };
        let audio = &bytes[..bytes.len().min(MAX_PLAIN)];
        let plain = &mut self.tls_plain;
        plain.clear();
        let mut headers_done = true;
        if let Some((headers, sent)) = listener.headers.as_mut() {
            // Codec headers count as stream bytes for the ICY interval, as on the plain port.
            let rest = &headers.bytes[*sent..];
            let took = interleave(plain, listener.icy.as_mut(), rest, title);
            *sent += took;
            headers_done = took == rest.len();
        }
        let audio_taken = if headers_done {
            listener.headers = None;
            interleave(plain, listener.icy.as_mut(), audio, title)
        } else {
            0
        };
        if plain.is_empty() {
            return Verdict::Keep;
        }
        match session.seal_and_send(plain, &mut self.tls_cipher, &listener.socket) {
            Ok(_) => {
                pass.sends += 1;
                pass.bytes += audio_taken as u64;
                let reached_end = listener.cursor + audio_taken as u64 == end;
                listener.took_audio(audio_taken, reached_end, counters);
                Verdict::Keep
            }
            Err(_) => Verdict::Remove(DisconnectReason::ClientClosed),
        }
    }
}
