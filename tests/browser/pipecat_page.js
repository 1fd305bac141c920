// The page of the Pipecat client test (bundled by pipecat.mjs with
// esbuild): Pipecat's official client and SmallWebRTC transport, as an app
// would use them, with every callback recorded in `window.rtvi`, and
// client-react's conversation (`usePipecatConversation`, what a React app
// renders as its transcript) in `window.conversation`.
import { PipecatClient, RTVIEvent } from "@pipecat-ai/client-js";
import { PipecatClientProvider, usePipecatConversation } from "@pipecat-ai/client-react";
import { SmallWebRTCTransport } from "@pipecat-ai/small-webrtc-transport";
import { createElement, useEffect } from "react";
import { createRoot } from "react-dom/client";

// The transport's default media manager loads Daily's call machine from the
// internet; this one takes the microphone with getUserMedia, as the
// transport's `mediaManager` option allows.
class GetUserMediaManager {
  constructor() {
    this._options = null;
    this._callbacks = {};
    this._micEnabled = true;
    this._stream = null;
  }
  setUserAudioCallback() {}
  setClientOptions(options, override = false) {
    if (this._options && !override) return;
    this._options = options;
    this._callbacks = options.callbacks ?? {};
    this._micEnabled = options.enableMic ?? true;
  }
  get supportsScreenShare() { return false; }
  async initialize() {
    if (!this._stream) this._stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  }
  async connect() { await this.initialize(); }
  async disconnect() {
    this._stream?.getTracks().forEach((t) => t.stop());
    this._stream = null;
  }
  tracks() {
    const audio = this._stream?.getAudioTracks()[0];
    return { local: audio ? { audio } : {} };
  }
  get isMicEnabled() { return this._micEnabled; }
  get isCamEnabled() { return false; }
  get isSharingScreen() { return false; }
  enableMic(enable) {
    this._micEnabled = enable;
    this._stream?.getAudioTracks().forEach((t) => { t.enabled = enable; });
  }
  enableCam() {}
  async enableScreenShare() {}
  async getAllMics() {
    return (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
  }
  async getAllCams() { return []; }
  async getAllSpeakers() { return []; }
  async updateMic() {}
  updateCam() {}
  updateSpeaker() {}
  get selectedMic() { return {}; }
  get selectedCam() { return {}; }
  get selectedSpeaker() { return {}; }
}

const rtvi = { events: [], transcripts: [], botReady: null, errors: [] };
window.rtvi = rtvi;
const seen = (name, data) => rtvi.events.push(data === undefined ? { name } : { name, data });

const newClient = () =>
  new PipecatClient({
    transport: new SmallWebRTCTransport({ mediaManager: new GetUserMediaManager() }),
    enableMic: true,
    enableCam: false,
    callbacks: {
      onBotReady: (data) => { rtvi.botReady = data; seen("botReady", data); },
      onUserStartedSpeaking: () => seen("userStartedSpeaking"),
      onUserStoppedSpeaking: () => seen("userStoppedSpeaking"),
      onBotStartedSpeaking: () => seen("botStartedSpeaking"),
      onBotStoppedSpeaking: () => seen("botStoppedSpeaking"),
      onUserTranscript: (data) => { rtvi.transcripts.push(data); seen("userTranscript", data); },
      onMetrics: (data) => seen("metrics", data),
      onBotLlmStarted: () => seen("botLlmStarted"),
      onBotLlmText: (data) => seen("botLlmText", data),
      onBotLlmStopped: () => seen("botLlmStopped"),
      onBotTtsStarted: () => seen("botTtsStarted"),
      onBotTtsText: (data) => seen("botTtsText", data),
      onBotTtsStopped: () => seen("botTtsStopped"),
      onBotOutput: (data) => seen("botOutput", data),
      onUserLlmText: (data) => seen("userLlmText", data),
      onBotTranscript: (data) => seen("botTranscript", data),
      onLLMFunctionCallInProgress: (data) => seen("llmFunctionCallInProgress", data),
      onLLMFunctionCallStopped: (data) => seen("llmFunctionCallStopped", data),
      onServerMessage: (data) => seen("serverMessage", data),
      onError: (message) => { rtvi.errors.push(message); seen("error", message); },
      onMessageError: (message) => seen("messageError", message),
      onDisconnected: () => seen("disconnected"),
      onBotDisconnected: () => seen("botDisconnected"),
    },
  });

// Connects as an app would: `connect()` with the offer URL, or, given
// `start`, the runner flow `startBotAndConnect()` on that URL (with `key`,
// first a `startBot()` without it, whose refusal is recorded).
window.startPipecat = async ({ offer, start, key }) => {
  if (start && key) {
    rtvi.refusedStart = await newClient()
      .startBot({ endpoint: start })
      .then(
        () => null,
        (e) => ({ name: e?.constructor?.name, status: e?.status, message: e?.message }),
      );
  }
  const client = newClient();
  window.pipecat = client;
  mountConversation(client);
  if (start) {
    const headers = key ? new Headers({ Authorization: `Bearer ${key}` }) : undefined;
    await client.startBotAndConnect({ endpoint: start, headers });
  } else {
    await client.connect({ webrtcRequestParams: { endpoint: offer } });
  }
  seen("connectResolved");
  return client.state;
};
// client-react's conversation, as plain data: each message's role, whether
// it is final, and its text (a bot part's spoken and unspoken text). Every
// state the assistant's parts went through is kept too, in order
// (`assistantStates`), to see the spoken text grow as the words are heard.
window.conversation = [];
window.assistantStates = [];
function ConversationProbe() {
  const { messages } = usePipecatConversation();
  useEffect(() => {
    window.conversation = messages.map((m) => ({
      role: m.role,
      final: m.final ?? false,
      parts: m.parts.map((p) =>
        typeof p.text === "string"
          ? { text: p.text }
          : { spoken: p.text?.spoken ?? "", unspoken: p.text?.unspoken ?? "", separator: !!p.needsSeparator }),
      functionCall: m.functionCall ? { name: m.functionCall.function_name, status: m.functionCall.status } : undefined,
    }));
    for (const m of window.conversation.filter((m) => m.role === "assistant")) {
      const state = JSON.stringify(m.parts);
      if (window.assistantStates[window.assistantStates.length - 1] !== state) {
        window.assistantStates.push(state);
      }
    }
  }, [messages]);
  return null;
}

function mountConversation(client) {
  const root = document.createElement("div");
  document.body.appendChild(root);
  createRoot(root).render(createElement(PipecatClientProvider, { client }, createElement(ConversationProbe)));
}

export { RTVIEvent };
