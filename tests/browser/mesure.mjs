// Time to render pages of the UI, measured in the browser: from the start of the
// navigation to the moment the page's script has drawn its chart, map and table
// (`window.observatoireRendu`, milliseconds since the navigation started). Each page is
// visited VISITES times: the first visit meets the server's cache empty, the next ones
// are the usual case. Prints one line per visit and, per page, a summary as JSON.
import { base, checkWatch, closeBrowser, launch, ready, signIn, watchedPage } from "./common.mjs";

const pages = (process.env.PAGES || "/indicateurs/taux_dnp_115?territoire=D93&pas=MOIS").split(" ");
const visits = parseInt(process.env.VISITES || "10", 10);
const browser = await launch();
try {
  const { page, watch } = await watchedPage(browser);
  await signIn(page, process.env.LOGIN, process.env.PASSWORD);
  for (const path of pages) {
    const times = [];
    for (let i = 0; i < visits; i++) {
      await page.goto(`${base}${path}`, { waitUntil: "domcontentloaded" });
      await ready(page);
      const t = await page.evaluate(() => window.observatoireRendu);
      const rows = await page.locator("main table tbody tr").count();
      times.push(t);
      console.log(`${path} visite ${i + 1} : ${t.toFixed(0)} ms (${rows} lignes de tableau)`);
    }
    const rest = times.slice(1).sort((a, b) => a - b);
    const median = rest.length ? rest[Math.floor((rest.length - 1) / 2)] : times[0];
    console.log(JSON.stringify({ page: path, premiere_ms: Math.round(times[0]), mediane_suivantes_ms: Math.round(median), max_suivantes_ms: Math.round(rest[rest.length - 1] || times[0]) }));
  }
  checkWatch(watch);
  console.log("OK");
} finally {
  await closeBrowser(browser);
}
