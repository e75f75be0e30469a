// The overview's load time in headless Chromium: signs in, then loads /overview N times and
// prints the medians of the navigation timing (time to the first byte, DOM content loaded,
// the load event) and the largest. Used by `steward bench ui --browser`.
// Usage: node overview_load.mjs BASE EMAIL PASSWORD [N]
import { chromium } from "playwright-core";

const [base, email, password, n = "20"] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(base + "/login");
  await page.fill("#email", email);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL("**/overview"), page.click("button[type=submit]")]);
  const runs = [];
  for (let i = 0; i < Number(n); i++) {
    await page.goto(base + "/overview", { waitUntil: "load" });
    runs.push(await page.evaluate(() => {
      const t = performance.getEntriesByType("navigation")[0];
      return { ttfb: t.responseStart - t.startTime, dom: t.domContentLoadedEventEnd - t.startTime, load: t.loadEventEnd - t.startTime };
    }));
  }
  const median = (k) => { const v = runs.map((r) => r[k]).sort((a, b) => a - b); return v[Math.floor(v.length / 2)]; };
  const max = (k) => Math.max(...runs.map((r) => r[k]));
  console.log(`overview in Chromium (${runs.length} loads): first byte median ${median("ttfb").toFixed(1)} ms; ` +
    `DOM content loaded median ${median("dom").toFixed(1)} ms; load event median ${median("load").toFixed(1)} ms, max ${max("load").toFixed(1)} ms`);
} finally {
  await browser.close();
}
