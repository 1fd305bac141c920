#!/usr/bin/env python3
"""Generate the Smart Turn reference set: short speech clips and what
onnxruntime, run as Pipecat runs it, says about each.

Writes tests/fixtures/smart_turn/*.wav (16 kHz mono 16-bit, the audio the
model sees) and tests/fixtures/smart_turn_reference.json. Run once, in a
throw-away virtual environment (CI only reads the committed files):

    python3 -m venv /tmp/stref && /tmp/stref/bin/pip install onnxruntime numpy
    cd /tmp && pip download pipecat-ai==1.14.0 --no-deps && unzip -q pipecat_ai-1.14.0-py3-none-any.whl 'pipecat/*'
    /tmp/stref/bin/python tools/gen_smart_turn_reference.py /tmp

The argument is where the wheel was unzipped: the features are computed by
Pipecat's own `compute_whisper_log_mel_features`. Needs espeak-ng and sox.

The clips: complete sentences, fragments that stop mid-phrase, and
hesitations ("um", "so, uh"), each spoken by two espeak-ng voices, each at
16 kHz and at 8 kHz upsampled to 16 kHz (as telephone audio reaches the
model), each ending with 200 ms of silence (the VAD's short stop).

For every clip the JSON holds onnxruntime's probability (session options as
Pipecat's LocalSmartTurnAnalyzerV3: one thread, sequential, all graph
optimisations), computed on a CPU with AVX-512 VNNI, where onnxruntime's
int8 sums are exact as voxpipe's are (its AVX2 kernel saturates pairs of
products to int16 and decides 13 of the 80 clips the other way; the
committed `probability_avx2` values are from such a run, kept for the
test's report: this script keeps them when it rewrites the file); for the first two clips it also holds a sample of the
log-mel features (every 97th value of the 80 x 800 matrix, row-major), for
the Rust feature extractor's unit tests.
"""
import hashlib
import json
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "assets/smart_turn/smart-turn-v3.2-cpu.onnx"
OUT_DIR = ROOT / "tests/fixtures/smart_turn"
OUT_JSON = ROOT / "tests/fixtures/smart_turn_reference.json"
FEATURE_STRIDE = 97

TEXTS = {
    "complete": [
        "What time does the pharmacy open tomorrow?",
        "I would like to book a table for two.",
        "Thanks, that is all I needed.",
        "Can you send the invoice to my email?",
        "My account number is four five six seven.",
        "Yes, please cancel the order.",
        "How much does the premium plan cost?",
        "I'm calling about my delivery.",
    ],
    "fragment": [
        "I would like to book a table for",
        "Can you send the invoice to",
        "My account number is four five",
        "The reason I am calling is",
        "I was wondering if you could",
        "So what I need is the",
        "Could you tell me whether the",
        "And after that I want to",
    ],
    "hesitation": [
        "I would like to, um",
        "So, uh",
        "Let me think, hmm",
        "My order number is, uh",
    ],
}
VOICES = ["en-us", "en+f3"]


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def synthesize(text: str, voice: str, via_8k: bool, tmp: Path) -> np.ndarray:
    raw = tmp / "raw.wav"
    out = tmp / "out.wav"
    run("espeak-ng", "-v", voice, "-s", "165", "-w", str(raw), text)
    chain = ["rate", "-v", "8000", "rate", "-v", "16000"] if via_8k else ["rate", "-v", "16000"]
    # Trim espeak's own trailing silence, then append the VAD's 200 ms stop.
    run("sox", str(raw), "-b", "16", "-c", "1", str(out), *chain,
        "reverse", "silence", "1", "0.01", "0.1%", "reverse", "pad", "0.05", "0.2")
    with wave.open(str(out)) as f:
        assert f.getframerate() == 16000 and f.getsampwidth() == 2
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(samples.tobytes())


ARITHMETIC = (
    "exact int32 sums: onnxruntime on a CPU with AVX-512 VNNI (probability); "
    "probability_avx2: its AVX2 kernel, pairs saturated to int16 (an earlier "
    "run on a CPU without VNNI)"
)


def main() -> None:
    if "avx512_vnni" not in Path("/proc/cpuinfo").read_text():
        sys.exit("run on a CPU with AVX-512 VNNI: elsewhere onnxruntime saturates int8 sums")
    # The AVX2 values are kept only for the same model; a clip they do not
    # cover gets none (the test reports them, it does not check them).
    previous = json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() else {"clips": []}
    same_model = previous.get("model_sha256") == hashlib.sha256(MODEL.read_bytes()).hexdigest()
    saturated = {c["name"]: c.get("probability_avx2") for c in previous["clips"]} if same_model else {}
    sys.path.insert(0, sys.argv[1])
    from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(MODEL), sess_options=options)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    clips = []
    features = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, texts in TEXTS.items():
            for t, text in enumerate(texts):
                for v, voice in enumerate(VOICES):
                    for via_8k in (False, True):
                        name = f"{kind}{t}_{'f' if v else 'm'}_{'8k' if via_8k else '16k'}"
                        samples = synthesize(text, voice, via_8k, Path(tmp))
                        write_wav(OUT_DIR / f"{name}.wav", samples)
                        # As LocalSmartTurnAnalyzerV3._predict_endpoint: the
                        # last 8 s, zero-padded at the start.
                        audio = samples.astype(np.float32) / 32768.0
                        audio = audio[-128000:]
                        audio = np.pad(audio, (128000 - audio.size, 0))
                        mel = compute_whisper_log_mel_features(audio, do_normalize=True)
                        out = session.run(None, {"input_features": mel[None]})[0]
                        probability = float(out[0].item())
                        clips.append({
                            "name": name, "kind": kind, "text": text, "voice": voice,
                            "via_8k": via_8k, "probability": probability,
                            "probability_avx2": saturated.get(name),
                        })
                        if len(features) < 2:
                            flat = mel.reshape(-1)
                            features.append({
                                "clip": name,
                                "stride": FEATURE_STRIDE,
                                "values": [float(x) for x in flat[::FEATURE_STRIDE]],
                            })
                        print(f"{name}: {probability:.4f}", file=sys.stderr)
    reference = {
        "model_sha256": hashlib.sha256(MODEL.read_bytes()).hexdigest(),
        "onnxruntime": ort.__version__,
        "arithmetic": ARITHMETIC,
        "clips": clips,
        "features": features,
    }
    OUT_JSON.write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
