"""Pipecat 1.14's counterpart of `pipelines/parrot.toml` over Twilio Media
Streams: the server side of the side-by-side in `benches/twilio_load.rs`.

    python3 -m venv /tmp/pcvenv
    /tmp/pcvenv/bin/pip install "pipecat-ai[silero,websocket]==1.14.*" uvicorn
    cargo bench --bench twilio_load -- --calls 10,20 --runs 3 --utterance-gap-ms 100 \
        --external "/tmp/pcvenv/bin/python benches/pipecat_twilio_parrot.py"

One FastAPI/uvicorn process serves `/twilio/ws`: per connection it reads
Twilio's `connected` and `start`, then runs Pipecat's own pieces as its
Twilio examples do (`FastAPIWebsocketTransport` with `TwilioFrameSerializer`,
the pipeline at 16 kHz as voxpipe's parrot, `VADProcessor` with
`SileroVADAnalyzer` at its defaults, a `PipelineWorker` at its defaults but
without RTVI, which no phone call uses), and a parrot processor that repeats
each utterance when the VAD says the user stopped, starting 0.5 s before
the VAD's start, as voxpipe's parrot does; speech over a reply interrupts
it. Twilio's `stop` ends the task, so the socket closes as voxpipe's does.
Logging is at WARNING, as the Rust server's is at `warn`.

It prints `listening on 127.0.0.1:PORT` on stderr once it accepts
connections: the load generator reads the address from that line.
"""

import asyncio
import json
import socket
import sys

import uvicorn
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner

SAMPLE_RATE = 16_000
# Audio kept from before the VAD's start (it starts after 0.2 s of speech).
LOOK_BACK_BYTES = SAMPLE_RATE * 2 // 2

logger.remove()
logger.add(sys.stderr, level="WARNING")


class Parrot(FrameProcessor):
    """Repeats each utterance once the VAD says the user stopped."""

    def __init__(self):
        super().__init__()
        self._recent = bytearray()
        self._utterance: bytearray | None = None
        self._bot_speaking = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            if self._utterance is not None:
                self._utterance += frame.audio
            else:
                self._recent += frame.audio
                del self._recent[:-LOOK_BACK_BYTES]
            return
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._utterance = bytearray(self._recent)
            self._recent.clear()
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._utterance:
            audio, self._utterance = bytes(self._utterance), None
            await self.push_frame(
                OutputAudioRawFrame(audio=audio, sample_rate=SAMPLE_RATE, num_channels=1)
            )
        await self.push_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame) and self._bot_speaking:
            # Speech over the reply interrupts it (voxpipe's barge-in).
            await self.broadcast_interruption()


class StoppingTwilioSerializer(TwilioFrameSerializer):
    """Twilio's serializer, with `stop` ending the pipeline."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.worker: PipelineWorker | None = None

    async def deserialize(self, data):
        if '"event":"stop"' in data and self.worker is not None:
            await self.worker.queue_frame(EndFrame())
            return None
        return await super().deserialize(data)


app = FastAPI()


@app.websocket("/twilio/ws")
async def twilio_stream(websocket: WebSocket):
    await websocket.accept()
    start = None
    while start is None:
        message = json.loads(await websocket.receive_text())
        if message.get("event") == "start":
            start = message["start"]
    serializer = StoppingTwilioSerializer(
        stream_sid=start["streamSid"],
        call_sid=start["callSid"],
        account_sid=start["accountSid"],
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    pipeline = Pipeline(
        [
            transport.input(),
            VADProcessor(vad_analyzer=SileroVADAnalyzer()),
            Parrot(),
            transport.output(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=SAMPLE_RATE,
            audio_out_sample_rate=SAMPLE_RATE,
        ),
        # No RTVI client listens on a phone call.
        enable_rtvi=False,
    )
    serializer.worker = worker
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


async def main():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    host, port = listener.getsockname()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_ping_interval=None))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.05)
    print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
    await serving


if __name__ == "__main__":
    asyncio.run(main())
