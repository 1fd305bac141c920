#!/usr/bin/env python3
"""One Smart Turn v3.2 decision in onnxruntime, as Pipecat 1.14's
LocalSmartTurnAnalyzerV3 makes it, timed for comparison with
`cargo bench --bench smart_turn` on the same machine and clip.

Needs onnxruntime and numpy, and Pipecat's feature code from its wheel:

    python3 -m venv /tmp/ort && /tmp/ort/bin/pip install onnxruntime numpy
    cd /tmp && pip download pipecat-ai==1.14.0 --no-deps && unzip -q pipecat_ai-1.14.0-py3-none-any.whl 'pipecat/*'
    /tmp/ort/bin/python benches/smart_turn_onnxruntime.py /tmp

Session options as Pipecat's (one thread, sequential, all graph
optimisations). Two figures, each the median over 30 calls after 3 to warm
up: `run` is `InferenceSession.run` alone; `decision` adds the int16 to
float conversion, the 8 s window and the log-mel features, the scope of
voxpipe's `end_of_turn_probability`. Both are given in wall-clock time,
then in this thread's CPU time (`time.thread_time`), which a loaded
machine's waits for a core do not inflate.
"""
import importlib.util
import statistics
import sys
import time
import wave
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "assets/smart_turn/smart-turn-v3.2-cpu.onnx"
CLIP = ROOT / "tests/fixtures/smart_turn/complete0_m_16k.wav"
CALLS = 30


def median_ms(call, clock=time.perf_counter) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(CALLS):
        start = clock()
        call()
        times.append((clock() - start) * 1000.0)
    return statistics.median(times)


def main() -> None:
    # The feature module's file itself: importing the `pipecat` package from
    # an unzipped wheel fails (it looks up its own installed metadata).
    path = Path(sys.argv[1]) / "pipecat/audio/turn/smart_turn/_whisper_features.py"
    spec = importlib.util.spec_from_file_location("_whisper_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    compute_whisper_log_mel_features = module.compute_whisper_log_mel_features

    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(MODEL), sess_options=options)
    with wave.open(str(CLIP)) as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)

    def features() -> np.ndarray:
        audio = pcm.astype(np.float32) / 32768.0
        audio = audio[-128000:]
        audio = np.pad(audio, (128000 - audio.size, 0))
        return compute_whisper_log_mel_features(audio, do_normalize=True)[None]

    prepared = features()
    run = median_ms(lambda: session.run(None, {"input_features": prepared}))
    decision = median_ms(lambda: session.run(None, {"input_features": features()}))
    print(f"onnxruntime {ort.__version__}: run {run:.1f} ms, decision {decision:.1f} ms")
    # CPU time of this thread (one intra-op thread: it runs the model), as
    # voxpipe's bench reports it beside the wall clock.
    run = median_ms(lambda: session.run(None, {"input_features": prepared}), time.thread_time)
    decision = median_ms(
        lambda: session.run(None, {"input_features": features()}), time.thread_time
    )
    print(f"CPU time: run {run:.1f} ms, decision {decision:.1f} ms")


if __name__ == "__main__":
    main()
