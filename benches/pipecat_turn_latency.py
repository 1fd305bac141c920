"""Pipecat 1.14's side of `benches/turn_latency.rs`: turn latency from the
true end of the user's speech to the bot's first audio, and the turns cut
off, over the same speech and the same fake providers.

    python3 -m venv /tmp/pcvenv
    /tmp/pcvenv/bin/pip install "pipecat-ai[silero,deepgram]==1.14.*"
    cargo bench --bench turn_latency --no-run
    /tmp/pcvenv/bin/python benches/pipecat_turn_latency.py

Options: `--runs N` (3), `--stt segment,stream`, `--profiles
realistic,fast`, `--rates 16000,8000`, `--cases "complete,pause 400,pause
600"`, `--fakes CMD` (default `cargo bench --bench turn_latency --
--serve-fakes`).

The Rust bench, started with `--serve-fakes`, makes the speech (espeak-ng and
sox: a complete sentence, and the same sentence with a 400 or 600 ms
hesitation mid-phrase, 300 ms of silence before and 2.5 s after) and, for
each run, fresh fake providers scripted as its own runs are (transcription
300 ms after its request, or the fake Deepgram's final 300 ms of audio past
each part's end; LLM first token 400 ms; TTS first byte 200 ms; `fast`: 100,
150, 100 ms). It writes the run's WAV and says where the fakes listen.

Pipecat's pipeline is its quickstart's, with its defaults: `stt ▶ user
aggregator ▶ llm ▶ tts ▶ assistant aggregator`, the user aggregator with
`SileroVADAnalyzer()` (confidence 0.7, start 0.2 s, stop 0.2 s, min volume
0.6) and the default user turn strategies (VAD or transcription starts a
turn; Smart Turn v3 `LocalSmartTurnAnalyzerV3` ends it, waiting for the
transcript), `OpenAISTTService` (segment STT: one request per VAD segment)
or `DeepgramSTTService` (streaming), `OpenAILLMService` and
`OpenAITTSService`, all pointed at the fakes. A feeder at the head of the
pipeline pushes the WAV as `InputAudioRawFrame`s of 20 ms, each when its
audio would have been captured (as a transport's input does), and a watcher
after the TTS notes the first `TTSAudioRawFrame`.

Latency is first bot audio minus the speech's true end (as the Rust bench);
a run is cut off when the user turn ended, or bot audio started, before the
last part began (a negative latency: bot audio before the user was done).
`after end` is the first bot audio after the true end (the answer to the
whole sentence when the first half was cut off). Per run, the line also
gives the transcripts the STT gave, the user turns the aggregator ended
(more than one: a reply was started and interrupted) and Smart Turn's
probability of "complete" at each VAD stop (> 0.5 ends the turn once its
transcript is in; otherwise the turn waits for 3 s of silence). Each case
runs `--runs` times; a line gives the median and every run. The WAV holds
2.5 s of silence after the speech; the feeder goes on with silent frames
until the answer comes (at most 6 s after the speech), so Smart Turn's 3 s
fallback is measured, not cut short.

`PIPECAT_LOG=DEBUG` shows Pipecat's log (on stderr).
"""

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import wave

from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    MetricsFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.metrics.metrics import TurnMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.workers.runner import WorkerRunner

FRAME_SECS = 0.02
# How long after the speech the answer is waited for (Smart Turn's own
# fallback is 3 s of silence; the WAV holds 2.5 s).
MAX_WAIT_SECS = 6.0
# OpenAI's TTS speaks 24 kHz PCM (the fake's tone is 24 kHz too).
TTS_RATE = 24_000

logger.remove()
logger.add(sys.stderr, level=os.environ.get("PIPECAT_LOG", "ERROR"))


class Feeder(FrameProcessor):
    """The input: pushes the speech in 20 ms frames, each at its capture
    time, then silence (a microphone stays open) until the bot's answer
    comes or `MAX_WAIT_SECS` have passed since the speech's end."""

    def __init__(self, audio: bytes, rate: int, end_secs: float, seen: dict):
        super().__init__()
        self._audio = audio
        self._rate = rate
        self._end_secs = end_secs
        self._seen = seen
        self.worker: PipelineWorker | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self.create_task(self._feed())

    def _answered(self) -> bool:
        end = self._seen["start"] + self._end_secs
        return any(at >= end for at in self._seen["audio"])

    async def _feed(self):
        step = int(self._rate * FRAME_SECS) * 2
        silence = bytes(step)
        start = time.monotonic()
        self._seen["start"] = start
        i = 0
        while True:
            at = i * step
            chunk = self._audio[at : at + step] if at < len(self._audio) else silence
            if at >= len(self._audio) and (
                self._answered() or i * FRAME_SECS > self._end_secs + MAX_WAIT_SECS
            ):
                break
            # Captured at its end.
            delay = start + (i + 1) * FRAME_SECS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.push_frame(
                InputAudioRawFrame(audio=chunk, sample_rate=self._rate, num_channels=1)
            )
            i += 1
        # Over, as a transport's input ends a session: the worker drains.
        await self.worker.queue_frame(EndFrame())


class Watch(FrameProcessor):
    """Notes when bot audio leaves the TTS, and Smart Turn's verdicts."""

    def __init__(self, seen: dict):
        super().__init__()
        self._seen = seen

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self._seen["audio"].append(time.monotonic())
        elif isinstance(frame, MetricsFrame):
            self._seen["smart_turn"] += [
                d.probability for d in frame.data if isinstance(d, TurnMetricsData)
            ]
        await self.push_frame(frame, direction)


class Transcripts(FrameProcessor):
    """Counts the transcripts the STT gives (VAD segments, for segment STT)."""

    def __init__(self, seen: dict):
        super().__init__()
        self._seen = seen

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            self._seen["transcripts"] += 1
        await self.push_frame(frame, direction)


async def run(fakes: dict, stt_kind: str) -> dict:
    """One turn through Pipecat's pipeline; what it saw, in seconds."""
    with wave.open(fakes["wav"], "rb") as wav:
        rate = wav.getframerate()
        audio = wav.readframes(wav.getnframes())
    seen = {"audio": [], "user_turns": [], "transcripts": 0, "smart_turn": []}
    if stt_kind == "segment":
        stt = OpenAISTTService(api_key="bench", base_url=fakes["openai"])
    else:
        stt = DeepgramSTTService(api_key="bench", base_url=fakes["deepgram"])
    context = LLMContext()
    user, assistant = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )

    @user.event_handler("on_user_turn_stopped")
    async def on_user_turn_stopped(_aggregator, _strategy, _message):
        seen["user_turns"].append(time.monotonic())

    feeder = Feeder(audio, rate, fakes["end_ms"] / 1e3, seen)
    pipeline = Pipeline(
        [
            feeder,
            stt,
            Transcripts(seen),
            user,
            OpenAILLMService(
                api_key="bench",
                base_url=fakes["openai"],
                settings=OpenAILLMService.Settings(
                    system_instruction="You are a helpful assistant."
                ),
            ),
            OpenAITTSService(api_key="bench", base_url=fakes["openai"]),
            Watch(seen),
            assistant,
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=TTS_RATE),
        enable_rtvi=False,
    )
    feeder.worker = worker
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    start = seen["start"]
    end = start + fakes["end_ms"] / 1e3
    last_part = start + fakes["last_part_ms"] / 1e3
    first = seen["audio"][0] if seen["audio"] else None
    after_end = next((at for at in seen["audio"] if at >= end), None)
    return {
        "latency": None if first is None else first - end,
        "after_end": None if after_end is None else after_end - end,
        "cut": any(at < last_part for at in seen["user_turns"])
        or (first is not None and first < last_part),
        "transcripts": seen["transcripts"],
        "user_turns": len(seen["user_turns"]),
        "smart_turn": seen["smart_turn"],
    }


def median_ms(values: list) -> str:
    """The median in ms (a missing value counts as the largest), or `none`."""
    ranked = sorted(values, key=lambda v: float("inf") if v is None else v)
    middle = ranked[len(ranked) // 2]
    return "none" if middle is None else f"{middle * 1e3:.0f} ms"


def shown(values: list) -> str:
    return " ".join("none" if v is None else f"{v * 1e3:.0f}" for v in values)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stt", default="segment,stream")
    parser.add_argument("--profiles", default="realistic,fast")
    parser.add_argument("--rates", default="16000,8000")
    parser.add_argument("--cases", default="complete,pause 400,pause 600")
    parser.add_argument(
        "--fakes", default="cargo bench --bench turn_latency -- --serve-fakes"
    )
    args = parser.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    server = subprocess.Popen(
        shlex.split(args.fakes),
        cwd=repo,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    print(
        "config    stt      profile    rate   speech      median  runs (ms)"
        "          cut off  after end  runs (ms)          transcripts  user turns  Smart Turn p(complete)"
    )
    try:
        for rate in args.rates.split(","):
            for stt_kind in args.stt.split(","):
                for profile in args.profiles.split(","):
                    for case in args.cases.split(","):
                        results = []
                        for _ in range(args.runs):
                            server.stdin.write(f"{profile} {rate} {case}\n")
                            server.stdin.flush()
                            fakes = json.loads(server.stdout.readline())
                            results.append(await run(fakes, stt_kind))
                        latencies = [r["latency"] for r in results]
                        after = [r["after_end"] for r in results]
                        cut = sum(r["cut"] for r in results)
                        transcripts = [r["transcripts"] for r in results]
                        turns = [r["user_turns"] for r in results]
                        verdicts = "; ".join(
                            " ".join(f"{p:.2f}" for p in r["smart_turn"]) for r in results
                        )
                        print(
                            f"pipecat   {stt_kind:<8} {profile:<10} {rate:<6} {case:<11} "
                            f"{median_ms(latencies):>7}  {shown(latencies):<17}  "
                            f"{cut}/{args.runs}      {median_ms(after):>7}    "
                            f"{shown(after):<17}  {transcripts}  {turns}  {verdicts}",
                            flush=True,
                        )
    finally:
        server.stdin.close()
        server.wait()


if __name__ == "__main__":
    asyncio.run(main())
