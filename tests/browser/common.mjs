// What the browser tests share: Debian's headless Chromium through playwright-core, the
// sign-in form, the accessibility check (axe-core, run inside the page), and the guard
// that no request leaves 127.0.0.1 and no script fails.
import { chromium } from "playwright-core";
import AxeBuilder from "@axe-core/playwright";
import assert from "node:assert/strict";

export const base = process.env.BASE_URL;
assert.ok(base && base.startsWith("http://127.0.0.1:"), "BASE_URL must be a 127.0.0.1 address");

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * Closes the browser, or stops waiting after 15 s: once, in CI, Chromium never answered
 * the close after a script had passed, and node waited forever. The script then ends with
 * the exit code it has (an error thrown before still ends it at once, with code 1), and
 * Playwright kills the browser as the process exits.
 */
export async function closeBrowser(browser) {
  let timer;
  const closed = await Promise.race([
    browser.close().then(() => true),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(false), 15000);
    }),
  ]);
  clearTimeout(timer);
  if (!closed) {
    console.error("Chromium ne s'est pas fermé en 15 s : il est arrêté à la sortie du script");
    setTimeout(() => process.exit(), 1000).unref();
  }
}

/** A page in a fresh context, watched: every request, failed request and script error. */
export async function watchedPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1400 }, acceptDownloads: true, locale: "fr-FR" });
  const page = await context.newPage();
  const watch = { requests: [], failures: [], responses: [] };
  page.on("request", (r) => watch.requests.push(r.url()));
  page.on("requestfailed", (r) => {
    // A download navigates away from nothing; Chromium reports it as aborted.
    if (!/format=(xlsx|csv|parquet)/.test(r.url())) watch.failures.push(r.url() + " " + (r.failure() || {}).errorText);
  });
  page.on("pageerror", (e) => watch.failures.push("erreur JS : " + e.message));
  page.on("response", (r) => watch.responses.push(r));
  return { context, page, watch };
}

export async function signIn(page, login, password) {
  await page.goto(`${base}/`, { waitUntil: "networkidle" });
  assert.match(page.url(), /\/connexion$/, "signed out: sent to the sign-in form");
  await page.fill("#identifiant", login);
  await page.fill("#mot_de_passe", password);
  await Promise.all([page.waitForURL(`${base}/**`), page.click("#connexion button[type=submit]")]);
}

/** Opens a page of the UI and waits until its script has drawn it. */
export async function open(page, path) {
  await page.goto(`${base}${path}`, { waitUntil: "domcontentloaded" });
  await ready(page);
}

export async function ready(page) {
  await page.waitForFunction(() => document.body.dataset.pret === "oui" || document.body.dataset.pret === "erreur", null, { timeout: 30000 });
  const state = await page.evaluate(() => document.body.dataset.pret);
  if (state !== "oui") {
    throw new Error("page en erreur : " + (await page.locator("#erreur-texte").innerText()));
  }
}

/** Waits for the next drawing after an action that redraws the page. */
export async function redrawn(page, action) {
  await page.evaluate(() => { document.body.dataset.pret = "non"; });
  await action();
  await ready(page);
}

/** axe-core over the whole page (WCAG 2.1 A and AA rules): the serious and critical
 * violations, with their nodes, for the report. */
export async function accessibility(page, name) {
  const result = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  const grave = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const minor = result.violations.filter((v) => !(v.impact === "serious" || v.impact === "critical"));
  const describe = (v) => `${v.id} (${v.impact}) : ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`;
  if (minor.length) console.log(`accessibilité ${name} : ${minor.length} écart(s) mineur(s) : ${minor.map(describe).join(" ; ")}`);
  assert.deepEqual(grave.map(describe), [], `axe-core: serious or critical violations on ${name}`);
  return { passes: result.passes.length, violations: result.violations.length };
}

export function checkWatch(watch) {
  const outside = watch.requests.filter((u) => !u.startsWith(base + "/") && !u.startsWith("data:") && !u.startsWith("blob:"));
  assert.deepEqual(outside, [], "requests outside 127.0.0.1");
  assert.deepEqual(watch.failures, [], "failed requests or script errors");
}

export async function screenshot(page, name) {
  const dir = process.env.SCREENSHOTS;
  if (dir) await page.screenshot({ path: `${dir}/${name}.png`, fullPage: true });
}
