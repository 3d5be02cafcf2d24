// Time to render the indicator page, measured in the browser: from the start of the
// navigation to the moment the page's script has drawn the chart and the table
// (`window.observatoireRendu`, milliseconds since the navigation started). The first
// visit meets the server's cache empty; the next ones are the usual case. Prints one
// line per visit and a summary as JSON on the last line.
import { launch, signIn, watchedPage, base, ready, checkWatch } from "./common.mjs";

const path = process.env.PAGE || "/indicateurs/taux_dnp_115?territoire=D93&pas=MOIS";
const visits = parseInt(process.env.VISITES || "10", 10);
const browser = await launch();
try {
  const { page, watch } = await watchedPage(browser);
  await signIn(page, process.env.LOGIN, process.env.PASSWORD);
  const times = [];
  for (let i = 0; i < visits; i++) {
    await page.goto(`${base}${path}`, { waitUntil: "domcontentloaded" });
    await ready(page);
    const t = await page.evaluate(() => window.observatoireRendu);
    const rows = await page.locator("#tableau tbody tr").count();
    times.push(t);
    console.log(`visite ${i + 1} : ${t.toFixed(0)} ms (${rows} lignes dans le tableau)`);
  }
  checkWatch(watch);
  const rest = times.slice(1).sort((a, b) => a - b);
  const median = rest.length ? rest[Math.floor((rest.length - 1) / 2)] : times[0];
  console.log(JSON.stringify({ page: path, premiere_ms: Math.round(times[0]), mediane_suivantes_ms: Math.round(median), max_suivantes_ms: Math.round(rest[rest.length - 1] || times[0]) }));
  console.log("OK");
} finally {
  await browser.close();
}
