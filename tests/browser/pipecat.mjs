// Pipecat's official client (@pipecat-ai/client-js with
// @pipecat-ai/small-webrtc-transport, from npm, bundled here with esbuild)
// against a voxpipe server, in headless Chromium.
//
//   node pipecat.mjs --server http://127.0.0.1:8080 --wav speech.wav [--page-origin URL]
//                    [--scenario call|agent|greeting] [--transcript] [--capture client_messages.jsonl]
//                    [--connect offer|start] [--start-key KEY]
//
// The page is served by Playwright at `${page-origin}/__test/pipecat.html`
// (by default the server's own origin, so the offer is same-origin). It
// connects (POST /api/offer; with `--connect start`, the runner flow:
// startBotAndConnect() on POST /start, then the session's offer path, and
// with --start-key, first a startBot() without the key, whose refusal is
// reported as `refusedStart`); connect() must resolve and onBotReady fire.
// Then, in the `call` scenario (a parrot pipeline), in order: the speaking
// callbacks fire (Chromium's fake microphone plays the WAV); with
// --transcript, onUserTranscript fires with a final transcript from the
// pipeline's STT; sendText() reaches the pipeline (it comes back as a user
// transcription); sendClientRequest() is answered (`session-info`) or
// refused (an unhandled type); sendDTMF(); and disconnectBot() ends the
// session (GET /health shows no session). In the `agent` scenario (an LLM
// with a client tool `get_location`, and a TTS): sendText() asks, the
// LLM calls the tool, the handler registered with
// registerFunctionCallHandler() answers, and the bot's LLM, TTS, output,
// transcript (onBotTranscript), metrics and speaking callbacks fire, and
// onUserLlmText with what the LLM was asked; then disconnect() hangs up. In
// the `greeting` scenario (a pipeline with a `first_message`, which the bot
// speaks as the connection comes up, perhaps before the client is ready),
// the greeting's bot-output segment is announced and then spoken, and the
// bot's speaking callbacks fire, with no word from the page. It prints
// what it saw as JSON and exits non-zero when a check fails. With --capture
// it writes the RTVI messages the client sent, one a line.
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { launchChromium } from "./chromium.mjs";

function parseArgs(argv) {
  const args = { transcript: false, scenario: "call" };
  for (let i = 2; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, "");
    if (key === "transcript") args.transcript = true;
    else args[key] = argv[++i];
  }
  assert.ok(args.server, "--server is required");
  assert.ok(args.wav && existsSync(args.wav), `--wav must name a WAV file (got ${args.wav})`);
  args.server = args.server.replace(/\/$/, "");
  args["page-origin"] = (args["page-origin"] ?? args.server).replace(/\/$/, "");
  return args;
}

const args = parseArgs(process.argv);
const here = dirname(fileURLToPath(import.meta.url));

const bundle = await build({
  entryPoints: [join(here, "pipecat_page.js")],
  bundle: true,
  write: false,
  format: "iife",
  platform: "browser",
  logLevel: "warning",
});
const html = `<!doctype html><meta charset="utf-8"><title>Pipecat client</title>
<script>${bundle.outputFiles[0].text.replace(/<\/script/gi, "<\\/script")}</script>`;

const browser = await launchChromium(args.wav);

const until = async (page, what, predicate, arg, timeout = 20_000) => {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 50 });
  } catch (err) {
    const events = await page.evaluate(() => window.rtvi.events.map((e) => e.name));
    throw new Error(`${what}: not within ${timeout} ms; callbacks so far: ${events.join(", ")}`);
  }
};

async function health() {
  const response = await fetch(`${args.server}/health`);
  return response.json();
}

let failed = false;
const seen = {};
try {
  const page = await browser.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") console.error(`[page ${m.type()}] ${m.text()}`);
  });
  page.on("pageerror", (err) => console.error(`[page error] ${err.message}`));
  // Every message the page sends on a data channel, for --capture.
  await page.addInitScript(() => {
    window.sentOnChannel = [];
    const send = RTCDataChannel.prototype.send;
    RTCDataChannel.prototype.send = function (data) {
      if (typeof data === "string") window.sentOnChannel.push(data);
      return send.call(this, data);
    };
  });
  const pageUrl = `${args["page-origin"]}/__test/pipecat.html`;
  await page.route(pageUrl, (route) => route.fulfill({ contentType: "text/html", body: html }));
  await page.goto(pageUrl);

  // connect() resolves once the bot is ready.
  const connecting = performance.now();
  const target = args.connect === "start"
    ? { start: `${args.server}/start`, key: args["start-key"] }
    : { offer: `${args.server}/api/offer` };
  seen.state = await page.evaluate((t) => window.startPipecat(t), target);
  seen.refusedStart = await page.evaluate(() => window.rtvi.refusedStart ?? null);
  seen.connectMs = Math.round(performance.now() - connecting);
  seen.botReady = await page.evaluate(() => window.rtvi.botReady);
  assert.ok(seen.botReady, "onBotReady did not fire before connect() resolved");
  assert.equal(seen.botReady.version, "2.1.0");

  if (args.scenario === "agent") {
    await agent(page);
  } else if (args.scenario === "greeting") {
    await greeting(page);
  } else {
    await call(page);
  }
  seen.callbacks = await page.evaluate(() => [...new Set(window.rtvi.events.map((e) => e.name))]);
  seen.transcripts = await page.evaluate(() => window.rtvi.transcripts);
  seen.errors = await page.evaluate(() => window.rtvi.errors);
  const sent = await page.evaluate(() => window.sentOnChannel);
  seen.sentTypes = sent.map((s) => { try { return JSON.parse(s).type ?? s; } catch { return s.split(":")[0]; } });
  if (args.capture) {
    const rtviMessages = sent.filter((s) => { try { return JSON.parse(s).label === "rtvi-ai"; } catch { return false; } });
    writeFileSync(args.capture, rtviMessages.join("\n") + "\n");
  }
  await page.evaluate(() => window.pipecat.disconnect());
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  console.log(JSON.stringify(seen, null, 2));
  await browser.close();
}
process.exit(failed ? 1 : 0);

async function agent(page) {
  await page.evaluate(() => {
    window.rtvi.toolCalls = [];
    window.pipecat.registerFunctionCallHandler("get_location", async (params) => {
      window.rtvi.toolCalls.push(params);
      return { city: "Oslo" };
    });
  });
  await page.evaluate(() => window.pipecat.sendText("Where am I?"));
  await until(page, "the client tool's handler", () => window.rtvi.toolCalls.length > 0);
  seen.toolCalls = await page.evaluate(() => window.rtvi.toolCalls);
  for (const name of ["llmFunctionCallInProgress", "llmFunctionCallStopped", "botLlmStarted", "botLlmText",
    "botLlmStopped", "botTtsStarted", "botTtsText", "botTtsStopped", "botOutput", "metrics",
    "botStartedSpeaking", "botStoppedSpeaking", "userLlmText", "botTranscript"]) {
    await until(page, `on ${name}`, (n) => window.rtvi.events.some((e) => e.name === n), name);
  }
  seen.botText = await page.evaluate(() =>
    window.rtvi.events.filter((e) => e.name === "botLlmText").map((e) => e.data.text).join(""));
  seen.metrics = await page.evaluate(() => window.rtvi.events.filter((e) => e.name === "metrics").map((e) => e.data));
  seen.botOutput = await page.evaluate(() => window.rtvi.events.filter((e) => e.name === "botOutput").map((e) => e.data));
  // client-react's conversation: the question, the tool call, and the
  // answer, spoken whole.
  await until(page, "client-react's conversation with the answer spoken", () =>
    window.conversation.some((m) => m.role === "assistant" &&
      m.parts.map((p) => p.spoken).join(" ").trim() === "You are in Oslo."));
  seen.conversation = await page.evaluate(() => window.conversation);
  seen.assistantStates = await page.evaluate(() => window.assistantStates.map((s) => JSON.parse(s)));
  seen.userLlmText = await page.evaluate(() =>
    window.rtvi.events.filter((e) => e.name === "userLlmText").map((e) => e.data.text));
  seen.botTranscript = await page.evaluate(() =>
    window.rtvi.events.filter((e) => e.name === "botTranscript").map((e) => e.data.text));
}

async function greeting(page) {
  for (const name of ["botStartedSpeaking", "botTtsText", "botStoppedSpeaking"]) {
    await until(page, `on ${name}`, (n) => window.rtvi.events.some((e) => e.name === n), name);
  }
  await until(page, "the greeting spoken (bot-output completed)", () =>
    window.rtvi.events.some((e) => e.name === "botOutput" && e.data.spoken_status === "completed"));
  seen.botOutput = await page.evaluate(() => window.rtvi.events.filter((e) => e.name === "botOutput").map((e) => e.data));
}

async function call(page) {
  // The fake microphone speaks; the parrot answers.
  for (const name of ["userStartedSpeaking", "userStoppedSpeaking", "botStartedSpeaking", "botStoppedSpeaking"]) {
    await until(page, `on${name[0].toUpperCase()}${name.slice(1)}`, (n) => window.rtvi.events.some((e) => e.name === n), name);
  }
  if (args.transcript) {
    await until(page, "a final onUserTranscript", () => window.rtvi.transcripts.some((t) => t.final && t.text.length > 0));
  }

  // sendText() reaches the pipeline: the text comes back as the user's.
  await page.evaluate(() => window.pipecat.sendText("hello from the page"));
  await until(page, "the sent text as a transcript", () =>
    window.rtvi.transcripts.some((t) => t.final && t.text === "hello from the page"));

  // sendClientRequest(): answered by voxpipe, or refused when nothing does.
  seen.sessionInfo = await page.evaluate(() => window.pipecat.sendClientRequest("session-info", {}));
  assert.ok(seen.sessionInfo?.session_id, `no session id in ${JSON.stringify(seen.sessionInfo)}`);
  // A type nothing answers: as with Pipecat, the client's own timeout
  // rejects it; the server sends no error of its own, so a fire-and-forget
  // sendClientMessage() raises no onMessageError. (6 s: past the 5 s after
  // which voxpipe used to answer with an error of its own.)
  await page.evaluate(() => window.pipecat.sendClientMessage("ui-event", { x: 1 }));
  seen.refused = await page.evaluate(() =>
    window.pipecat.sendClientRequest("no-such-request", { x: 1 }, 6_000).then(
      (d) => ({ answered: d }),
      (e) => ({ type: e?.type, error: e?.data?.error }),
    ));
  assert.equal(seen.refused.type, "error-response", JSON.stringify(seen.refused));
  assert.match(seen.refused.error ?? "", /Timed out/, JSON.stringify(seen.refused));
  const messageErrors = await page.evaluate(() =>
    window.rtvi.events.filter((e) => e.name === "messageError").map((e) => e.data));
  assert.deepEqual(messageErrors, [], "the server answered a message no processor took");

  await page.evaluate(() => window.pipecat.sendDTMF("12#"));

  // disconnectBot() ends the session: /health shows it gone.
  assert.ok((await health()).sessions.active >= 1, "the session is live before disconnectBot()");
  await page.evaluate(() => window.pipecat.disconnectBot());
  const deadline = Date.now() + 15_000;
  let active = -1;
  while (Date.now() < deadline) {
    active = (await health()).sessions.active;
    if (active === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  seen.activeAfterDisconnect = active;
  assert.equal(active, 0, "the session is still live after disconnectBot()");
  await until(page, "onBotDisconnected or onDisconnected", () =>
    window.rtvi.events.some((e) => e.name === "botDisconnected" || e.name === "disconnected"));
}
