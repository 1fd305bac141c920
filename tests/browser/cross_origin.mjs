// A page on another origin calls voxpipe the way Pipecat's client does:
// `POST /start` (JSON, so the browser sends a CORS preflight first), then
// its offer on `/sessions/{sessionId}/api/offer`, then waits until the
// WebRTC connection is up, and hangs up.
//
//   node cross_origin.mjs --page http://127.0.0.1:PAGE_PORT/ --server http://127.0.0.1:SERVER_PORT
//
// The page itself is any page of the other origin (it only needs an
// origin); the script runs in it. Prints {"started", "connected", "error"}
// as JSON; CORS refusals show as `error` ("Failed to fetch"), which is
// for the Rust test to judge. Exits non-zero only when the browser
// cannot run.
import { launchChromium } from "./chromium.mjs";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
if (!args.page || !args.server) {
  console.error("usage: --page URL --server URL");
  process.exit(2);
}

const browser = await launchChromium();
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`[page ${m.type()}] ${m.text()}`));
  await page.goto(args.page);
  const result = await page.evaluate(async (server) => {
    const seen = { origin: location.origin, started: false, connected: false, error: null };
    try {
      const start = await fetch(`${server}/start`, {
        method: "POST",
        mode: "cors",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ transport: "webrtc", body: { user: "ada" } }),
      });
      if (!start.ok) throw new Error(`/start answered ${start.status}`);
      const { sessionId, iceConfig } = await start.json();
      seen.started = true;
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const pc = new RTCPeerConnection({ iceServers: iceConfig?.iceServers ?? [] });
      stream.getTracks().forEach((t) => pc.addTrack(t, stream));
      pc.createDataChannel("chat");
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((resolve) => {
        if (pc.iceGatheringState === "complete") return resolve();
        pc.addEventListener("icegatheringstatechange", () => {
          if (pc.iceGatheringState === "complete") resolve();
        });
      });
      const offered = await fetch(`${server}/sessions/${sessionId}/api/offer`, {
        method: "POST",
        mode: "cors",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", pc_id: null, restart_pc: false }),
      });
      if (!offered.ok) throw new Error(`the offer was answered ${offered.status}`);
      await pc.setRemoteDescription(await offered.json());
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`still ${pc.connectionState} after 15 s`)), 15000);
        const check = () => {
          if (pc.connectionState === "connected") {
            clearTimeout(timer);
            resolve();
          }
        };
        pc.addEventListener("connectionstatechange", check);
        check();
      });
      seen.connected = true;
      pc.close();
      stream.getTracks().forEach((t) => t.stop());
    } catch (err) {
      seen.error = String(err?.message ?? err);
    }
    return seen;
  }, args.server);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
