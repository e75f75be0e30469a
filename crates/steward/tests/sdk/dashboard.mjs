// Drives the dashboard in headless Chromium: signs in, opens every page, filters the
// accounts table, opens an account, acknowledges an alert, completes a task and creates a
// segment, checking what each page shows against the API. Saves a screenshot per page.
// Usage: node dashboard.mjs BASE EMAIL PASSWORD ADMIN_KEY OUT_DIR
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, email, password, key, out] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const api = async (path, init = {}) => {
  const r = await fetch(base + path, { ...init, headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" } });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
};
const check = (cond, what) => { if (!cond) throw new Error(`check failed: ${what}`); console.log(`ok: ${what}`); };
const fmt = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.on("dialog", (d) => d.accept());
const shot = (name) => page.screenshot({ path: `${out}/${name}.png`, fullPage: true });
try {
  await page.goto(base + "/overview");
  check(page.url().includes("/login"), "no session: the sign-in form");
  await page.fill("#email", email);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL("**/overview"), page.click("button[type=submit]")]);
  await shot("overview");
  const atRisk = (await api("/api/v1/accounts?band=at_risk&limit=1000")).data;
  check((await page.textContent('[data-kpi="at_risk"]')).trim() === String(atRisk.length), `overview: ${atRisk.length} accounts at risk`);
  const all = (await api("/api/v1/accounts?limit=1000")).data;
  const scored = all.filter((a) => a.score).length;
  check((await page.textContent('[data-kpi="scored"]')).trim() === String(scored), `overview: ${scored} accounts scored`);
  check((await page.locator("svg.chart").count()) >= 7, "overview: its charts, the KPIs' too");
  const kpis = await api("/api/v1/kpis");
  check(kpis.computed_at !== null, "overview: the KPIs were computed by scoring");
  for (const k of ["activation", "gross_mrr_churn", "logo_churn", "nrr", "nrr_year"]) {
    const measured = (kpis.kpis[k] || []).filter((m) => m.value !== null);
    const want = measured.length ? `${(measured[measured.length - 1].value * 100).toFixed(1)}%` : "—";
    check((await page.textContent(`[data-kpi="${k}"]`)).trim() === want, `overview: ${k} ${want}, as the API says`);
  }

  await page.click('nav a[href="/accounts"]');
  await page.selectOption("#band", "at_risk");
  await Promise.all([page.waitForURL("**/accounts?*"), page.click(".filters button[type=submit]")]);
  await shot("accounts");
  const rows = page.locator("#accounts tbody tr[data-account]");
  check((await rows.count()) === Math.min(atRisk.length, 50), `accounts: the at-risk filter lists ${atRisk.length}`);
  check((await page.locator("#accounts tbody .band.at_risk").count()) === (await rows.count()), "accounts: every row at risk");
  const counted = await api("/api/v1/accounts?band=at_risk&count=true&limit=1");
  check(counted.total === atRisk.length, `accounts: the API counts ${atRisk.length} at risk`);
  check((await page.textContent('[data-count="accounts"]')).trim() === String(atRisk.length), `accounts: the table says ${atRisk.length} match`);

  const first = atRisk.sort((a, b) => (a.account_id < b.account_id ? -1 : 1))[0];
  await Promise.all([page.waitForURL(`**/accounts/${first.account_id}`), page.click(`#accounts a[href="/accounts/${first.account_id}"]`)]);
  await shot("account");
  check((await page.textContent("h1")).includes(first.name || first.account_id), `account: ${first.account_id}'s page`);
  check((await page.textContent('[data-kpi="health"]')).trim() === fmt(first.score.health), `account: health ${fmt(first.score.health)}`);
  check((await page.locator("#components tbody tr").count()) >= 3, "account: the health components");
  check((await page.locator("#timeline li").count()) > 1, "account: a timeline");

  const open = (await api("/api/v1/alerts?status=open&limit=100")).data;
  check(open.length > 0, `alerts: ${open.length} open`);
  await page.goto(base + "/alerts?status=open");
  const alert = open[0];
  check((await page.textContent(`tr[data-alert="${alert.alert_id}"]`)).includes(alert.title), "alerts: the first alert's title");
  await Promise.all([page.waitForURL("**/alerts?*"), page.click(`tr[data-alert="${alert.alert_id}"] form[action$="/acknowledge"] button`)]);
  await shot("alerts");
  check((await api(`/api/v1/alerts/${alert.alert_id}`)).status === "acknowledged", "alerts: acknowledged in the store");

  const tasks = (await api("/api/v1/tasks?status=open&limit=100")).data;
  check(tasks.length > 0, `tasks: ${tasks.length} open`);
  await page.goto(base + "/tasks?who=all");
  const task = tasks[0];
  check((await page.locator(`tr[data-task="${task.task_id}"]`).count()) === 1, "tasks: the open task is listed");
  await Promise.all([page.waitForURL("**/tasks?*"), page.click(`tr[data-task="${task.task_id}"] form[action$="/done"] button`)]);
  await shot("tasks");
  check((await api(`/api/v1/tasks/${task.task_id}`)).status === "done", "tasks: done in the store");

  const condition = "health < 50";
  const preview = await api("/api/v1/segments/preview", { method: "POST", body: JSON.stringify({ condition }) });
  await page.goto(base + "/segments");
  await page.fill("#seg-condition", "health <");
  await page.waitForSelector("#seg-check.bad");
  check(true, "segments: an unfinished condition is flagged as typed");
  await page.fill("#seg-condition", condition);
  await page.waitForSelector("#seg-check.ok");
  check((await page.textContent("#seg-check")).includes(`${preview.size} of ${preview.of}`), `segments: the preview counts ${preview.size}`);
  await page.fill("#seg-name", "Below 50 (browser)");
  await Promise.all([page.waitForURL("**/segments?*"), page.click("form.editor button[type=submit]")]);
  await shot("segments");
  check((await page.textContent('tr[data-segment="Below 50 (browser)"] td.n')).trim() === String(preview.size), "segments: saved with its members");
  // Edited: opened in the editor, a new condition previewed and saved.
  const wider = "health < 60";
  const widerPreview = await api("/api/v1/segments/preview", { method: "POST", body: JSON.stringify({ condition: wider }) });
  await Promise.all([page.waitForURL("**/segments?edit=*"), page.click('tr[data-segment="Below 50 (browser)"] a.edit')]);
  check((await page.inputValue("#seg-condition")) === condition, "segments: the editor opens on the segment's condition");
  await page.fill("#seg-condition", wider);
  await page.waitForFunction((n) => document.querySelector("#seg-check.ok")?.textContent.includes(`${n} of`), widerPreview.size);
  await Promise.all([page.waitForURL("**/segments?done=*"), page.click("form.editor button[type=submit]")]);
  await shot("segment-edited");
  const edited = (await api("/api/v1/segments")).data.find((x) => x.segment.name === "Below 50 (browser)");
  check(edited.segment.condition === wider && edited.size === widerPreview.size, `segments: edited in the store, ${widerPreview.size} members`);
  check((await page.textContent('tr[data-segment="Below 50 (browser)"] td.n')).trim() === String(widerPreview.size), "segments: the table shows the new size");
  await Promise.all([page.waitForURL("**/segments?done=*"), page.click('tr[data-segment="Below 50 (browser)"] form[action$="/delete"] button')]);
  check(!(await api("/api/v1/segments")).data.some((x) => x.segment.name === "Below 50 (browser)"), "segments: deleted");

  const journeys = (await api("/api/v1/journeys")).data;
  await page.goto(base + "/journeys");
  await shot("journeys");
  check((await page.locator("#journeys tbody tr").count()) === journeys.length, `journeys: ${journeys.length} listed`);
  const j = journeys[0].journey ?? journeys[0];
  await page.goto(`${base}/journeys/${j.journey_id}`);
  await shot("journey");
  check((await page.locator("svg.journey g.step").count()) === j.definition.steps.length, `journey: ${j.definition.steps.length} steps drawn`);
  // Switched off and on again from its page.
  const was = j.enabled;
  await Promise.all([page.waitForURL(`**/journeys/${j.journey_id}?done=*`), page.click("#journey-toggle button")]);
  check((await api(`/api/v1/journeys/${j.journey_id}`)).journey.enabled === !was, `journey: ${was ? "disabled" : "enabled"} in the store`);
  check((await page.textContent("#journey-state")).trim() === (was ? "disabled" : "enabled"), "journey: the page says so");
  await Promise.all([page.waitForURL(`**/journeys/${j.journey_id}?done=*`), page.click("#journey-toggle button")]);
  check((await api(`/api/v1/journeys/${j.journey_id}`)).journey.enabled === was, "journey: back as it was");

  const models = (await api("/api/v1/models")).data;
  await page.goto(base + "/models");
  await shot("models");
  check((await page.locator("article.card").count()) === models.length, `models: ${models.length} cards`);

  await page.goto(base + "/settings");
  await shot("settings");
  const audit = await page.textContent("#audit");
  for (const a of ["alert.acknowledge", "task.done", "segment.create", "segment.update", "segment.delete", "journey.enable", "journey.disable", "session.sign_in"]) check(audit.includes(a), `settings: the audit log has ${a}`);

  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(base + "/overview");
  await shot("overview-narrow");
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 400, `a narrow window needs no sideways scrolling (${wide}px)`);
} finally {
  await browser.close();
}
console.log("dashboard: all checks passed");
