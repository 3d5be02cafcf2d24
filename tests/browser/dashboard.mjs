// The départemental administrator's visit (DDETS 93), in Debian's headless Chromium:
// sign in (a wrong password first), read the key figures of the home page, open the DNP
// rate, check the chart and the table against the API, break it down, export it as XLSX
// (saved to XLSX_PATH for the Rust test to open), switch to the map, the comparison, the
// data-quality page and the catalogue. axe-core checks every page; a screenshot of each is
// saved; no request leaves 127.0.0.1. Exits non-zero on any failure; prints OK at the end.
import assert from "node:assert/strict";
import { accessibility, base, checkWatch, closeBrowser, launch, open, ready, redrawn, screenshot, signIn, watchedPage } from "./common.mjs";

const browser = await launch();
try {
  const { page, watch, context } = await watchedPage(browser);
  const api = (path) => page.evaluate(async (p) => (await fetch(p)).json(), path);

  // Signed out, every page sends to the sign-in form; a wrong password is refused.
  await page.goto(`${base}/carte`, { waitUntil: "networkidle" });
  assert.match(page.url(), /\/connexion$/, "signed out: the map sends to the sign-in form");
  await page.fill("#identifiant", process.env.LOGIN);
  await page.fill("#mot_de_passe", "pas le bon mot de passe");
  await page.click("#connexion button[type=submit]");
  assert.match(await page.locator(".fr-alert--error").innerText(), /incorrect/);
  await signIn(page, process.env.LOGIN, process.env.PASSWORD);
  const session = (await context.cookies()).find((c) => c.name === "obs_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Strict", "session cookie HttpOnly, SameSite=Strict");

  // Home: the five key figures of D93 for the last month, with their changes.
  await ready(page);
  assert.equal(await page.locator("html").getAttribute("lang"), "fr");
  assert.equal(await page.locator("header.fr-header").count(), 1, "DSFR header");
  assert.match(await page.evaluate(() => getComputedStyle(document.body).fontFamily), /Marianne/, "DSFR stylesheet applied");
  assert.match(await page.locator("#utilisateur").innerText(), new RegExp(process.env.LOGIN.replace(".", "\\.")));
  assert.equal(await page.locator("#territoire").inputValue(), "D93", "home opens on the user's département");
  const cards = page.locator("#chiffres-cles .fr-card");
  assert.equal(await cards.count(), 5, "five key figures");
  assert.deepEqual(await cards.evaluateAll((cs) => cs.map((c) => c.dataset.indicateur)),
    ["taux_dnp_115", "dnp_115", "personnes_sans_solution_115", "delai_attente_admission", "taux_occupation"]);
  const dnp = await api("/api/v1/indicateurs/dnp_115/valeurs?territoire=D93&pas=MOIS");
  const last = dnp[dnp.length - 1];
  const shown = (await cards.nth(1).locator(".chiffre-cle").innerText()).trim();
  const expected = last.secret ? "s" : new Intl.NumberFormat("fr-FR", { maximumFractionDigits: 0 }).format(last.valeur);
  assert.equal(shown, expected, `unmet requests of ${last.periode}`);
  assert.match(await page.locator("#titre-chiffres").innerText(), /décembre 2025/);
  assert.match(await cards.nth(1).innerText(), /Par rapport à novembre 2025/);
  assert.match(await cards.nth(1).innerText(), /Par rapport à décembre 2024 : non publié/);
  assert.match(await cards.nth(1).innerText(), /provisoire/i);
  // Keyboard: the first Tab reaches the skip link to the content, with a visible focus.
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => {
    const e = document.activeElement;
    const style = getComputedStyle(e);
    return { text: e.textContent.trim(), href: e.getAttribute("href"), outline: style.outlineStyle, width: parseFloat(style.outlineWidth) };
  });
  assert.deepEqual([focused.text, focused.href], ["Contenu", "#contenu"], "first Tab: the skip link");
  assert.ok(focused.outline !== "none" && focused.width > 0, `visible focus: ${JSON.stringify(focused)}`);
  await accessibility(page, "accueil");
  await screenshot(page, "accueil-d93");

  // The DNP rate, from its card.
  await Promise.all([page.waitForURL(/\/indicateurs\/taux_dnp_115/), cards.nth(0).locator("a").click()]);
  await ready(page);
  assert.match(await page.locator("#titre-indicateur").innerText(), /Taux de demandes non pourvues/);
  assert.match(await page.locator("#definition").innerText(), /NON_POURVUE/);
  const months = await api("/api/v1/indicateurs/taux_dnp_115/valeurs?territoire=D93&pas=MOIS");
  assert.equal(months.length, 12, "12 months from the API");
  const chart = await page.evaluate(() => window.observatoireGraphique.data.datasets[0].data);
  assert.equal(chart.length, 12);
  chart.forEach((v, i) => {
    const e = months[i].secret ? null : months[i].valeur;
    assert.ok(v === e || Math.abs(v - e) < 1e-12, `month ${i + 1}: chart ${v}, API ${e}`);
  });
  assert.equal(await page.locator("#tableau tbody tr").count(), 12);
  const cells = await page.locator("#tableau tbody tr td:nth-child(2)").allInnerTexts();
  months.forEach((r, i) => { if (r.secret) assert.equal(cells[i].trim(), "s", `month ${i + 1} reads "s"`); });
  assert.ok(months.filter((r) => r.secret).length <= 4, "Seine-Saint-Denis is mostly published");
  const offered = await page.locator("#territoire option").evaluateAll((os) => os.map((o) => o.value));
  assert.deepEqual([...offered].sort(), ["D93", "FR", "R11"], "territories offered to the DDETS 93");
  await accessibility(page, "indicateur");
  await screenshot(page, "indicateur-dnp-d93");

  // Quarters, chosen with the keyboard only, then a breakdown by household composition
  // (one column per modality).
  await page.focus("#pas");
  await redrawn(page, () => page.keyboard.press("ArrowDown"));
  assert.equal(await page.locator("#pas").inputValue(), "TRIMESTRE", "the time step changes from the keyboard");
  assert.equal(await page.locator("#tableau tbody tr").count(), 4, "four quarters of 2025");
  assert.match(page.url(), /pas=TRIMESTRE/);
  await redrawn(page, () => page.selectOption("#dimension", "composition"));
  const heads = await page.locator("#tableau thead th").allInnerTexts();
  assert.equal(heads[0], "Période");
  assert.ok(heads.includes("Ensemble") && heads.includes("Homme seul"), `composition columns: ${heads}`);
  await redrawn(page, () => page.selectOption("#dimension", ""));
  await redrawn(page, () => page.selectOption("#pas", "MOIS"));

  // Export as XLSX with a choice of columns: the file the browser downloads.
  // DSFR checkboxes are drawn by their labels, which take the clicks, as for a user.
  await redrawn(page, () => page.click('label[for="colonne-statut"]'));
  await redrawn(page, () => page.click('label[for="colonne-debut"]'));
  assert.equal(await page.isChecked("#colonne-statut"), false);
  assert.equal(await page.isChecked("#colonne-debut"), true);
  const href = await page.locator("#export-xlsx").getAttribute("href");
  assert.match(href, /format=xlsx/);
  assert.match(href, /colonnes=[^&]*debut/);
  assert.doesNotMatch(href, /colonnes=[^&]*statut/);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-xlsx")]);
  assert.match(download.suggestedFilename(), /\.xlsx$/);
  await download.saveAs(process.env.XLSX_PATH);

  // The map of the DNP rate, from the indicator page.
  await Promise.all([page.waitForURL(/\/carte\?/), page.click("#lien-carte")]);
  await ready(page);
  const period = await page.locator("#periode").inputValue();
  assert.equal(period, "2025-12", "the map opens on the latest month");
  const onMap = await api(`/api/v1/indicateurs/taux_dnp_115/carte?pas=MOIS&periode=${period}`);
  assert.deepEqual(onMap.map((r) => r.code_territoire), ["D93"], "the map route answers the scope's département only");
  assert.equal(await page.locator("#carte path").count(), 101 + 8, "101 départements and the Île-de-France enlargement");
  for (const code of ["971", "972", "973", "974", "976", "2A", "2B"]) {
    assert.equal(await page.locator(`#carte path[data-departement="${code}"]`).count(), 1, `shape of ${code}`);
  }
  const coloured = await page.locator("#carte path:not(.hors-perimetre)").evaluateAll((ps) => [...new Set(ps.map((p) => p.dataset.departement))]);
  assert.deepEqual(coloured, ["93"], "only the département of the scope is coloured");
  const rows = await page.locator("#tableau tbody tr").evaluateAll((rs) => rs.map((r) => r.dataset.departement));
  assert.deepEqual(rows, ["93"]);
  const fmt = new Intl.NumberFormat("fr-FR", { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  assert.equal((await page.locator("#tableau tbody tr td").first().innerText()).trim(),
    onMap[0].secret ? "s" : fmt.format(onMap[0].valeur));
  const box = await page.locator('#carte .carte__metropole path[data-departement="93"]').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  assert.match(await page.locator("#infobulle").innerText(), /Seine-Saint-Denis/);
  await accessibility(page, "carte");
  await screenshot(page, "carte-dnp");

  // Comparison: the département, its région and France by default.
  await open(page, "/comparaison?indicateur=taux_dnp_115&pas=TRIMESTRE");
  const compared = await page.locator("#liste-territoires input:checked").evaluateAll((is) => is.map((i) => i.value));
  assert.deepEqual([...compared].sort(), ["D93", "FR", "R11"], "D93, R11 and FR compared");
  const cmpHeads = await page.locator("#tableau thead th").allInnerTexts();
  assert.equal(cmpHeads.length, 4, `period + three territories: ${cmpHeads}`);
  assert.equal(await page.locator("#tableau tbody tr").count(), 4);
  assert.equal(await page.evaluate(() => window.observatoireGraphique.data.datasets.length), 3);
  await accessibility(page, "comparaison");
  await screenshot(page, "comparaison-d93");

  // The data-quality report of the SIAO 93.
  await open(page, "/qualite");
  assert.equal(await page.locator("#siao").inputValue(), "93");
  assert.ok((await page.locator("#tableau-mois tbody tr").count()) >= 12, "a row per month");
  await accessibility(page, "qualite");
  await screenshot(page, "qualite-93");

  // The catalogue lists the 32 national indicators.
  await open(page, "/indicateurs");
  assert.equal(await page.locator("#catalogue tbody tr").count(), 32);
  await accessibility(page, "catalogue");

  checkWatch(watch);
  console.log(`OK : ${watch.requests.length} requêtes, toutes vers ${base}`);
} finally {
  await closeBrowser(browser);
}
