#!/usr/bin/env bash
# Makes assets/samples/hello.wav: three short English utterances separated by
# silences, 16 kHz mono 16-bit, spoken by espeak-ng, and hello_8k.wav, the
# same at the telephone rate (no dither, so it is reproducible). Needs
# espeak-ng and sox.
set -euo pipefail
out=${1:-assets/samples/hello.wav}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=0
for text in "Hello, can you hear me?" "I would like to book a table for two." "Thank you, goodbye."; do
  espeak-ng -v en-us -s 160 -w "$tmp/raw$i.wav" "$text"
  # Trim espeak's own leading and trailing silence, convert to 16 kHz.
  sox "$tmp/raw$i.wav" -r 16000 -c 1 -b 16 "$tmp/u$i.wav" silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse
  i=$((i + 1))
done
sox -n -r 16000 -c 1 -b 16 "$tmp/gap.wav" trim 0 1.5
sox "$tmp/gap.wav" "$tmp/u0.wav" "$tmp/gap.wav" "$tmp/u1.wav" "$tmp/gap.wav" "$tmp/u2.wav" "$tmp/gap.wav" "$out"
sox "$out" -D -r 8000 "${out%.wav}_8k.wav"
soxi -D "$out"
