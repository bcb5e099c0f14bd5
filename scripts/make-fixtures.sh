#!/usr/bin/env bash
# Regenerates the small deterministic test clips in fixtures/clips (FFmpeg 5.1, Debian 12).
# Each clip: a lavfi pattern, a "CAMn WxH@fps" label and a moving white square, 10 s,
# H.264 constrained baseline (like IP/phone cameras), x264 threads=1 + bitexact => byte-stable.
# A/V sync marks: a white box (1/8 of the height, top-right corner) is shown for exactly one
# frame at each whole second, and the audio track (AAC 48 kHz mono, 48 kbit/s, bitexact) is a
# sine tone distinct per camera (amplitude 0.2) plus a click (5 ms of 2 kHz at 0.75) at the same
# instants.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$HERE/fixtures/clips}"
mkdir -p "$OUT"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
DUR=10
# name W H FPS source CRF TONE_HZ
CLIPS=(
  "cam1 640 480 15 testsrc2 34 330"
  "cam4 1280 720 30 smptehdbars 36 440"
  "cam7 180 320 30 testsrc2 32 550"
  "cam8 480 270 30 rgbtestsrc 32 660"
  "cam9 320 240 15 mandelbrot 32 770"
)
for c in "${CLIPS[@]}"; do
  read -r name w h fps src crf tone <<<"$c"
  out="$OUT/${name}_${w}x${h}_${fps}.mp4"
  if [[ -s "$out" && -z "${FORCE:-}" ]]; then continue; fi
  fs=$(( w / 12 )); bs=$(( h / 8 ))
  graph="${src}=size=${w}x${h}:rate=${fps},trim=duration=${DUR},format=yuv420p[bg];
color=c=white:size=${bs}x${bs}:rate=${fps}:duration=${DUR}[sq];
[bg][sq]overlay=x='(W-w)*abs(mod(t/2,2)-1)':y='H-h-4':eval=frame:shortest=1,
drawtext=fontfile=${FONT}:text='${name^^} ${w}x${h}@${fps}':fontsize=${fs}:fontcolor=yellow:box=1:boxcolor=black@0.6:x=(w-text_w)/2:y=(h-text_h)/2,
drawbox=x=${w}-${bs}:y=0:w=${bs}:h=${bs}:color=white:t=fill:enable='eq(mod(n,${fps}),0)',
format=yuv420p[v];
aevalsrc=exprs='0.2*sin(2*PI*${tone}*t)+0.75*sin(2*PI*2000*t)*lt(mod(t,1),0.005)':s=48000:d=${DUR},
aformat=sample_fmts=fltp:channel_layouts=mono[a]"
  ffmpeg -hide_banner -loglevel error -y -filter_complex "$graph" -map '[v]' -map '[a]' \
    -c:v libx264 -threads 1 -preset medium -profile:v baseline -bf 0 -g $(( fps * 2 )) -keyint_min $(( fps * 2 )) \
    -sc_threshold 0 -crf "$crf" -pix_fmt yuv420p -colorspace bt709 -color_primaries bt709 -color_trc bt709 \
    -c:a aac -b:a 48k -ar 48000 -ac 1 -flags:a +bitexact \
    -map_metadata -1 -fflags +bitexact -flags:v +bitexact -movflags +faststart "$out"
done
# the same picture in other containers / as stills
[[ -s "$OUT/cam9_320x240_15.mkv" && -z "${FORCE:-}" ]] || ffmpeg -hide_banner -loglevel error -y -i "$OUT/cam9_320x240_15.mp4" -c copy -fflags +bitexact -map_metadata -1 "$OUT/cam9_320x240_15.mkv"
[[ -s "$OUT/still_160x90.png" && -z "${FORCE:-}" ]] || ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=160x90:rate=1" -frames:v 1 -fflags +bitexact -flags +bitexact "$OUT/still_160x90.png"
[[ -s "$OUT/still_160x120.jpg" && -z "${FORCE:-}" ]] || ffmpeg -hide_banner -loglevel error -y -f lavfi -i "smptebars=size=160x120:rate=1" -frames:v 1 -fflags +bitexact -flags +bitexact "$OUT/still_160x120.jpg"
# a phone clip stored sideways (320x180) with a rotate=90 tag (a display matrix): players show
# it portrait, as cam7 (3 s)
ROT="$OUT/phone_rot90_320x180_30.mp4"
if [[ ! -s "$ROT" || -n "${FORCE:-}" ]]; then
  ffmpeg -hide_banner -loglevel error -y -i "$OUT/cam7_180x320_30.mp4" -t 3 -vf transpose=clock \
    -c:v libx264 -threads 1 -preset medium -profile:v baseline -bf 0 -g 30 -crf 32 -c:a copy \
    -map_metadata -1 -fflags +bitexact -flags:v +bitexact "$ROT.tmp.mp4"
  ffmpeg -hide_banner -loglevel error -y -i "$ROT.tmp.mp4" -c copy -metadata:s:v:0 rotate=90 \
    -fflags +bitexact "$ROT"
  rm -f "$ROT.tmp.mp4"
fi
# corrupt: the first 40 % of a clip, then garbage
if [[ ! -s "$OUT/corrupt.mp4" || -n "${FORCE:-}" ]]; then
  n=$(( $(stat -c %s "$OUT/cam9_320x240_15.mp4") * 2 / 5 ))
  { head -c "$n" "$OUT/cam9_320x240_15.mp4"; head -c 20000 /dev/zero | tr '\0' 'x'; } > "$OUT/corrupt.mp4"
fi
printf 'not a video\n' > "$OUT/not_media.mp4"
du -ch "$OUT"/* | tail -1
