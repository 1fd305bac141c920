"""A Python WebRTC peer (aiortc) calling voxpipe over Pipecat's SmallWebRTC
signalling, as a Python client of Pipecat's would: `POST /api/offer`, a
data channel named `chat` speaking RTVI (`client-ready`, then the bot's
messages), the microphone played from a WAV file, and the bot's audio
received and measured.

Run by `tests/python_webrtc_peer.rs`; prints one JSON object of what it saw.
Only the standard library besides aiortc (`tests/python/requirements.txt`).
"""

import argparse
import array
import asyncio
import json
import math
import time
import urllib.request

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

# A received 20 ms frame louder than this (RMS of 16-bit samples) is the
# bot speaking; the parrot repeats speech at its own level, thousands.
LOUD_RMS = 300.0


def post_json(url, body):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def rms(frame):
    samples = array.array("h")
    samples.frombytes(bytes(frame.planes[0])[: frame.samples * 2 * len(frame.layout.channels)])
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


async def call(server, wav, timeout):
    start = time.monotonic()
    seen = {
        "offerStatus": None,
        "connectionStates": [],
        "rtvi": [],
        "botReady": None,
        "framesReceived": 0,
        "loudFrames": 0,
        "sampleRates": [],
        "firstLoudSecs": None,
        "botStartedSecs": None,
    }
    # No STUN server (aiortc's default is Google's): loopback only.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    finished = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state():
        seen["connectionStates"].append(pc.connectionState)

    channel = pc.createDataChannel("chat")

    @channel.on("open")
    def on_open():
        channel.send(
            json.dumps(
                {
                    "label": "rtvi-ai",
                    "type": "client-ready",
                    "id": "py-1",
                    "data": {"version": "2.1.0", "about": {"library": "aiortc"}},
                }
            )
        )

    @channel.on("message")
    def on_message(text):
        try:
            message = json.loads(text)
        except ValueError:
            return
        kind = message.get("type")
        seen["rtvi"].append(kind)
        if kind == "bot-ready":
            seen["botReady"] = message.get("data")
        if kind == "bot-started-speaking" and seen["botStartedSecs"] is None:
            seen["botStartedSecs"] = time.monotonic() - start
        if kind == "bot-stopped-speaking" and seen["loudFrames"] >= 25:
            finished.set()

    @pc.on("track")
    def on_track(track):
        async def pull():
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                seen["framesReceived"] += 1
                if frame.sample_rate not in seen["sampleRates"]:
                    seen["sampleRates"].append(frame.sample_rate)
                if rms(frame) > LOUD_RMS:
                    seen["loudFrames"] += 1
                    if seen["firstLoudSecs"] is None:
                        seen["firstLoudSecs"] = time.monotonic() - start

        asyncio.ensure_future(pull())

    player = MediaPlayer(wav)
    pc.addTrack(player.audio)
    await pc.setLocalDescription(await pc.createOffer())
    status, answer = await asyncio.get_running_loop().run_in_executor(
        None,
        post_json,
        server + "/api/offer",
        {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type},
    )
    seen["offerStatus"] = status
    seen["pcId"] = answer.get("pc_id")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    try:
        await asyncio.wait_for(finished.wait(), timeout)
        seen["finished"] = True
    except asyncio.TimeoutError:
        seen["finished"] = False
    await pc.close()
    # Stops the player's thread, which would otherwise read the WAV to its end.
    player.audio.stop()
    return seen


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--wav", required=True)
    parser.add_argument("--timeout", type=float, default=40.0)
    args = parser.parse_args()
    seen = asyncio.run(call(args.server.rstrip("/"), args.wav, args.timeout))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
