#!/usr/bin/env python3
"""A second Twilio Media Streams load driver, written apart from
`benches/twilio_load.rs` with Python's asyncio and the `websockets` package,
as an outside tester's would be: the same calls, their lateness and the
server's CPU measured as that bench measures them, from a client that
paces, frames and reads differently (no percentiles, RSS or stall probe,
and no `--utterance-gap-ms`: it measures servers that send `mark`).

Each call connects to `/twilio/ws`, sends `connected` and `start`, then a
160-byte mu-law `media` message every 20 ms (the caller's speech, looped)
for twice `--secs`, each paced by its own `asyncio.sleep`; echoes each
`mark` at once; sends `stop` and reads until the server closes the socket.
Calls start spread over `--secs`, so all are connected together from
`--secs` to twice `--secs`.

Reported:
- calls with an outbound `media` message more than 20 ms late: within an
  utterance (up to a `mark` or `clear`) a message is due when the audio
  before it has played, counted from the utterance's first message;
- the server's CPU time (from `/proc/PID/stat`) per call-second, a
  call-second being a second some call's stream was open (each call's own
  time from the handshake to the server's close), and its share of a core
  while every call was connected (from 1.1 to 1.9 times `--secs`), per call;
- the driver's own CPU per call-second, and the load average.

Run a server, then the driver with its pid:

    target/release/voxpipe serve pipelines/parrot.toml --bind 127.0.0.1:18556 &
    /tmp/pcvenv/bin/python benches/twilio_load.py --pid $! --calls 20 --secs 8

Needs Python 3.9 to 3.12 (`audioop`, gone in 3.13; deprecated, so 3.11 and
3.12 warn: `-W ignore`) and `websockets` 13 or later (the
`pipecat-ai[websocket]` venv of `benches/pipecat_twilio_parrot.py` has it).
"""

import argparse
import asyncio
import audioop
import base64
import json
import os
import statistics
import sys
import time
import wave
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
FRAME = 0.02


def payloads(path: str) -> list[str]:
    """The caller's audio as base64 mu-law, one string per 20 ms."""
    with wave.open(path) as w:
        pcm, rate, channels = w.readframes(w.getnframes()), w.getframerate(), w.getnchannels()
    if channels == 2:
        pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
    if rate != 8000:
        pcm, _ = audioop.ratecv(pcm, 2, 1, rate, 8000, None)
    mu = audioop.lin2ulaw(pcm, 2)
    return [base64.b64encode(mu[i : i + 160]).decode() for i in range(0, len(mu) - 159, 160)]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Call:
    def __init__(self) -> None:
        self.late: list[float] = []
        self.send_late = 0.0
        self.connected = 0.0
        self.span = None  # (opened, closed), monotonic seconds
        self.complete = False


async def call(n: int, url: str, secs: float, chunks: list[str], start_at: float) -> Call:
    result = Call()
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    sid, call_sid, account = f"MZ{n:032x}", f"CA{n:032x}", f"AC{1:032x}"
    try:
        async with websockets.connect(url, compression=None, max_queue=None) as ws:
            opened = time.monotonic()
            stopped = False

            async def receive() -> None:
                utterance = None  # [arrival of its first message, audio so far]
                async for text in ws:
                    now = time.monotonic()
                    message = json.loads(text)
                    event = message.get("event")
                    if event == "media":
                        if utterance is None:
                            utterance = [now, 0.0]
                        result.late.append(max(0.0, now - utterance[0] - utterance[1]))
                        utterance[1] += len(base64.b64decode(message["media"]["payload"])) / 8000
                    elif event == "clear":
                        utterance = None
                    elif event == "mark":
                        utterance = None
                        if not stopped:
                            echo = {"event": "mark", "sequenceNumber": "0", "streamSid": sid}
                            echo["mark"] = message.get("mark", {})
                            await ws.send(json.dumps(echo))

            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            start = {
                "accountSid": account,
                "streamSid": sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            }
            await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "start": start, "streamSid": sid}))
            receiving = asyncio.create_task(receive())
            began, frames = time.monotonic(), round(2 * secs / FRAME)
            for i in range(frames):
                due = began + i * FRAME
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                result.send_late = max(result.send_late, time.monotonic() - due)
                media = {"track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20), "payload": chunks[i % len(chunks)]}
                await ws.send(json.dumps({"event": "media", "sequenceNumber": str(i + 2), "media": media, "streamSid": sid}))
            stopped = True
            stop = {"accountSid": account, "callSid": call_sid}
            await ws.send(json.dumps({"event": "stop", "sequenceNumber": str(frames + 2), "stop": stop, "streamSid": sid}))
            await asyncio.wait_for(receiving, timeout=secs + 30)
            result.connected = time.monotonic() - opened
            result.span = (opened, time.monotonic())
            result.complete = bool(result.late)
    except Exception as error:  # a call that fails is reported, the run goes on
        print(f"call {n}: {error!r}", file=sys.stderr)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--secs", type=float, default=8.0)
    parser.add_argument("--url", default="ws://127.0.0.1:18556/twilio/ws")
    parser.add_argument("--audio", default=str(ROOT / "assets/samples/hello.wav"))
    args = parser.parse_args()
    if args.calls < 1 or args.secs <= 0:
        parser.error("--calls must be at least 1 and --secs above 0")
    chunks = payloads(args.audio)
    if not chunks:
        parser.error(f"{args.audio} holds less than 20 ms of audio")
    first = time.monotonic() + 0.5
    starts = [first + args.secs * n / args.calls for n in range(args.calls)]

    async def window() -> tuple[float, float, float]:
        await asyncio.sleep(first + 1.1 * args.secs - time.monotonic())
        cpu, at = cpu_seconds(args.pid), time.monotonic()
        await asyncio.sleep(0.8 * args.secs)
        end = time.monotonic()
        return (cpu_seconds(args.pid) - cpu) / (end - at), at, end

    server_cpu, driver_cpu = cpu_seconds(args.pid), time.process_time()
    measuring = asyncio.create_task(window())
    calls = await asyncio.gather(*(call(n, args.url, args.secs, chunks, at) for n, at in enumerate(starts)))
    core, window_start, window_end = await measuring
    # The window's share is per call only if every call was connected all
    # through it.
    outside = sum(not (c.span and c.span[0] <= window_start and c.span[1] >= window_end) for c in calls)
    if outside:
        print(f"{outside} of {args.calls} calls were not connected all through the CPU window", file=sys.stderr)
    server_cpu, driver_cpu = cpu_seconds(args.pid) - server_cpu, time.process_time() - driver_cpu
    call_seconds = sum(c.connected for c in calls) or float("nan")
    late = [l for c in calls for l in c.late]
    print(
        f"calls {args.calls} complete {sum(c.complete for c in calls)} frames {len(late)} "
        f"late_calls {sum(any(l > 0.020 for l in c.late) for c in calls)} "
        f"max_late_ms {1000 * max(late, default=0):.1f} send_late_max_ms {1000 * max(c.send_late for c in calls):.1f} "
        f"connected_s {statistics.median(c.connected for c in calls):.2f} "
        f"srv_ms/cs {1000 * server_cpu / call_seconds:.3f} "
        f"srv_core% {100 * core:.1f} (per call {1000 * core / args.calls:.3f} ms/cs) "
        f"drv_ms/cs {1000 * driver_cpu / call_seconds:.3f} load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
