// Headless Chromium for the browser tests: the system's Chromium
// (CHROMIUM, else /usr/bin/chromium) with a fake microphone playing `wav`
// (looping; Chromium's own tone when no `wav` is given) and the camera and
// microphone prompts answered yes.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { chromium } from "playwright-core";

export async function launchChromium(wav) {
  const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    console.error(`no Chromium at ${executablePath}: install it (apt-get install chromium) or set CHROMIUM`);
    process.exit(2);
  }
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--allow-loopback-in-peer-connection",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      // Chromium does not find a relative path.
      ...(wav ? [`--use-file-for-fake-audio-capture=${resolve(wav)}`] : []),
      "--autoplay-policy=no-user-gesture-required",
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
