// One call from the browser client in headless Chromium.
//
//   node call.mjs --url http://127.0.0.1:8080/ --wav speech.wav [--screenshot page.png] [--seconds 20]
//
// Chromium's fake microphone plays the WAV (looping). The script connects,
// waits until the bot's audio reaches the page (RMS from the page's WebAudio
// analyser on the remote stream: getStats() audio levels read 0 headless)
// and a turn's latency is drawn, checks the transcript, hangs up, and
// prints what it saw as JSON. It exits non-zero when a check fails.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { launchChromium } from "./chromium.mjs";

function parseArgs(argv) {
  const args = { seconds: 20 };
  for (let i = 2; i < argv.length; i += 2) {
    args[argv[i].replace(/^--/, "")] = argv[i + 1];
  }
  assert.ok(args.url, "--url is required");
  assert.ok(args.wav && existsSync(args.wav), `--wav must name a WAV file (got ${args.wav})`);
  return args;
}

const args = parseArgs(process.argv);
const browser = await launchChromium(args.wav);

let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1180, height: 600 } });
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") console.error(`[page ${m.type()}] ${m.text()}`);
  });
  page.on("pageerror", (err) => console.error(`[page error] ${err.message}`));

  await page.goto(args.url);
  await page.click("#connect");
  await page.waitForFunction(() => window.voxpipe.state === "connected", null, { timeout: 15_000 });

  // Listen until the bot has spoken and its turn's latency is drawn.
  const deadline = Date.now() + Number(args.seconds) * 1000;
  let maxBotLevel = 0;
  let turns = 0;
  while (Date.now() < deadline) {
    maxBotLevel = Math.max(maxBotLevel, await page.evaluate(() => window.voxpipe.botLevel()));
    turns = await page.locator("#chart .turn").count();
    if (maxBotLevel > 0.02 && turns >= 2) break;
    await page.waitForTimeout(50);
  }

  const events = await page.evaluate(() => window.voxpipe.events.map((e) => e.event));
  const transcript = await page.locator("#transcript").innerText();
  if (args.screenshot) {
    await page.screenshot({ path: args.screenshot });
  }
  await page.click("#connect"); // hang up
  console.log(JSON.stringify({ maxBotLevel, turns, events, transcript }, null, 2));

  assert.ok(maxBotLevel > 0.01, `the bot's audio did not reach the page (max RMS ${maxBotLevel})`);
  for (const event of ["session_started", "user_started_speaking", "user_stopped_speaking", "bot_started_speaking", "turn_latency"]) {
    assert.ok(events.includes(event), `no ${event} event on the data channel: ${events}`);
  }
  assert.match(transcript, /you\s+\(speech, \d+\.\d s\)/i, "the transcript shows the user's turn");
  assert.match(transcript, /bot\s+\(audio/i, "the transcript shows the bot's turn");
  assert.ok(turns >= 1, "the latency chart shows a turn");
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
