// The dashboard page: pick a territory, an indicator and a year; see the monthly
// chart, the table under it and the definition from the catalogue. Everything is read
// from this server's API; nothing is loaded from elsewhere.
(function () {
  "use strict";

  var nombre = new Intl.NumberFormat("fr-FR", { maximumFractionDigits: 1 });
  var pourcent = new Intl.NumberFormat("fr-FR", { style: "percent", maximumFractionDigits: 1 });
  var moisFr = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"];

  var moisCourts = ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."];

  var els = {
    territoire: document.getElementById("territoire"),
    indicateur: document.getElementById("indicateur"),
    annee: document.getElementById("annee"),
    titre: document.getElementById("titre-indicateur"),
    sousTitre: document.getElementById("sous-titre"),
    etiquettes: document.getElementById("etiquettes"),
    definition: document.getElementById("definition"),
    unite: document.getElementById("unite"),
    corps: document.querySelector("#tableau tbody"),
    titreTableau: document.getElementById("titre-tableau"),
    graphique: document.getElementById("graphique"),
    publication: document.getElementById("publication"),
    erreur: document.getElementById("erreur"),
    erreurTexte: document.getElementById("erreur-texte")
  };
  var catalogue = [];
  var territoires = [];
  var chart = null;
  var publication = null;

  function lireJson(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      if (r.status === 401) { window.location.assign("/connexion"); }
      return r.json().then(function (corps) {
        if (!r.ok) { throw new Error(corps && corps.erreur ? corps.erreur : "erreur " + r.status); }
        return corps;
      });
    });
  }

  function montrerErreur(message) {
    els.erreurTexte.textContent = message;
    els.erreur.hidden = false;
  }

  function formater(indicateur, v) {
    if (v === null || v === undefined) { return "–"; }
    return indicateur.unite === "ratio" ? pourcent.format(v) : nombre.format(v);
  }

  function libelleMois(periode) {
    var parts = periode.split("-");
    return moisFr[parseInt(parts[1], 10) - 1] + " " + parts[0];
  }

  function libelleCourt(periode) {
    var parts = periode.split("-");
    return moisCourts[parseInt(parts[1], 10) - 1] + " " + parts[0];
  }

  function option(select, value, text) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
  }

  function parametres() {
    return new URLSearchParams(window.location.search);
  }

  function indicateurChoisi() {
    return catalogue.find(function (i) { return i.id === els.indicateur.value; });
  }

  function territoireChoisi() {
    return territoires.find(function (t) { return t.code === els.territoire.value; });
  }

  function afficher() {
    var ind = indicateurChoisi();
    var ter = territoireChoisi();
    var annee = els.annee.value;
    if (!ind || !ter || !annee) { return; }
    var p = new URLSearchParams({ territoire: ter.code, indicateur: ind.id, annee: annee });
    window.history.replaceState(null, "", "?" + p.toString());
    els.erreur.hidden = true;
    els.titre.textContent = ind.libelle + " (" + ind.code + ")";
    els.sousTitre.textContent = ter.libelle + ", " + annee;
    els.definition.textContent = ind.definition;
    els.unite.textContent = "Unité : " + (ind.unite === "ratio" ? "part (en %)" : ind.unite) + " · Domaine : " + ind.domaine;
    var url = "/api/v1/indicateurs/" + encodeURIComponent(ind.id) + "/valeurs?" + new URLSearchParams({
      territoire: ter.code, pas: "MOIS", du: annee + "-01-01", au: (parseInt(annee, 10) + 1) + "-01-01"
    }).toString();
    lireJson(url).then(function (lignes) {
      dessiner(ind, ter, annee, lignes);
    }).catch(function (e) { montrerErreur(e.message); });
  }

  function dessiner(ind, ter, annee, lignes) {
    var labels = lignes.map(function (l) { return l.periode; });
    var valeurs = lignes.map(function (l) { return l.secret ? null : l.valeur; });
    var ratio = ind.unite === "ratio";
    els.graphique.setAttribute("aria-label", "Graphique : " + ind.libelle + ", " + ter.libelle + ", par mois de " + annee + ". Les valeurs figurent dans le tableau qui suit.");
    if (chart) { chart.destroy(); }
    chart = new window.Chart(els.graphique, {
      type: "line",
      data: {
        labels: labels,
        datasets: [{
          label: ind.libelle,
          data: valeurs,
          borderColor: "#000091",
          backgroundColor: "#000091",
          pointRadius: 4,
          spanGaps: false
        }]
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: {
          x: { ticks: { callback: function (v) { return libelleCourt(this.getLabelForValue(v)); } } },
          y: { beginAtZero: true, ticks: { callback: function (v) { return ratio ? pourcent.format(v) : nombre.format(v); } } }
        },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: {
            title: function (items) { return items.length ? libelleMois(items[0].label) : ""; },
            label: function (c) { return formater(ind, c.parsed.y); }
          } }
        }
      }
    });
    window.observatoireChart = chart;
    els.titreTableau.textContent = ind.libelle + " – " + ter.libelle + " – " + annee;
    els.corps.textContent = "";
    lignes.forEach(function (l) {
      var tr = document.createElement("tr");
      tr.dataset.periode = l.periode;
      var cellules = [
        libelleMois(l.periode),
        l.secret ? "s" : formater(ind, l.valeur),
        l.secret || l.numerateur === null ? (l.secret ? "s" : "–") : nombre.format(l.numerateur),
        l.secret || l.denominateur === null ? (l.secret ? "s" : "–") : nombre.format(l.denominateur),
        l.statut === "DEFINITIF" ? "définitif" : "provisoire"
      ];
      cellules.forEach(function (texte, i) {
        var cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) { cell.scope = "row"; }
        if (i > 0 && i < 4) { cell.className = "nombre"; }
        if (texte === "s") {
          var abbr = document.createElement("abbr");
          abbr.title = "secret statistique";
          abbr.textContent = "s";
          cell.appendChild(abbr);
        } else {
          cell.textContent = texte;
        }
        tr.appendChild(cell);
      });
      els.corps.appendChild(tr);
    });
    var version = lignes.length ? lignes[0].version : null;
    var quand = publication ? " du " + new Date(publication.calculee_le).toLocaleString("fr-FR", { dateStyle: "long", timeStyle: "short" }) : "";
    els.publication.textContent = version ? "Publication n° " + version + quand + " ; valeurs provisoires tant que le mois n'est pas clos." : "Aucune valeur publiée pour ce choix.";
    document.body.dataset.pret = "oui";
  }

  function demarrer() {
    Promise.all([lireJson("/api/v1/indicateurs"), lireJson("/api/v1/territoires"), lireJson("/api/v1/publications")]).then(function (r) {
      catalogue = r[0];
      territoires = r[1];
      if (r[2].length) {
        publication = r[2][0];
        document.getElementById("seuil").textContent = String(publication.seuil_secret);
      }
      catalogue.forEach(function (i) { option(els.indicateur, i.id, i.code + " – " + i.libelle); });
      territoires.forEach(function (t) { option(els.territoire, t.code, t.libelle); });
      var p = parametres();
      if (p.get("indicateur")) { els.indicateur.value = p.get("indicateur"); }
      if (!els.indicateur.value) { els.indicateur.value = "taux_dnp_115"; }
      if (p.get("territoire")) { els.territoire.value = p.get("territoire"); }
      return lireJson("/api/v1/indicateurs/demandes_115/valeurs?territoire=FR&pas=ANNEE");
    }).then(function (annees) {
      annees.map(function (l) { return l.periode; }).reverse().forEach(function (a) { option(els.annee, a, a); });
      var demandee = parametres().get("annee");
      if (demandee) { els.annee.value = demandee; }
      [els.territoire, els.indicateur, els.annee].forEach(function (s) { s.addEventListener("change", afficher); });
      afficher();
    }).catch(function (e) { montrerErreur(e.message); });
  }

  demarrer();
})();
