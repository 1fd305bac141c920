#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/corpus/TARGET/: well-formed
inputs in the shapes the providers' documentation shows (the same shapes as
the unit tests' fixtures), from which the fuzzers mutate. Run from the
repository's root; `cargo fuzz run` adds what it finds beside them."""
import base64, json, os, struct, pathlib

root = pathlib.Path("fuzz/corpus")

def put(target, name, data):
    d = root / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
payload = base64.b64encode(bytes([0xFF, 0x7F, 0x00, 0x01] * 40)).decode()
twilio = {
    "connected": {"event": "connected", "protocol": "Call", "version": "1.0.0"},
    "start": {"event": "start", "sequenceNumber": "1", "streamSid": SID, "start": {
        "accountSid": "ACd5a6a5c1b9f6a1e6f6bc2c7e4a1b8e3f", "streamSid": SID,
        "callSid": "CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f", "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"FirstName": "Jane", "segment": "retail"}}},
    "media": {"event": "media", "sequenceNumber": "3", "streamSid": SID,
              "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": payload}},
    "dtmf": {"event": "dtmf", "streamSid": SID, "sequenceNumber": "5",
             "dtmf": {"track": "inbound_track", "digit": "1"}},
    "mark": {"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": "my label"}},
    "stop": {"event": "stop", "sequenceNumber": "5", "streamSid": SID, "stop": {
        "accountSid": "ACd5a6a5c1b9f6a1e6f6bc2c7e4a1b8e3f",
        "callSid": "CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f"}},
}
for name, message in twilio.items():
    put("twilio_message", name, json.dumps(message))

put("mulaw_round_trip", "all_codes", bytes(range(256)))
put("mulaw_round_trip", "silence", bytes([0xFF] * 160))

chunk = lambda text: "data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}) + "\n\n"
tool = "data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0,
    "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
    "function": {"name": "end_call", "arguments": "{}"}}]}, "finish_reason": None}]}) + "\n\n"
# The first byte is where the target splits the rest.
put("sse_stream", "chat_stream", "\x80" + chunk("Hello") + chunk(" there.") + tool + "data: [DONE]\n\n")
put("sse_stream", "fields", "\x10: comment\r\nevent: message\r\nid: 7\r\nretry: 100\r\ndata: a\r\ndata: b\r\n\r\n")
put("sse_stream", "error", "\xff" + 'event: error\ndata: {"error":{"message":"overloaded","type":"server_error"}}\n\n')

put("deepgram_message", "final", json.dumps({"type": "Results", "channel_index": [0, 1], "duration": 1.5,
    "start": 2.25, "is_final": True, "speech_final": True, "channel": {"alternatives": [
    {"transcript": "Hello there.", "confidence": 0.98, "words": []}]}}))
put("deepgram_message", "interim", json.dumps({"type": "Results", "duration": 0.5, "start": 0,
    "is_final": False, "speech_final": False, "channel": {"alternatives": [{"transcript": "Hel"}]}}))
put("deepgram_message", "utterance_end", json.dumps({"type": "UtteranceEnd", "last_word_end": 2.1}))
put("deepgram_message", "speech_started", json.dumps({"type": "SpeechStarted", "timestamp": 0.3}))
put("deepgram_message", "error", json.dumps({"type": "Error", "description": "bad", "message": "m"}))

audio = base64.b64encode(bytes(640)).decode()
put("elevenlabs_message", "audio", json.dumps({"audio": audio, "alignment": {"chars": ["H", "i", " "],
    "charStartTimesMs": [0, 40, 60], "charDurationsMs": [40, 20, 10]}, "contextId": "c1"}))
put("elevenlabs_message", "final", json.dumps({"isFinal": True, "contextId": "c1"}))
put("elevenlabs_message", "error", json.dumps({"message": "quota exceeded", "error": "quota_exceeded"}))

put("cartesia_message", "chunk", json.dumps({"type": "chunk", "data": "AAABAA==", "done": False,
    "status_code": 206, "step_time": 12, "context_id": "c1"}))
put("cartesia_message", "timestamps", json.dumps({"type": "timestamps", "done": False, "status_code": 206,
    "context_id": "c1", "word_timestamps": {"words": ["Hello", "world"], "start": [0, 0.5], "end": [0.4, 0.9]}}))
put("cartesia_message", "done", json.dumps({"type": "done", "done": True, "status_code": 206, "context_id": "c1"}))
put("cartesia_message", "error", json.dumps({"type": "error", "done": True, "title": "Invalid model",
    "message": "The model is not valid.", "error_code": "model_not_found", "status_code": 400, "context_id": "c1"}))

sdp = ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
       "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n"
       "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
       "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n"
       "a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
       "a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n")
put("webrtc_signalling", "offer", json.dumps({"sdp": sdp, "type": "offer", "pc_id": None,
    "restart_pc": False, "requestData": {"segment": "retail", "user": {"name": "Jane"}}}))
put("webrtc_signalling", "patch", json.dumps({"pc_id": "pc-1", "candidates": [{"candidate":
    "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", "sdp_mid": "0", "sdp_mline_index": 0}]}))

for i, line in enumerate(open("tests/fixtures/rtvi/agent.jsonl").read().splitlines()):
    if '"client-ready"' in line or '"send-text"' in line or '"client-message"' in line \
            or '"llm-function-call-result"' in line or '"disconnect-bot"' in line:
        put("data_channel_message", f"rtvi_{i}", line)
for name, message in {"text": {"type": "text", "text": "  hello there "},
                      "mute": {"type": "mute", "muted": True},
                      "signalling": {"type": "signalling", "message": {"type": "trackStatus",
                                     "receiver_index": 0, "enabled": False}}}.items():
    put("data_channel_message", name, json.dumps(message))

for toml in sorted(pathlib.Path("pipelines").glob("*.toml")):
    put("pipeline_toml", toml.stem, toml.read_text())
put("pipeline_toml", "overrides", "processor.0.type=vad\npipeline.sample_rate=8000\n---\n"
    + pathlib.Path("pipelines/parrot.toml").read_text())

def wav(fmt, channels, rate, bits, data):
    block = channels * bits // 8
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, fmt,
                         channels, rate, rate * block, block, bits, b"data", len(data))
    return header + data
put("wav_file", "pcm16_mono", wav(1, 1, 16000, 16, struct.pack("<160h", *range(-80, 80))))
put("wav_file", "pcm16_stereo_8k", wav(1, 2, 8000, 16, struct.pack("<80h", *range(80))))
put("wav_file", "float32", wav(3, 1, 24000, 32, struct.pack("<40f", *[i / 40 for i in range(40)])))
put("wav_file", "mulaw", wav(7, 1, 8000, 8, bytes(range(256))))
