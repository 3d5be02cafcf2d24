// Opens the dashboard for Seine-Saint-Denis in Debian's headless Chromium and checks
// that the DSFR header is there, that the chart holds one point per month of 2025 with
// the API's values, that the table under it shows the same months, and that no request
// left 127.0.0.1. Exits non-zero on any failure; prints OK at the end.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const base = process.env.BASE_URL;
const screenshot = process.env.SCREENSHOT;
assert.ok(base && base.startsWith("http://127.0.0.1:"), "BASE_URL must be a 127.0.0.1 address");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  const requests = [];
  const failures = [];
  page.on("request", (r) => requests.push(r.url()));
  page.on("requestfailed", (r) => failures.push(r.url()));
  page.on("pageerror", (e) => failures.push("erreur JS : " + e.message));

  // Signed out, the dashboard sends to the sign-in form; a wrong password is refused.
  await page.goto(`${base}/`, { waitUntil: "networkidle" });
  assert.match(page.url(), /\/connexion$/, "signed out: sent to the sign-in form");
  await page.fill("#identifiant", process.env.LOGIN);
  await page.fill("#mot_de_passe", "pas le bon mot de passe");
  await page.click("#connexion button[type=submit]");
  assert.match(await page.locator(".fr-alert--error").innerText(), /incorrect/);
  await page.fill("#identifiant", process.env.LOGIN);
  await page.fill("#mot_de_passe", process.env.PASSWORD);
  await Promise.all([page.waitForURL(`${base}/`), page.click("#connexion button[type=submit]")]);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "obs_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Strict", "session cookie HttpOnly, SameSite=Strict");
  assert.match(await page.locator("#utilisateur").innerText(), new RegExp(process.env.LOGIN.replace(".", "\\.")));

  await page.goto(`${base}/?territoire=D93&indicateur=taux_dnp_115&annee=2025`, { waitUntil: "networkidle" });
  await page.waitForSelector("body[data-pret='oui']", { timeout: 20000 });

  // DSFR header and its styles applied (the Marianne font comes from the embedded assets).
  assert.equal(await page.locator("header.fr-header").count(), 1, "DSFR header");
  assert.match(await page.locator(".fr-header__service-title").innerText(), /Observatoire SI SIAO/);
  assert.equal(await page.locator("html").getAttribute("lang"), "fr");
  const font = await page.evaluate(() => getComputedStyle(document.body).fontFamily);
  assert.match(font, /Marianne/, "DSFR stylesheet applied");

  // The chart's points are the API's values for 2025.
  const api = await page.evaluate(async () => {
    const r = await fetch("/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D93&pas=MOIS&du=2025-01-01&au=2026-01-01");
    return r.json();
  });
  assert.equal(api.length, 12, "12 months from the API");
  const chart = await page.evaluate(() => ({
    labels: window.observatoireChart.data.labels,
    data: window.observatoireChart.data.datasets[0].data,
  }));
  assert.deepEqual(chart.labels, api.map((r) => r.periode));
  assert.deepEqual(chart.labels, Array.from({ length: 12 }, (_, i) => `2025-${String(i + 1).padStart(2, "0")}`));
  chart.data.forEach((v, i) => {
    const expected = api[i].secret ? null : api[i].valeur;
    assert.ok(v === expected || Math.abs(v - expected) < 1e-12, `month ${i + 1}: chart ${v}, API ${expected}`);
  });
  // Seine-Saint-Denis is saturated: most months are shown; a few may be hidden by
  // secondary suppression, and each hidden month reads "s" in the table.
  const hidden = api.filter((r) => r.secret).length;
  assert.ok(hidden <= 4, `${hidden} secret months in 93`);
  const cells = await page.locator("#tableau tbody tr td:nth-child(2)").allInnerTexts();
  api.forEach((r, i) => {
    if (r.secret) assert.equal(cells[i].trim(), "s", `month ${i + 1} reads "s"`);
  });

  // The table holds the same months and the definition is shown.
  assert.equal(await page.locator("#tableau tbody tr").count(), 12);
  assert.match(await page.locator("#definition").innerText(), /NON_POURVUE/);
  assert.match(await page.locator("#titre-indicateur").innerText(), /Taux de demandes non pourvues/);

  // A départemental administrator of the 93 is offered its département, its région and
  // France only.
  const offered = await page.locator("#territoire option").evaluateAll((os) => os.map((o) => o.value));
  assert.deepEqual([...offered].sort(), ["D93", "FR", "R11"], "territories offered to the DDETS 93");

  // No request left the machine.
  const outside = requests.filter((u) => !u.startsWith(base + "/") && !u.startsWith("data:"));
  assert.deepEqual(outside, [], "requests outside 127.0.0.1");
  assert.deepEqual(failures, [], "failed requests or script errors");

  if (screenshot) {
    await page.screenshot({ path: screenshot, fullPage: true });
  }
  console.log(`OK : ${requests.length} requêtes, toutes vers ${base}`);
} finally {
  await browser.close();
}
