// voxpipe browser client: one call to the pipeline served here.
//
// Signalling is Pipecat's SmallWebRTC protocol: the offer goes to
// POST /api/offer at once (the answer names the connection, `pc_id`), and
// the browser's candidates follow by PATCH /api/offer as they are found.
// The data channel brings the pipeline's events (the same JSON lines as
// `voxpipe run --events`) and carries typed text and mute to the server.
// A connection that fails is replaced (`restart_pc`): the call goes on.
// Query parameters of the page are sent as `requestData`, e.g.
// `/?user=ada&segment=retail`.
"use strict";

(() => {
  const STAGES = ["vad_stop_ms", "stt_ms", "llm_ms", "tts_ms", "audio_out_ms"];
  const STAGE_NAMES = {
    vad_stop_ms: "VAD stop",
    stt_ms: "STT",
    llm_ms: "LLM first token",
    tts_ms: "TTS first byte",
    audio_out_ms: "first audio out",
  };
  const CHART_TURNS = 8;
  const MAX_RESTARTS = 3;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    connect: $("connect"),
    mute: $("mute"),
    speaking: $("speaking"),
    userLevel: $("user-level"),
    botLevel: $("bot-level"),
    transcript: $("transcript"),
    form: $("text-form"),
    text: $("text"),
    send: $("send"),
    chart: $("chart"),
    audio: $("bot-audio"),
  };

  const call = {
    state: "idle",
    pc: null,
    channel: null,
    pcId: null,
    mic: null,
    muted: false,
    audioContext: null,
    analysers: { user: null, bot: null },
    candidates: [],
    awaitingAnswer: false,
    restarts: 0,
    userLine: null,
    userStart: null,
    botLine: null,
    botStart: null,
    turns: [],
    events: [],
    meterTimer: null,
  };

  // ---- signalling -------------------------------------------------------

  async function request(method, body) {
    const response = await fetch("/api/offer", {
      method,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      throw new Error(`${method} /api/offer: ${response.status} ${await response.text()}`);
    }
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  // The server's STUN and TURN servers (TURN credentials included), so
  // a browser behind a NAT can be reached too; none if it cannot say.
  async function iceServers() {
    try {
      const response = await fetch("/api/ice-config");
      return response.ok ? (await response.json()).iceServers : [];
    } catch {
      return [];
    }
  }

  function requestData() {
    const data = Object.fromEntries(new URLSearchParams(location.search));
    return Object.keys(data).length ? data : undefined;
  }

  async function trickle(candidate) {
    if (candidate && candidate.candidate) {
      call.candidates.push({
        candidate: candidate.candidate,
        sdp_mid: candidate.sdpMid,
        sdp_mline_index: candidate.sdpMLineIndex,
      });
    }
    if (!call.pcId || call.awaitingAnswer || call.candidates.length === 0) {
      return; // sent once the answer names the connection
    }
    const candidates = call.candidates.splice(0);
    try {
      await request("PATCH", { pc_id: call.pcId, candidates });
    } catch (err) {
      console.warn("candidates not sent", err);
    }
  }

  // ---- the call ---------------------------------------------------------

  async function connect() {
    setState("connecting", "connecting…");
    ui.connect.disabled = true;
    try {
      call.mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      call.audioContext = new AudioContext();
      await call.audioContext.resume();
      call.analysers.user = analyser(call.mic);
      await negotiate(false);
      ui.connect.textContent = "Disconnect";
      ui.connect.disabled = false;
      startMeters();
    } catch (err) {
      console.error(err);
      disconnect(`could not connect: ${err.message}`, "error");
    }
  }

  // A new RTCPeerConnection for the call, offered to the server. With
  // `restart`, it replaces the one that failed and the session goes on
  // (Pipecat's `restart_pc`).
  async function negotiate(restart) {
    const pc = new RTCPeerConnection({ iceServers: await iceServers() });
    const old = call.pc;
    call.pc = pc;
    call.candidates = [];
    const [track] = call.mic.getAudioTracks();
    pc.addTransceiver(track, { direction: "sendrecv", streams: [call.mic] });
    pc.ontrack = (event) => attachBotAudio(event.streams[0] || new MediaStream([event.track]));
    pc.onicecandidate = (event) => {
      if (call.pc === pc) trickle(event.candidate);
    };
    pc.onconnectionstatechange = () => {
      if (call.pc !== pc) return;
      if (pc.connectionState === "connected") {
        call.restarts = 0;
        setState("connected", "connected");
      } else if (pc.connectionState === "failed") {
        reconnect();
      }
    };

    const channel = pc.createDataChannel("chat", { ordered: true });
    call.channel = channel;
    channel.onopen = () => {
      ui.text.disabled = false;
      ui.send.disabled = false;
      ui.mute.disabled = false;
      if (call.muted) send({ type: "mute", muted: true });
    };
    channel.onmessage = (event) => onMessage(event.data);
    channel.onclose = () => {
      if (call.channel === channel && call.state !== "idle") disconnect("the server closed the call");
    };

    await pc.setLocalDescription(await pc.createOffer());
    // Until the answer, candidates wait: on a restart the server's current
    // connection is still the old one.
    call.awaitingAnswer = true;
    const answer = await request("POST", {
      sdp: pc.localDescription.sdp,
      type: pc.localDescription.type,
      pc_id: restart ? call.pcId : null,
      restart_pc: restart,
      requestData: requestData(),
    });
    call.pcId = answer.pc_id;
    call.awaitingAnswer = false;
    await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    await trickle(null);
    if (old) old.close();
  }

  async function reconnect() {
    if (call.restarts >= MAX_RESTARTS) {
      disconnect("the connection failed");
      return;
    }
    call.restarts += 1;
    setState("connecting", `reconnecting (${call.restarts})…`);
    note("connection lost; reconnecting");
    try {
      await negotiate(true);
    } catch (err) {
      console.error(err);
      disconnect(`could not reconnect: ${err.message}`, "error");
    }
  }

  function disconnect(reason, state = "idle") {
    call.state = "idle"; // the channel's close below is ours
    if (call.channel) call.channel.close();
    if (call.pc) call.pc.close();
    if (call.mic) call.mic.getTracks().forEach((t) => t.stop());
    if (call.audioContext) call.audioContext.close();
    clearInterval(call.meterTimer);
    Object.assign(call, {
      pc: null, channel: null, pcId: null, mic: null, audioContext: null,
      analysers: { user: null, bot: null }, candidates: [], muted: false, restarts: 0,
    });
    ui.connect.textContent = "Connect";
    ui.connect.disabled = false;
    ui.mute.disabled = true;
    ui.mute.setAttribute("aria-pressed", "false");
    ui.mute.textContent = "Mute";
    ui.text.disabled = true;
    ui.send.disabled = true;
    ui.speaking.textContent = "";
    ui.userLevel.value = 0;
    ui.botLevel.value = 0;
    if (reason) note(reason);
    setState(state, state === "error" ? reason : "not connected");
  }

  function setState(state, label) {
    call.state = state;
    ui.status.dataset.state = state;
    ui.status.textContent = label;
  }

  function send(message) {
    if (call.channel && call.channel.readyState === "open") {
      call.channel.send(JSON.stringify(message));
    }
  }

  function toggleMute() {
    call.muted = !call.muted;
    call.mic.getAudioTracks().forEach((t) => { t.enabled = !call.muted; });
    send({ type: "mute", muted: call.muted });
    ui.mute.setAttribute("aria-pressed", String(call.muted));
    ui.mute.textContent = call.muted ? "Unmute" : "Mute";
  }

  // ---- audio ------------------------------------------------------------

  function analyser(stream) {
    const node = call.audioContext.createAnalyser();
    node.fftSize = 2048;
    call.audioContext.createMediaStreamSource(stream).connect(node);
    return node;
  }

  function attachBotAudio(stream) {
    // WebAudio only hears a remote stream that a media element plays.
    ui.audio.srcObject = stream;
    ui.audio.play().catch(() => {});
    call.analysers.bot = analyser(stream);
  }

  function level(node) {
    if (!node) return 0;
    const samples = new Float32Array(node.fftSize);
    node.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    return Math.sqrt(sum / samples.length);
  }

  function startMeters() {
    clearInterval(call.meterTimer);
    call.meterTimer = setInterval(() => {
      ui.userLevel.value = Math.min(1, level(call.analysers.user) * 4);
      ui.botLevel.value = Math.min(1, level(call.analysers.bot) * 4);
    }, 50);
  }

  // ---- events -----------------------------------------------------------

  function onMessage(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type === "signalling") {
      if (message.message && message.message.type === "peerLeft") disconnect("the bot left the call");
      return;
    }
    if (!message.event) return;
    call.events.push(message);
    handlers[message.event]?.(message);
  }

  const handlers = {
    session_started: () => note("session started"),
    user_started_speaking: (e) => {
      ui.speaking.textContent = "you are speaking…";
      call.userStart = e.start_ms;
      if (!call.userLine) call.userLine = line("user", "…", "interim");
    },
    user_stopped_speaking: (e) => {
      ui.speaking.textContent = "";
      if (call.userLine && call.userLine.classList.contains("interim")) {
        // No transcript (yet): say how long the user spoke.
        setText(call.userLine, `(speech, ${seconds(e.end_ms - (call.userStart ?? e.end_ms))})`);
        call.userLine.classList.remove("interim");
      }
      call.userLine = null;
      call.botLine = null;
    },
    interim_transcription: (e) => {
      if (!call.userLine) call.userLine = line("user", "", "interim");
      setText(call.userLine, e.text);
    },
    transcription: (e) => {
      const target = call.userLine || line("user", "");
      setText(target, e.text);
      target.classList.remove("interim");
      call.userLine = null;
      call.botLine = null;
    },
    llm_response_started: () => { call.botLine = line("bot", ""); },
    llm_text: (e) => {
      if (!call.botLine) call.botLine = line("bot", "");
      appendText(call.botLine, e.text);
    },
    bot_started_speaking: (e) => {
      ui.speaking.textContent = "bot speaking…";
      call.botStart = e.t_ms;
      if (!call.botLine) {
        call.botLine = line("bot", "(audio…)");
        call.botLine.dataset.audioOnly = "true";
      }
    },
    bot_stopped_speaking: (e) => {
      ui.speaking.textContent = "";
      if (call.botLine && call.botLine.dataset.audioOnly) {
        // No text came with the audio: say how long the bot spoke.
        setText(call.botLine, `(audio, ${seconds(e.t_ms - (call.botStart ?? e.t_ms))})`);
        delete call.botLine.dataset.audioOnly;
      }
    },
    interruption: (e) => {
      note(`interrupted: ${e.played_ms} ms heard, ${e.cut_ms} ms cut`);
      if (call.botLine) {
        if (call.botLine.dataset.audioOnly) {
          setText(call.botLine, `(audio, ${seconds(e.played_ms)})`);
          delete call.botLine.dataset.audioOnly;
        }
        call.botLine.classList.add("interrupted");
      }
      call.botLine = null;
    },
    tool_call: (e) => note(`tool call: ${e.name}`),
    error: (e) => line("error", `${e.processor}: ${e.message}`),
    turn_latency: (e) => addTurn(e),
    session_ended: (e) => note(`session ended (${e.reason})`),
  };

  function line(kind, text, extra) {
    const item = document.createElement("li");
    item.className = extra ? `${kind} ${extra}` : kind;
    if (kind === "user" || kind === "bot") {
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = kind === "user" ? "you" : "bot";
      item.append(who);
    }
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.append(body);
    ui.transcript.append(item);
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    return item;
  }

  function setText(item, text) {
    item.querySelector(".text").textContent = text;
  }

  function appendText(item, text) {
    item.querySelector(".text").textContent += text;
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
  }

  function note(text) {
    return line("note", text);
  }

  function seconds(ms) {
    return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
  }

  // ---- latency chart ----------------------------------------------------

  function addTurn(latency) {
    call.turns.push(latency);
    drawChart();
  }

  function drawChart() {
    const turns = call.turns.slice(-CHART_TURNS);
    ui.chart.replaceChildren();
    if (turns.length === 0) {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.textContent = "Speak to see where each turn's time goes.";
      ui.chart.append(empty);
      return;
    }
    const first = call.turns.length - turns.length + 1;
    const scale = Math.max(...turns.map(stagesTotal), 1);
    turns.forEach((turn, i) => {
      const row = document.createElement("div");
      row.className = "turn";
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = `#${first + i}`;
      const bar = document.createElement("div");
      bar.className = "bar";
      const detail = document.createElement("div");
      detail.className = "detail";
      const parts = [];
      for (const stage of STAGES) {
        const ms = turn[stage];
        if (ms == null) continue;
        const segment = document.createElement("span");
        segment.dataset.stage = stage;
        segment.style.width = `${(100 * ms) / scale}%`;
        segment.title = `${STAGE_NAMES[stage]}: ${ms.toFixed(1)} ms`;
        bar.append(segment);
        parts.push(`${STAGE_NAMES[stage]} ${formatMs(ms)}`);
      }
      detail.textContent = parts.join(" · ");
      const stages = document.createElement("div");
      stages.className = "stages";
      stages.append(bar, detail);
      const total = document.createElement("span");
      total.className = "total";
      total.textContent = `${Math.round(turn.total_ms)} ms`;
      row.append(label, stages, total);
      ui.chart.append(row);
    });
  }

  function formatMs(ms) {
    return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
  }

  function stagesTotal(turn) {
    return STAGES.reduce((sum, stage) => sum + (turn[stage] || 0), 0);
  }

  // ---- wiring -----------------------------------------------------------

  ui.connect.addEventListener("click", () => {
    if (call.pc) disconnect("you hung up");
    else connect();
  });
  ui.mute.addEventListener("click", toggleMute);
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.text.value.trim();
    if (!text) return;
    send({ type: "text", text });
    ui.text.value = "";
  });
  drawChart();

  // For tests and the curious: the call's state, the events so far, and
  // the levels the meters show (RMS of the last 2048 samples).
  window.voxpipe = {
    get state() { return call.state; },
    get events() { return call.events.slice(); },
    botLevel: () => level(call.analysers.bot),
    userLevel: () => level(call.analysers.user),
  };
})();
