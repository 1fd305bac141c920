#!/usr/bin/env python3
"""Silero VAD v6 per chunk in onnxruntime, timed the way `cargo bench --bench vad`
times voxpipe's forward pass, for a side-by-side comparison on one machine.

Needs onnxruntime and numpy (not needed by voxpipe itself):

    python3 -m venv /tmp/ort && /tmp/ort/bin/pip install onnxruntime numpy
    /tmp/ort/bin/python benches/silero_onnxruntime.py

Like the Rust benchmark it cycles through the chunks of the sample speech
with the state carried from chunk to chunk, runs batches of calls, and
reports the median over batches of the time per call. Two figures per rate:
`run` is `InferenceSession.run` alone (inputs prepared beforehand);
`pipecat` adds what Pipecat's SileroOnnxModel does around it per chunk
(int16 to float32, prepend the context, keep the new context), the same
scope as voxpipe's `voice_confidence`. Sessions use one thread, as Pipecat's.
"""
import statistics
import time
import wave
from pathlib import Path

import numpy as np
import onnxruntime

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "assets/silero/silero_vad.onnx"
BATCH = 200
BATCHES = 100


def speech(name: str) -> np.ndarray:
    with wave.open(str(ROOT / "assets/samples" / name)) as f:
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)


def median_per_call(call, batches=BATCHES, batch=BATCH) -> float:
    for _ in range(batch):
        call()  # warm up
    per_call = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(batch):
            call()
        per_call.append((time.perf_counter_ns() - start) / batch / 1000.0)
    return statistics.median(per_call)


def main() -> None:
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(MODEL), providers=["CPUExecutionProvider"], sess_options=options
    )
    print(f"onnxruntime {onnxruntime.__version__}, {MODEL.name}")
    for rate, name in [(16000, "hello.wav"), (8000, "hello_8k.wav")]:
        pcm = speech(name)
        chunk_len = 512 if rate == 16000 else 256
        context_len = chunk_len // 8
        chunks = [pcm[i : i + chunk_len] for i in range(0, len(pcm) - chunk_len + 1, chunk_len)]
        sr = np.array(rate, dtype=np.int64)
        prepared = [
            np.concatenate((np.zeros((1, context_len), np.float32), (c.astype(np.float32) / 32768.0)[None, :]), axis=1)
            for c in chunks
        ]
        state = {"state": np.zeros((2, 1, 128), np.float32), "context": np.zeros((1, context_len), np.float32), "i": 0}

        def run_only():
            x = prepared[state["i"] % len(prepared)]
            state["i"] += 1
            _, state["state"] = session.run(None, {"input": x, "state": state["state"], "sr": sr})

        def pipecat_call():
            chunk = chunks[state["i"] % len(chunks)]
            state["i"] += 1
            audio = np.frombuffer(chunk.tobytes(), np.int16).astype(np.float32) / 32768.0
            x = np.concatenate((state["context"], audio[None, :]), axis=1)
            out, state["state"] = session.run(None, {"input": x, "state": state["state"], "sr": sr})
            state["context"] = x[..., -context_len:]
            return out

        run_us = median_per_call(run_only)
        pipecat_us = median_per_call(pipecat_call)
        print(f"silero_chunk/{rate // 1000}k  run {run_us:.1f} us  pipecat {pipecat_us:.1f} us  (median per call)")


if __name__ == "__main__":
    main()
