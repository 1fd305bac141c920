#!/usr/bin/env python3
"""Generate tests/fixtures/vad_reference.json: what the reference runtimes say
about the sample speech, chunk by chunk, for voxpipe's VAD tests.

Run once, in a throw-away virtual environment (nothing here is needed by the
build or by CI, which only reads the committed JSON):

    python3 -m venv /tmp/vadref && /tmp/vadref/bin/pip install onnxruntime numpy loudness==0.2.0
    /tmp/vadref/bin/python tools/gen_vad_reference.py > tests/fixtures/vad_reference.json

For each rate (assets/samples/hello.wav at 16 kHz, hello_8k.wav at 8 kHz) it
records, for every whole chunk of the file (512 samples at 16 kHz, 256 at
8 kHz):

- `probabilities`: Silero VAD v6 (assets/silero/silero_vad.onnx) run by
  onnxruntime exactly as the `silero-vad` package's OnnxWrapper and Pipecat's
  SileroOnnxModel run it: samples / 32768 as f32, the last 64 (32) samples of
  the previous input prepended as context, the [2, 1, 128] state carried from
  chunk to chunk, both starting at zero;
- `volumes`: Pipecat 1.14's volume after the chunk (`AudioVolumeTracker`:
  the `loudness` package's integrated loudness of the last 400 ms as
  `sample / 32768` floats, mapped from [-110, -10] LUFS to [0, 1], 0 until
  400 ms are in), before Pipecat's exponential smoothing.
"""
import hashlib
import json
import sys
import wave
from pathlib import Path

import numpy as np
import onnxruntime
import loudness

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "assets/silero/silero_vad.onnx"
INPUTS = {16000: "assets/samples/hello.wav", 8000: "assets/samples/hello_8k.wav"}


def read_wav(path: Path, rate: int) -> np.ndarray:
    with wave.open(str(path)) as f:
        assert f.getframerate() == rate and f.getnchannels() == 1 and f.getsampwidth() == 2
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)


def pipecat_volume(window: np.ndarray, rate: int) -> float:
    """pipecat.audio.utils.calculate_audio_volume, unchanged."""
    level = loudness.integrated_loudness(window.astype(np.float32) / 32768.0, rate)
    return float(max(0.0, min(1.0, (level - -110) / (-10 - -110))))


def main() -> None:
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(MODEL), providers=["CPUExecutionProvider"], sess_options=options
    )
    out = {
        "model": MODEL.relative_to(ROOT).as_posix(),
        "model_sha256": hashlib.sha256(MODEL.read_bytes()).hexdigest(),
        "onnxruntime": onnxruntime.__version__,
        "rates": {},
    }
    for rate, name in INPUTS.items():
        pcm = read_wav(ROOT / name, rate)
        chunk_len = 512 if rate == 16000 else 256
        context_len = chunk_len // 8
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros((1, context_len), dtype=np.float32)
        probabilities, volumes = [], []
        for start in range(0, len(pcm) - chunk_len + 1, chunk_len):
            chunk = pcm[start : start + chunk_len]
            x = np.concatenate((context, (chunk.astype(np.float32) / 32768.0)[None, :]), axis=1)
            prob, state = session.run(
                None, {"input": x, "state": state, "sr": np.array(rate, dtype=np.int64)}
            )
            context = x[:, -context_len:]
            probabilities.append(float(prob[0, 0]))
            # pipecat.audio.volume.AudioVolumeTracker: the last
            # ceil(0.4 * rate) samples, measured once that many are in.
            window_len = int(np.ceil(0.4 * rate))
            end = start + chunk_len
            volumes.append(
                pipecat_volume(pcm[end - window_len : end], rate) if end >= window_len else 0.0
            )
        out["rates"][str(rate)] = {
            "input": name,
            "chunk_samples": chunk_len,
            "probabilities": probabilities,
            "volumes": volumes,
        }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
