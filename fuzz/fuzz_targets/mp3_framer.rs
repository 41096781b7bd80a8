#![no_main]
//! The frame splitter on arbitrary bytes arriving in arbitrary pieces: only whole, valid
//! frames that were in the input come out, nothing is lost from the accounting, and (when the
//! caller drains after every push, as ingest does) the split points change nothing. Then the
//! same bytes as garbage between real frames: nothing but real frames comes out.

use cycast::ingest::id3::tag_title;
use cycast::ingest::mp3::{parse_header, silence_frame, FrameHeader, Mp3Framer};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Out {
    frames: Vec<Vec<u8>>,
    skipped: u64,
    resyncs: u64,
}

fn take(framer: &mut Mp3Framer, frames: &mut Vec<Vec<u8>>) {
    while let Some((h, data)) = framer.next_frame() {
        check_frame(&h, data);
        frames.push(data.to_vec());
    }
}

fn check_frame(h: &FrameHeader, data: &[u8]) {
    assert_eq!(
        data.len(),
        h.frame_len,
        "frame length differs from its header"
    );
    assert_eq!(
        parse_header(data).as_ref(),
        Some(h),
        "returned frame does not parse"
    );
}

fn run(stream: &[u8], sizes: &[usize], drain_each_push: bool) -> Out {
    let mut framer = Mp3Framer::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len());
        let n = n.clamp(1, rest.len());
        framer.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
        if drain_each_push {
            take(&mut framer, &mut frames);
        }
    }
    // An empty push is legal and must change nothing.
    framer.push(&[]);
    take(&mut framer, &mut frames);
    framer.finish();
    take(&mut framer, &mut frames);
    assert!(
        framer.next_frame().is_none(),
        "a frame appeared after the end"
    );
    Out {
        frames,
        skipped: framer.skipped_bytes(),
        resyncs: framer.resyncs(),
    }
}

/// Each frame occurs in the input, in order and without overlapping the previous one.
fn assert_in_order_substrings(stream: &[u8], frames: &[Vec<u8>]) {
    let mut from = 0;
    for (k, f) in frames.iter().enumerate() {
        let at = stream[from..]
            .windows(f.len())
            .position(|w| w == &f[..])
            .unwrap_or_else(|| {
                panic!(
                    "frame {k} ({} bytes) is not in the input after {from}",
                    f.len()
                )
            });
        from += at + f.len();
    }
}

/// A real 128 kbps 44.1 kHz stereo frame numbered `n` (distinct payload, never a sync byte).
fn real_frame(n: u32) -> Vec<u8> {
    let mut f = silence_frame(128, 44100, true);
    for (i, b) in f[4..].iter_mut().enumerate() {
        *b = (n as usize * 31 + i * 7) as u8 & 0x7F;
    }
    f[4..8].copy_from_slice(&n.to_be_bytes());
    f
}

/// `garbage` cut into runs (lengths from its own bytes) between runs of real frames: every
/// frame out is a real one, or lies wholly inside one garbage run and fits the real frames'
/// stream (garbage can be made of well-formed frames; it can never swallow real bytes or bring
/// another stream's frames).
fn garbage_between_frames(garbage: &[u8]) {
    let mut stream = Vec::new();
    // (start, end, real) spans of the stream.
    let mut spans = Vec::new();
    let mut rest = garbage;
    let mut n = 0;
    loop {
        for _ in 0..4 {
            let f = real_frame(n);
            n += 1;
            spans.push((stream.len(), stream.len() + f.len(), true));
            stream.extend_from_slice(&f);
        }
        let Some((&len, tail)) = rest.split_first() else {
            break;
        };
        // At most 32 runs (the last takes what is left), so the stream stays small and fast.
        let take = if n >= 32 * 4 {
            tail.len()
        } else {
            (len as usize * 8 + 1).min(tail.len())
        };
        spans.push((stream.len(), stream.len() + take, false));
        stream.extend_from_slice(&tail[..take]);
        rest = &tail[take..];
    }
    let real = parse_header(&real_frame(0)).expect("real frames parse");
    let out = run(&stream, &[], true);
    let mut from = 0;
    for f in &out.frames {
        let at = from
            + stream[from..]
                .windows(f.len())
                .position(|w| w == &f[..])
                .expect("frames come out in input order");
        let end = at + f.len();
        let ok = spans.iter().any(|&(s, e, is_real)| {
            if is_real {
                (s, e) == (at, end)
            } else {
                s <= at && end <= e
            }
        });
        assert!(ok, "a frame at {at}..{end} mixes garbage and real bytes");
        let h = parse_header(f).expect("frames parse");
        assert!(h.same_stream(&real), "a frame of another stream came out");
        from = end;
    }
}

fuzz_target!(|data: &[u8]| {
    // Layout: mode byte, then (mode & 7) piece sizes, then the stream.
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let count = (mode & 7) as usize;
    if data.len() < count {
        return;
    }
    let (sizes, stream) = data.split_at(count);
    // Small pieces (down to one byte) are where resumption bugs live; bit 6 scales them up.
    let scale = if mode & 0x40 != 0 { 64 } else { 1 };
    let sizes: Vec<usize> = sizes.iter().map(|&s| s as usize * scale + 1).collect();
    let drain_each_push = mode & 0x80 == 0;

    let _ = tag_title(stream);

    let out = run(stream, &sizes, drain_each_push);
    assert_in_order_substrings(stream, &out.frames);
    let emitted: u64 = out.frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!(
        emitted + out.skipped,
        stream.len() as u64,
        "emitted + skipped bytes differ from the input length"
    );

    if drain_each_push {
        let whole = run(stream, &[], true);
        assert_eq!(
            out, whole,
            "the result depends on where the input was split"
        );
    }

    garbage_between_frames(stream);
});
