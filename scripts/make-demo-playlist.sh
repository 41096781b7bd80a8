#!/usr/bin/env bash
# make-demo-playlist.sh — generate the demo playlist in music/.
#
# The repository ships the generated MP3 files so that a fresh machine can
# run the demo (and the frame-parser tests that read them) without an
# encoder. Run this script only to regenerate them, e.g. after changing a
# sound below. Requires ffmpeg built with libmp3lame.
#
# Output: three ~20 s tracks, 44.1 kHz stereo, CBR 128 kbps MP3, each with an
# ID3v2.3 tag (artist "Cycast Demo" + title), an ID3v1 tag and a LAME
# Info frame, so the server's tag/metadata skipping is exercised by real files.
#
# Idempotent: every run rewrites the same files with the same bytes
# (bitexact mode keeps encoder version strings out), writing to a temporary
# file first so an interrupted run never leaves a truncated track behind.
#
# Usage: scripts/make-demo-playlist.sh [output-dir]   (default: <repo>/music)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="${1:-$repo_root/music}"
duration=20
fade=2

command -v ffmpeg >/dev/null 2>&1 || {
    echo "error: ffmpeg not found (apt-get install ffmpeg)" >&2
    exit 1
}
mkdir -p "$out_dir"

# Note envelope: fast attack, exponential decay, restarted every $2 seconds.
# Starting each note from silence hides the phase jump when the pitch changes.
env_expr() { # $1 = note length in seconds, $2 = decay rate
    echo "min(1,mod(t,$1)*40)*exp(-$2*mod(t,$1))"
}

# 1. Morning Tone: a bright C-major arpeggio (C E G C') with a soft octave below.
morning_note="if(eq(mod(floor(t*4),4),0),0,if(eq(mod(floor(t*4),4),1),4,if(eq(mod(floor(t*4),4),2),7,12)))"
morning_f="261.63*pow(2,($morning_note)/12)"
morning_env="$(env_expr 0.25 5)"
morning_l="0.35*$morning_env*(sin(2*PI*$morning_f*t)+0.3*sin(4*PI*$morning_f*t))+0.12*sin(2*PI*130.81*t)"
morning_r="0.35*$morning_env*(sin(2*PI*$morning_f*1.002*t)+0.3*sin(4*PI*$morning_f*t))+0.12*sin(2*PI*130.81*t)"

# 2. Second Signal: soft FM bell pings walking an A-minor pentatonic pattern.
signal_idx="mod(floor(t/0.4)*3,5)"
signal_note="if(eq($signal_idx,0),0,if(eq($signal_idx,1),3,if(eq($signal_idx,2),5,if(eq($signal_idx,3),7,10))))"
signal_f="440*pow(2,($signal_note)/12)"
signal_env="$(env_expr 0.4 6)"
signal_l="0.4*$signal_env*sin(2*PI*$signal_f*t+1.5*$signal_env*sin(2*PI*2*$signal_f*t))"
signal_r="0.4*$signal_env*sin(2*PI*$signal_f*t+1.2*$signal_env*sin(2*PI*3*$signal_f*t))"

# 3. Evening Chord: slow pad cycling Am7 -> Fmaj7 -> Cmaj7 -> G6, 5 s per chord,
#    with a gentle swell per chord and slow tremolo.
chord_i="mod(floor(t/5),4)"
root="if(eq($chord_i,0),220,if(eq($chord_i,1),174.61,if(eq($chord_i,2),261.63,196)))"
third="if(eq($chord_i,0),261.63,if(eq($chord_i,1),220,if(eq($chord_i,2),329.63,246.94)))"
fifth="if(eq($chord_i,0),329.63,if(eq($chord_i,1),261.63,if(eq($chord_i,2),392,293.66)))"
seventh="if(eq($chord_i,0),392,if(eq($chord_i,1),329.63,if(eq($chord_i,2),493.88,329.63)))"
swell="sin(PI*mod(t,5)/5)"
evening_l="0.16*$swell*(1+0.15*sin(2*PI*0.5*t))*(sin(2*PI*$root*t)+sin(2*PI*$third*t)+sin(2*PI*$fifth*t)+0.7*sin(2*PI*$seventh*t))"
evening_r="0.16*$swell*(1+0.15*sin(2*PI*0.5*t+PI))*(sin(2*PI*$root*1.003*t)+sin(2*PI*$third*t)+sin(2*PI*$fifth*1.002*t)+0.7*sin(2*PI*$seventh*t))"

make_track() { # $1 = file name, $2 = title, $3 = left expr, $4 = right expr
    local dest="$out_dir/$1"
    local tmp="$dest.tmp.mp3"
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i "aevalsrc=exprs='$3|$4':s=44100:d=$duration" \
        -af "afade=t=in:d=$fade,afade=t=out:st=$((duration - fade)):d=$fade" \
        -fflags +bitexact -flags:a +bitexact -map_metadata -1 \
        -c:a libmp3lame -b:a 128k -ar 44100 -ac 2 \
        -id3v2_version 3 -write_id3v1 1 -write_xing 1 \
        -metadata artist="Cycast Demo" -metadata title="$2" \
        -metadata album="Cycast Demo Playlist" \
        "$tmp"
    mv -f "$tmp" "$dest"
    echo "wrote $dest ($(wc -c <"$dest") bytes)"
}

make_track 01-morning-tone.mp3 "Morning Tone" "$morning_l" "$morning_r"
make_track 02-second-signal.mp3 "Second Signal" "$signal_l" "$signal_r"
make_track 03-evening-chord.mp3 "Evening Chord" "$evening_l" "$evening_r"
