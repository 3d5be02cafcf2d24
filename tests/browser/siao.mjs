// The SIAO director's visit (SIAO 93): every page, every time step, every breakdown of
// the DNP rate, the map on several periods, the comparison with every territory offered,
// the data-quality page. Everywhere, no other département's figure may appear: not in
// an API answer the pages received, not in the page's text, not coloured on the map, not
// offered in a list. The région's (R11) and France's aggregates may. Prints OK at the end.
import assert from "node:assert/strict";
import { base, checkWatch, closeBrowser, launch, open, redrawn, screenshot, signIn, watchedPage } from "./common.mjs";

const own = process.env.DEPARTEMENT || "93";
const region = process.env.REGION || "11";
// The other départements of the demo lake, by the label the pages would give them.
const others = JSON.parse(process.env.AUTRES || '[["75","Paris"],["13","Bouches-du-Rhône"],["23","Creuse"]]');

const browser = await launch();
try {
  const { page, watch } = await watchedPage(browser);
  const checkedAnswers = { count: 0, rows: 0 };
  const pending = [];
  // Each API answer the page received whole ("requestfinished"): the body of a request the
  // page dropped on leaving (a "response" without its end) never comes, and waiting for it
  // hung this script once; such a body never reached the page either.
  page.on("requestfinished", (request) => {
    if (!request.url().startsWith(`${base}/api/v1/`)) return;
    pending.push(request.response().then((r) => {
      if (!r || !(r.headers()["content-type"] || "").startsWith("application/json")) return null;
      return r.json();
    }).then((body) => {
      if (body === null) return;
      checkedAnswers.count += 1;
      const list = Array.isArray(body) ? body : [];
      for (const row of list) {
        if (row && typeof row === "object") {
          checkedAnswers.rows += 1;
          if (row.territoire_niveau === "DEPARTEMENT") assert.equal(row.territoire, own, `${request.url()}: a row of D${row.territoire}`);
          if (row.territoire_niveau === "REGION") assert.equal(row.territoire, region, `${request.url()}: a row of R${row.territoire}`);
          if (row.niveau === "DEPARTEMENT") assert.equal(row.territoire, own, `${request.url()}: territory D${row.territoire} offered`);
          if (row.siao !== undefined) assert.equal(row.siao, own, `${request.url()}: quality of SIAO ${row.siao}`);
        }
      }
    }).catch((e) => { if (e instanceof assert.AssertionError) throw e; }));
  });
  const noOtherText = async (where) => {
    const text = await page.locator("main").innerText();
    for (const [code, name] of others) {
      assert.ok(!text.includes(`${code} – ${name}`), `${where}: « ${code} – ${name} » shown`);
      assert.ok(!text.includes(`SIAO ${code}`), `${where}: SIAO ${code} shown`);
    }
    const values = await page.locator("main select option, main input[type=checkbox]").evaluateAll((es) => es.map((e) => e.value));
    for (const v of values) {
      assert.ok(!/^D\d/.test(v) || v === `D${own}`, `${where}: ${v} offered`);
      assert.ok(!/^R\d/.test(v) || v === `R${region}`, `${where}: ${v} offered`);
    }
  };

  await signIn(page, process.env.LOGIN, process.env.PASSWORD);
  await open(page, "/");
  await noOtherText("accueil");

  await open(page, "/indicateurs");
  await noOtherText("catalogue");

  await open(page, "/indicateurs/taux_dnp_115");
  for (const pas of ["MOIS", "TRIMESTRE", "ANNEE", "HIVER", "SEMAINE", "JOUR"]) {
    await redrawn(page, () => page.selectOption("#pas", pas));
    await noOtherText(`indicateur ${pas}`);
  }
  await redrawn(page, () => page.selectOption("#pas", "MOIS"));
  for (const territory of ["FR", `R${region}`, `D${own}`]) {
    await redrawn(page, () => page.selectOption("#territoire", territory));
    for (const dimension of await page.locator("#dimension option").evaluateAll((os) => os.map((o) => o.value))) {
      await redrawn(page, () => page.selectOption("#dimension", dimension));
      await noOtherText(`indicateur ${territory} ${dimension}`);
    }
  }
  await screenshot(page, "siao-indicateur");

  // The map, on each time step's latest period, for two indicators.
  for (const indicator of ["taux_dnp_115", "places_installees"]) {
    await open(page, `/carte?indicateur=${indicator}`);
    for (const pas of ["MOIS", "TRIMESTRE", "ANNEE", "HIVER"]) {
      await redrawn(page, () => page.selectOption("#pas", pas));
      const coloured = await page.locator("#carte path:not(.hors-perimetre)").evaluateAll((ps) => [...new Set(ps.map((p) => p.dataset.departement))]);
      assert.deepEqual(coloured, [own], `map ${indicator} ${pas}: coloured ${coloured}`);
      const rows = await page.locator("#tableau tbody tr").evaluateAll((rs) => rs.map((r) => r.dataset.departement));
      assert.deepEqual(rows, [own], `map table ${indicator} ${pas}`);
      // Hovering another département tells only that it is outside the scope.
      const other = page.locator('#carte .carte__metropole path[data-departement="13"]');
      const box = await other.boundingBox();
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      assert.match(await page.locator("#infobulle").innerText(), /hors de votre périmètre/);
      await noOtherText(`carte ${indicator} ${pas}`);
    }
  }
  await screenshot(page, "siao-carte");

  // The comparison, with every territory offered checked.
  await open(page, "/comparaison?indicateur=personnes_sans_solution_115&pas=MOIS");
  for (const box of await page.locator("#liste-territoires input").all()) {
    const id = await box.getAttribute("id");
    if (!(await box.isChecked())) await redrawn(page, () => page.click(`label[for="${id}"]`));
  }
  assert.equal(await page.locator("#liste-territoires input:checked").count(), 3, "every territory offered is compared");
  assert.equal(await page.locator("#liste-territoires input").count(), 3, "three territories offered: D, R, FR");
  await noOtherText("comparaison");
  await screenshot(page, "siao-comparaison");

  await open(page, "/qualite");
  await noOtherText("qualite");

  await Promise.all(pending);
  assert.ok(checkedAnswers.count >= 40 && checkedAnswers.rows > 500, `answers checked: ${JSON.stringify(checkedAnswers)}`);
  checkWatch(watch);
  console.log(`OK : ${checkedAnswers.count} réponses de l'API (${checkedAnswers.rows} lignes) vérifiées, aucune d'un autre département`);
} finally {
  await closeBrowser(browser);
}
