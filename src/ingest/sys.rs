//! The ingest core's only `unsafe`: calls into minimp3's C decoder, which the dead-air
//! detector ([`super::silence`]) uses to measure a live MP3 source's level. Kept apart so each
//! block can be checked by eye.

use minimp3::ffi;

/// Most interleaved samples one MPEG audio frame decodes to (1152 per channel, two channels).
const MAX_SAMPLES: usize = ffi::MINIMP3_MAX_SAMPLES_PER_FRAME as usize;

/// One MP3 decoder: its state and the sample buffer it decodes into, both allocated once when
/// it is made, so decoding a frame allocates nothing.
pub struct Mp3Decoder {
    /// Decoder state and output buffer, boxed: together about 11 KB.
    state: Box<DecoderState>,
}

/// What [`Mp3Decoder`] owns.
struct DecoderState {
    /// minimp3's state: the Layer III bit reservoir and the synthesis filters' history.
    dec: ffi::mp3dec_t,
    /// The samples of the last decoded frame, interleaved.
    pcm: [i16; MAX_SAMPLES],
}

impl Default for Mp3Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Mp3Decoder {
    /// A decoder ready for the first frame of a stream.
    pub fn new() -> Self {
        // Plain numbers and bytes, all zero: what `mp3dec_init` expects to start from.
        let mut state = Box::new(DecoderState {
            dec: ffi::mp3dec_t {
                mdct_overlap: [[0.0; 288]; 2],
                qmf_state: [0.0; 960],
                reserv: 0,
                free_format_bytes: 0,
                header: [0; 4],
                reserv_buf: [0; 511],
            },
            pcm: [0; MAX_SAMPLES],
        });
        // SAFETY: `dec` is a valid, exclusively borrowed `mp3dec_t`; `mp3dec_init` only writes
        // into it.
        unsafe { ffi::mp3dec_init(&mut state.dec) };
        Self { state }
    }

    /// Decodes one whole frame (as the framer hands them over, one call per frame in stream
    /// order, so the bit reservoir carries over) and returns its samples, channels
    /// interleaved. Empty when the frame gives no audio: the decoder is still syncing, or the
    /// frame's main data lies in a reservoir it has not seen.
    pub fn decode(&mut self, frame: &[u8]) -> &[i16] {
        let Ok(len) = i32::try_from(frame.len()) else {
            return &[];
        };
        let state = &mut *self.state;
        let mut info = ffi::mp3dec_frame_info_t {
            frame_bytes: 0,
            frame_offset: 0,
            channels: 0,
            hz: 0,
            layer: 0,
            bitrate_kbps: 0,
        };
        // SAFETY: `frame` is valid for reads of `len` bytes and minimp3 reads no further;
        // `pcm` has room for MINIMP3_MAX_SAMPLES_PER_FRAME samples, the most one call writes;
        // `dec` and `info` are valid and exclusively borrowed for the call, and nothing is
        // kept past it.
        let samples = unsafe {
            ffi::mp3dec_decode_frame(
                &mut state.dec,
                frame.as_ptr(),
                len,
                state.pcm.as_mut_ptr(),
                &mut info,
            )
        };
        let count =
            usize::try_from(samples).unwrap_or(0) * usize::try_from(info.channels).unwrap_or(0);
        &state.pcm[..count.min(MAX_SAMPLES)]
    }
}
