// The pages of the web UI. The server sends every page as the same DSFR shell around a
// static body (`<body data-page="…">`); this script fills it from the server's own API,
// with the session's cookie, so that every figure shown went through the authorisation
// module and the audit log. Labels, definitions and units come from the catalogue
// (`/api/v1/indicateurs`), never from here. Nothing is loaded from another machine.
(function () {
  "use strict";

  // ---------------------------------------------------------------- formats (French)
  var entier = new Intl.NumberFormat("fr-FR", { maximumFractionDigits: 0 });
  var decimal = new Intl.NumberFormat("fr-FR", { maximumFractionDigits: 1 });
  var pourcent = new Intl.NumberFormat("fr-FR", { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  var MOIS = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"];
  var MOIS_COURTS = ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."];
  var PAS = [
    ["MOIS", "Mois"], ["TRIMESTRE", "Trimestre"], ["ANNEE", "Année"], ["HIVER", "Hiver (novembre à mars)"],
    ["SEMAINE", "Semaine"], ["JOUR", "Jour (90 derniers jours)"]
  ];
  // The key figures of the home page (INDICATORS.md ids).
  var CHIFFRES_CLES = ["taux_dnp_115", "dnp_115", "personnes_sans_solution_115", "delai_attente_admission", "taux_occupation"];
  // The DSFR's illustrative colours, dark enough on white for lines and points.
  var COULEURS = ["#000091", "#E1000F", "#18753C", "#A558A0", "#B34000", "#716043", "#006A6F", "#3A3A3A", "#7F5200", "#6E445A"];
  // Sequential blues of the DSFR (blue France), light to dark, for the map; fewer classes
  // take the darkest ones, so that a class never fades into the grey of the background.
  var CLASSES_CARTE = ["#CACAFB", "#9A9AF8", "#6A6AF4", "#3535BF", "#000091"];
  var MODALITES = {
    HOMME_SEUL: "Homme seul", FEMME_SEULE: "Femme seule", HOMME_SEUL_AVEC_ENFANTS: "Homme seul avec enfants",
    FEMME_SEULE_AVEC_ENFANTS: "Femme seule avec enfants", COUPLE_SANS_ENFANT: "Couple sans enfant",
    COUPLE_AVEC_ENFANTS: "Couple avec enfants", GROUPE_SANS_ENFANT: "Groupe sans enfant",
    GROUPE_AVEC_ENFANTS: "Groupe avec enfants", MINEUR_ISOLE: "Mineur isolé", INCONNUE: "Inconnue",
    NON_RENSEIGNE: "Non renseigné", F: "Femmes", M: "Hommes", INCONNU: "Inconnu", OUI: "Oui", NON: "Non",
    P75: "75e centile", P90: "90e centile"
  };
  var REGLES = {
    CHAMP_OBLIGATOIRE: "Un champ obligatoire est vide",
    CODE_INCONNU_OBLIGATOIRE: "Un code obligatoire n'est pas dans la nomenclature",
    CODE_INCONNU: "Un code facultatif n'est pas dans la nomenclature",
    REFERENCE_ORPHELINE: "La ligne renvoie à une ligne absente",
    DATES_INCOHERENTES: "Les dates se contredisent (sortie avant entrée…)",
    STATUT_SANS_DATE: "Un statut final sans sa date",
    DOUBLON_115: "Doublon d'une demande 115 (même ménage, même jour)",
    MOTIF_MANQUANT: "Demande non pourvue sans motif",
    DEPARTEMENT_HORS_COG: "Département absent du code officiel géographique",
    SEJOURS_CHEVAUCHANTS: "Séjours d'une même personne qui se chevauchent",
    DEMANDE_SANS_PERSONNE: "Demande sans personne rattachée",
    PARENT_QUARANTAINE: "Ligne rattachée à une ligne en quarantaine"
  };
  var TABLES = {
    demande: "Demandes", personne: "Personnes", menage: "Ménages", orientation: "Orientations",
    prise_en_charge: "Séjours", dispositif: "Dispositifs", groupe_places: "Groupes de places",
    demande_personne: "Personnes des demandes", menage_personne: "Membres des ménages", evaluation: "Évaluations",
    liste_attente: "Listes d'attente"
  };

  function libelleModalite(code) {
    if (MODALITES[code]) { return MODALITES[code]; }
    if (/^\d+-\d+$/.test(code)) { return code.replace("-", " à ") + " ans"; }
    if (/^\d+\+$/.test(code)) { return code.slice(0, -1) + " ans ou plus"; }
    var t = code.replace(/_/g, " ").toLowerCase();
    return t.charAt(0).toUpperCase() + t.slice(1);
  }

  function libellePeriode(pas, p) {
    var m;
    if (pas === "MOIS") { m = p.split("-"); return MOIS[parseInt(m[1], 10) - 1] + " " + m[0]; }
    if (pas === "TRIMESTRE") { m = p.split("-T"); return (m[1] === "1" ? "1er" : m[1] + "e") + " trimestre " + m[0]; }
    if (pas === "HIVER") { return "hiver " + p.replace("-", "–"); }
    if (pas === "SEMAINE") { m = p.split("-W"); return "semaine " + parseInt(m[1], 10) + " de " + m[0]; }
    if (pas === "JOUR") { m = p.split("-"); return parseInt(m[2], 10) + " " + MOIS[parseInt(m[1], 10) - 1] + " " + m[0]; }
    return p;
  }

  function libelleCourt(pas, p) {
    var m;
    if (pas === "MOIS") { m = p.split("-"); return MOIS_COURTS[parseInt(m[1], 10) - 1] + " " + m[0]; }
    if (pas === "JOUR") { m = p.split("-"); return m[2] + "/" + m[1]; }
    return p;
  }

  function libellePas(pas) {
    var t = PAS.find(function (x) { return x[0] === pas; });
    return t ? t[1] : pas;
  }

  function formater(ind, v) {
    if (v === null || v === undefined) { return "–"; }
    if (ind.unite === "ratio") { return pourcent.format(v); }
    if (ind.unite === "jours") { return entier.format(v) + " j"; }
    return Math.abs(v - Math.round(v)) < 1e-9 ? entier.format(v) : decimal.format(v);
  }

  function texteValeur(ind, ligne) {
    if (!ligne) { return "non publié"; }
    if (ligne.secret) { return "s"; }
    return formater(ind, ligne.valeur);
  }

  function uniteLisible(ind) {
    return ind.unite === "ratio" ? "part (en %)" : ind.unite;
  }

  // ---------------------------------------------------------------- page helpers
  var el = function (id) { return document.getElementById(id); };

  function meta(name) {
    var m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.content : "";
  }

  function lireJson(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { window.location.assign("/connexion"); }
      return r.json().then(function (corps) {
        if (!r.ok) { throw new Error(corps && corps.erreur ? corps.erreur : "erreur " + r.status); }
        return corps;
      });
    });
  }

  function montrerErreur(e) {
    el("erreur-texte").textContent = e && e.message ? e.message : String(e);
    el("erreur").hidden = false;
    document.body.dataset.pret = "erreur";
  }

  function cacherErreur() { el("erreur").hidden = true; }

  function option(select, value, text) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
    return o;
  }

  function parametres() { return new URLSearchParams(window.location.search); }

  function memoriser(p) { window.history.replaceState(null, "", window.location.pathname + "?" + p.toString()); }

  function pret() {
    document.body.dataset.pret = "oui";
    window.observatoireRendu = performance.now();
  }

  // Writes a value into an element; "s" as an abbreviation that says its meaning.
  function ecrire(element, texte) {
    if (texte === "s") {
      var abbr = document.createElement("abbr");
      abbr.title = "secret statistique";
      abbr.textContent = "s";
      element.appendChild(abbr);
    } else {
      element.textContent = texte;
    }
  }

  // A table cell.
  function cellule(tr, texte, options) {
    options = options || {};
    var c = document.createElement(options.entete ? "th" : "td");
    if (options.entete) { c.scope = "row"; }
    if (options.nombre) { c.className = "nombre"; }
    ecrire(c, texte);
    tr.appendChild(c);
    return c;
  }

  function entetes(thead, libelles) {
    thead.textContent = "";
    var tr = document.createElement("tr");
    libelles.forEach(function (l, i) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = l;
      if (i > 0 && l !== "Statut") { th.className = "nombre"; }
      tr.appendChild(th);
    });
    thead.appendChild(tr);
  }

  function badge(liste, texte, type) {
    var li = document.createElement("li");
    var p = document.createElement("p");
    p.className = "fr-badge fr-badge--sm" + (type ? " fr-badge--" + type : "");
    p.textContent = texte;
    li.appendChild(p);
    liste.appendChild(li);
  }

  function statutLisible(statut) { return statut === "DEFINITIF" ? "définitif" : "provisoire"; }

  // The caller's own territory: its département (the first of several), its région or FR.
  function territoirePrincipal() {
    var p = meta("observatoire-perimetre") || "FR";
    return p.split(",")[0];
  }

  var donnees = {};
  function communes() {
    return Promise.all([lireJson("/api/v1/indicateurs"), lireJson("/api/v1/territoires"), lireJson("/api/v1/publications")])
      .then(function (r) {
        donnees.catalogue = r[0];
        donnees.territoires = r[1];
        donnees.publication = r[2].length ? r[2][0] : null;
        if (donnees.publication) {
          document.querySelectorAll(".seuil").forEach(function (s) { s.textContent = String(donnees.publication.seuil_secret); });
        }
        return donnees;
      });
  }

  function indicateur(id) { return donnees.catalogue.find(function (i) { return i.id === id; }); }
  function territoire(code) { return donnees.territoires.find(function (t) { return t.code === code; }); }

  function remplirTerritoires(select, voulu) {
    select.textContent = "";
    donnees.territoires.forEach(function (t) { option(select, t.code, t.libelle); });
    var defaut = territoire(voulu) ? voulu : (territoire(territoirePrincipal()) ? territoirePrincipal() : (donnees.territoires[0] || {}).code);
    if (defaut) { select.value = defaut; }
  }

  function remplirIndicateurs(select, voulu) {
    select.textContent = "";
    var domaines = {};
    donnees.catalogue.forEach(function (i) {
      if (!domaines[i.domaine]) {
        domaines[i.domaine] = document.createElement("optgroup");
        domaines[i.domaine].label = i.domaine;
        select.appendChild(domaines[i.domaine]);
      }
      option(domaines[i.domaine], i.id, i.code + " – " + i.libelle);
    });
    select.value = indicateur(voulu) ? voulu : "taux_dnp_115";
  }

  function remplirPas(select, voulu, sansJour) {
    select.textContent = "";
    PAS.forEach(function (p) {
      if (sansJour && (p[0] === "JOUR" || p[0] === "SEMAINE")) { return; }
      option(select, p[0], p[1]);
    });
    select.value = voulu && select.querySelector('option[value="' + voulu + '"]') ? voulu : "MOIS";
  }

  function urlValeurs(id, params) {
    return "/api/v1/indicateurs/" + encodeURIComponent(id) + "/valeurs?" + new URLSearchParams(params).toString();
  }

  function majExports(base, params, colonnes) {
    ["csv", "xlsx", "parquet"].forEach(function (f) {
      var a = el("export-" + f);
      if (!a) { return; }
      var p = new URLSearchParams(params);
      p.set("format", f);
      if (colonnes) { p.set("colonnes", colonnes); }
      a.href = base + "?" + p.toString();
    });
  }

  function phrasePublication() {
    var pub = donnees.publication;
    if (!pub) { return "Aucune publication."; }
    var quand = new Date(pub.calculee_le).toLocaleString("fr-FR", { dateStyle: "long", timeStyle: "short" });
    return "Publication n° " + pub.version + " du " + quand + ". Les valeurs d'un mois non clos sont provisoires ; celles d'un mois clos sont définitives.";
  }

  var graphiques = {};
  function tracer(canvas, labels, series, ind, description) {
    if (graphiques[canvas.id]) { graphiques[canvas.id].destroy(); }
    canvas.setAttribute("aria-label", description);
    var ratio = ind.unite === "ratio";
    var chart = new window.Chart(canvas, {
      type: "line",
      data: {
        labels: labels.map(function (l) { return l.court; }),
        datasets: series.map(function (s, i) {
          var c = COULEURS[i % COULEURS.length];
          return { label: s.libelle, data: s.valeurs, borderColor: c, backgroundColor: c, pointRadius: labels.length > 60 ? 0 : 3, spanGaps: false, borderWidth: 2 };
        })
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          y: { beginAtZero: true, ticks: { callback: function (v) { return ratio ? pourcent.format(v) : decimal.format(v); } } }
        },
        plugins: {
          legend: { display: series.length > 1, position: "bottom" },
          tooltip: { callbacks: {
            title: function (items) { return items.length ? labels[items[0].dataIndex].long : ""; },
            label: function (c) { return c.dataset.label + " : " + (c.parsed.y === null ? "s ou non publié" : formater(ind, c.parsed.y)); }
          } }
        }
      }
    });
    graphiques[canvas.id] = chart;
    window.observatoireGraphique = chart;
    return chart;
  }

  // ---------------------------------------------------------------- home
  function decalerMois(mois, n) {
    var a = parseInt(mois.slice(0, 4), 10), m = parseInt(mois.slice(5, 7), 10) - 1 + n;
    a += Math.floor(m / 12);
    m = ((m % 12) + 12) % 12;
    return a + "-" + String(m + 1).padStart(2, "0");
  }

  function evolution(ind, actuelle, ancienne, libelle) {
    if (!actuelle || !ancienne) { return libelle + " : non publié"; }
    if (actuelle.secret || ancienne.secret || actuelle.valeur === null || ancienne.valeur === null) {
      return libelle + " : non calculable (secret statistique ou valeur indéfinie)";
    }
    var d = actuelle.valeur - ancienne.valeur;
    var signe = d > 0 ? "+" : (d < 0 ? "−" : "");
    var abs = Math.abs(d);
    var texte;
    if (ind.unite === "ratio") {
      texte = signe + decimal.format(abs * 100) + " point" + (abs * 100 >= 2 ? "s" : "");
    } else if (ind.unite === "jours") {
      texte = signe + entier.format(abs) + " jour" + (abs >= 2 ? "s" : "");
    } else {
      texte = signe + (Math.abs(abs - Math.round(abs)) < 1e-9 ? entier.format(abs) : decimal.format(abs));
      if (ancienne.valeur) { texte += " (" + (d >= 0 ? "+" : "−") + decimal.format(Math.abs(d / ancienne.valeur) * 100) + " %)"; }
    }
    return libelle + " : " + texte;
  }

  function accueil() {
    var select = el("territoire");
    return Promise.all([communes(), lireJson("/api/v1/periodes")]).then(function (r) {
      var clos = r[1].map(function (c) { return c.mois; }).sort();
      remplirTerritoires(select, parametres().get("territoire"));
      select.addEventListener("change", function () { chiffres(clos); });
      return chiffres(clos);
    });
  }

  function chiffres(clos) {
    var code = el("territoire").value;
    var ter = territoire(code);
    memoriser(new URLSearchParams({ territoire: code }));
    cacherErreur();
    var ids = CHIFFRES_CLES.filter(function (id) { return indicateur(id); });
    return Promise.all(ids.map(function (id) {
      return lireJson(urlValeurs(id, { territoire: code, pas: "MOIS" }));
    })).then(function (series) {
      // The last closed month; with none closed yet, the last month published (provisional).
      var publies = series[0].map(function (l) { return l.periode; });
      var mois = clos.length ? clos[clos.length - 1] : publies[publies.length - 1];
      el("titre-chiffres").textContent = mois ? "Chiffres clés de " + libellePeriode("MOIS", mois) + " – " + ter.libelle : "Chiffres clés – " + ter.libelle;
      el("statut-mois").textContent = clos.length
        ? "Dernier mois clos : " + libellePeriode("MOIS", mois) + " ; ses valeurs sont définitives."
        : "Aucun mois n'est encore clos : les valeurs du dernier mois publié sont provisoires et peuvent encore changer.";
      var grille = el("chiffres-cles");
      grille.textContent = "";
      ids.forEach(function (id, k) {
        var ind = indicateur(id);
        var par = {};
        series[k].forEach(function (l) { par[l.periode] = l; });
        var ligne = par[mois];
        var col = document.createElement("div");
        col.className = "fr-col-12 fr-col-md-6 fr-col-lg-4";
        var carte = document.createElement("div");
        carte.className = "fr-card fr-enlarge-link";
        carte.dataset.indicateur = id;
        var corps = document.createElement("div");
        corps.className = "fr-card__body";
        var contenu = document.createElement("div");
        contenu.className = "fr-card__content";
        var h = document.createElement("h3");
        h.className = "fr-card__title";
        var a = document.createElement("a");
        a.href = "/indicateurs/" + id + "?" + new URLSearchParams({ territoire: code }).toString();
        a.textContent = ind.libelle;
        h.appendChild(a);
        var valeur = document.createElement("p");
        valeur.className = "chiffre-cle";
        ecrire(valeur, texteValeur(ind, ligne));
        var evo = document.createElement("div");
        evo.className = "fr-card__desc";
        [evolution(ind, ligne, par[decalerMois(mois, -1)], "Par rapport à " + libellePeriode("MOIS", decalerMois(mois, -1))),
         evolution(ind, ligne, par[decalerMois(mois, -12)], "Par rapport à " + libellePeriode("MOIS", decalerMois(mois, -12)))].forEach(function (t) {
          var p = document.createElement("p");
          p.className = "evolution";
          p.textContent = t;
          evo.appendChild(p);
        });
        var debut = document.createElement("div");
        debut.className = "fr-card__start";
        var badges = document.createElement("ul");
        badges.className = "fr-badges-group";
        badge(badges, ind.code, null);
        if (ligne) { badge(badges, statutLisible(ligne.statut), ligne.statut === "DEFINITIF" ? "success" : "info"); }
        debut.appendChild(badges);
        contenu.appendChild(h);
        contenu.appendChild(valeur);
        contenu.appendChild(evo);
        contenu.appendChild(debut);
        corps.appendChild(contenu);
        carte.appendChild(corps);
        col.appendChild(carte);
        grille.appendChild(col);
      });
      pret();
    });
  }

  // ---------------------------------------------------------------- catalogue
  function catalogue() {
    return communes().then(function () {
      var racine = el("catalogue");
      var domaines = [];
      donnees.catalogue.forEach(function (i) { if (domaines.indexOf(i.domaine) < 0) { domaines.push(i.domaine); } });
      domaines.forEach(function (d, k) {
        var section = document.createElement("section");
        section.className = "catalogue-domaine";
        section.setAttribute("aria-labelledby", "domaine-" + k);
        var h = document.createElement("h2");
        h.id = "domaine-" + k;
        h.className = "fr-h4";
        h.textContent = d;
        section.appendChild(h);
        var wrap = document.createElement("div");
        wrap.className = "fr-table fr-table--bordered";
        var table = document.createElement("table");
        var cap = document.createElement("caption");
        cap.className = "fr-sr-only";
        cap.textContent = "Indicateurs du domaine " + d;
        table.appendChild(cap);
        var thead = document.createElement("thead");
        entetes(thead, ["Indicateur", "Définition", "Unité"]);
        thead.querySelectorAll("th").forEach(function (th) { th.className = ""; });
        table.appendChild(thead);
        var tbody = document.createElement("tbody");
        donnees.catalogue.filter(function (i) { return i.domaine === d; }).forEach(function (i) {
          var tr = document.createElement("tr");
          var th = document.createElement("th");
          th.scope = "row";
          var a = document.createElement("a");
          a.href = "/indicateurs/" + i.id;
          a.textContent = i.code + " – " + i.libelle;
          th.appendChild(a);
          if (i.territoire) { th.appendChild(document.createTextNode(" (convention du département " + i.territoire + ")")); }
          tr.appendChild(th);
          cellule(tr, i.definition);
          cellule(tr, uniteLisible(i));
          tbody.appendChild(tr);
        });
        table.appendChild(tbody);
        var w1 = document.createElement("div"); w1.className = "fr-table__wrapper";
        var w2 = document.createElement("div"); w2.className = "fr-table__container";
        var w3 = document.createElement("div"); w3.className = "fr-table__content";
        w3.appendChild(table); w2.appendChild(w3); w1.appendChild(w2); wrap.appendChild(w1);
        section.appendChild(wrap);
        racine.appendChild(section);
      });
      pret();
    });
  }

  // ---------------------------------------------------------------- indicator page
  var COLONNES = [
    ["code_territoire", "Territoire", true], ["pas", "Pas", true], ["periode", "Période", true],
    ["debut", "Début", false], ["fin", "Fin (exclue)", false], ["dimension", "Dimension", true],
    ["modalite", "Modalité", true], ["valeur", "Valeur", true], ["secret", "Secret", true],
    ["numerateur", "Numérateur", true], ["denominateur", "Dénominateur", true], ["statut", "Statut", true],
    ["version", "Publication", true], ["revision", "Révision", false], ["indicateur", "Indicateur", false]
  ];

  function indicateurPage() {
    var id = decodeURIComponent(window.location.pathname.split("/")[2] || "");
    return communes().then(function () {
      var ind = indicateur(id);
      if (!ind) { throw new Error("indicateur inconnu : « " + id + " » (voir le catalogue des indicateurs)"); }
      document.title = ind.libelle + " – Observatoire SI SIAO";
      el("titre-indicateur").textContent = ind.libelle + " (" + ind.code + ")";
      el("ariane-indicateur").textContent = ind.libelle;
      el("definition").textContent = ind.definition;
      el("unite").textContent = "Unité : " + uniteLisible(ind) + " · Domaine : " + ind.domaine;
      var etiquettes = el("etiquettes");
      [ind.code, ind.domaine, "Unité : " + uniteLisible(ind),
       { COMPTE: "Secret : comptage", RATIO: "Secret : taux", QUANTILE: "Secret : quantile", AUCUNE: "Sans secret (capacités)" }[ind.sdc] || ind.sdc]
        .concat(ind.territoire ? ["Convention du département " + ind.territoire] : [])
        .forEach(function (t) {
          var li = document.createElement("li");
          var p = document.createElement("p");
          p.className = "fr-tag fr-tag--sm";
          p.textContent = t;
          li.appendChild(p);
          etiquettes.appendChild(li);
        });
      var p = parametres();
      remplirTerritoires(el("territoire"), p.get("territoire"));
      remplirPas(el("pas"), p.get("pas"), false);
      var dim = el("dimension");
      option(dim, "", "Ensemble (sans ventilation)");
      ind.dimensions.forEach(function (d) { option(dim, d.nom, d.nom === "quantile" ? "Quantiles (75e et 90e centiles)" : d.libelle); });
      if (p.get("dimension") && dim.querySelector('option[value="' + p.get("dimension") + '"]')) { dim.value = p.get("dimension"); }
      var fs = el("colonnes");
      COLONNES.forEach(function (c) {
        var div = document.createElement("div");
        div.className = "fr-fieldset__element fr-fieldset__element--inline";
        div.innerHTML = '<div class="fr-checkbox-group fr-checkbox-group--sm"><input type="checkbox"><label class="fr-label"></label></div>';
        var input = div.querySelector("input");
        input.id = "colonne-" + c[0];
        input.name = "colonnes";
        input.value = c[0];
        input.checked = c[2];
        var label = div.querySelector("label");
        label.htmlFor = input.id;
        label.textContent = c[1];
        input.addEventListener("change", function () { afficherIndicateur(ind); });
        fs.appendChild(div);
      });
      ["territoire", "pas", "dimension"].forEach(function (n) { el(n).addEventListener("change", function () { afficherIndicateur(ind); }); });
      return afficherIndicateur(ind);
    });
  }

  function afficherIndicateur(ind) {
    var code = el("territoire").value, pas = el("pas").value, dimension = el("dimension").value;
    var ter = territoire(code);
    var p = new URLSearchParams({ territoire: code, pas: pas });
    if (dimension) { p.set("dimension", dimension); }
    memoriser(p);
    cacherErreur();
    el("lien-carte").href = "/carte?" + new URLSearchParams({ indicateur: ind.id, pas: pas === "JOUR" || pas === "SEMAINE" ? "MOIS" : pas }).toString();
    el("lien-comparaison").href = "/comparaison?" + new URLSearchParams({ indicateur: ind.id, pas: pas }).toString();
    var colonnes = Array.prototype.map.call(document.querySelectorAll("#colonnes input:checked"), function (i) { return i.value; }).join(",");
    var params = { territoire: code, pas: pas };
    if (dimension) { params.dimension = dimension; }
    majExports("/api/v1/indicateurs/" + ind.id + "/valeurs", params, colonnes || "periode");
    var requetes = [lireJson(urlValeurs(ind.id, { territoire: code, pas: pas }))];
    if (dimension) { requetes.push(lireJson(urlValeurs(ind.id, params))); }
    return Promise.all(requetes).then(function (r) {
      var total = r[0], detail = r[1] || [];
      var periodes = total.map(function (l) { return l.periode; });
      detail.forEach(function (l) { if (periodes.indexOf(l.periode) < 0) { periodes.push(l.periode); } });
      var labels = periodes.map(function (x) { return { court: libelleCourt(pas, x), long: libellePeriode(pas, x) }; });
      var parTotal = {};
      total.forEach(function (l) { parTotal[l.periode] = l; });
      var series = [{ libelle: dimension === "quantile" ? "Médiane" : (dimension ? "Ensemble" : ind.libelle), lignes: parTotal }];
      var dim = ind.dimensions.find(function (d) { return d.nom === dimension; });
      if (dimension) {
        var modalites = [];
        detail.forEach(function (l) { if (modalites.indexOf(l.modalite) < 0) { modalites.push(l.modalite); } });
        if (dim && dim.modalites.length) {
          modalites.sort(function (a, b) { return dim.modalites.indexOf(a) - dim.modalites.indexOf(b); });
        }
        modalites.forEach(function (m) {
          var par = {};
          detail.forEach(function (l) { if (l.modalite === m) { par[l.periode] = l; } });
          series.push({ libelle: libelleModalite(m), lignes: par });
        });
        // Counts broken down add up to the total: the chart shows the modalities only.
        if (dimension !== "quantile" && ind.unite !== "ratio" && ind.unite !== "jours") { series.shift(); }
      }
      series.forEach(function (s) { s.valeurs = periodes.map(function (x) { var l = s.lignes[x]; return l && !l.secret ? l.valeur : null; }); });
      var titre = ind.libelle + " – " + ter.libelle + " – par " + libellePas(pas).toLowerCase() + (dim ? " et " + (dimension === "quantile" ? "quantile" : dim.libelle.toLowerCase()) : "");
      el("sous-titre").textContent = ter.libelle + " · " + libellePas(pas) + (dim ? " · " + (dimension === "quantile" ? "quantiles" : dim.libelle) : "");
      tracer(el("graphique"), labels, series, ind, "Graphique : " + titre + ". Les valeurs figurent dans le tableau qui suit.");
      el("legende-graphique").textContent = "Évolution par " + libellePas(pas).toLowerCase() + " ; une période sous secret statistique ou non publiée n'est pas tracée. Les valeurs sont reprises dans le tableau ci-dessous.";
      el("titre-tableau").textContent = titre;
      var thead = document.querySelector("#tableau thead"), tbody = document.querySelector("#tableau tbody");
      tbody.textContent = "";
      if (!dimension) {
        // A ratio shows its terms; a quantile the number of records it rests on.
        var termes = ind.unite === "ratio" ? [["numerateur", "Numérateur"], ["denominateur", "Dénominateur"]]
          : (ind.sdc === "QUANTILE" ? [["denominateur", "Nombre d'observations"]] : []);
        entetes(thead, ["Période", "Valeur"].concat(termes.map(function (t) { return t[1]; })).concat(["Statut"]));
        periodes.forEach(function (x) {
          var l = parTotal[x];
          var tr = document.createElement("tr");
          tr.dataset.periode = x;
          cellule(tr, libellePeriode(pas, x), { entete: true });
          cellule(tr, texteValeur(ind, l), { nombre: true });
          termes.forEach(function (t) {
            var v = l ? l[t[0]] : null;
            cellule(tr, l && l.secret ? "s" : (v === null || v === undefined ? "–" : decimal.format(v)), { nombre: true });
          });
          cellule(tr, l ? statutLisible(l.statut) : "–");
          tbody.appendChild(tr);
        });
      } else {
        var lignesSeries = dimension !== "quantile" && ind.unite !== "ratio" && ind.unite !== "jours" ? [{ libelle: "Ensemble", lignes: parTotal }].concat(series) : series;
        entetes(thead, ["Période"].concat(lignesSeries.map(function (s) { return s.libelle; })).concat(["Statut"]));
        periodes.forEach(function (x) {
          var tr = document.createElement("tr");
          tr.dataset.periode = x;
          cellule(tr, libellePeriode(pas, x), { entete: true });
          lignesSeries.forEach(function (s) { cellule(tr, s.lignes[x] ? texteValeur(ind, s.lignes[x]) : "–", { nombre: true }); });
          cellule(tr, parTotal[x] ? statutLisible(parTotal[x].statut) : "–");
          tbody.appendChild(tr);
        });
      }
      el("publication").textContent = phrasePublication();
      pret();
    }).catch(montrerErreur);
  }

  // ---------------------------------------------------------------- map
  var formes = null;
  function chargerFormes() {
    if (formes) { return Promise.resolve(formes); }
    return fetch("/assets/app/departements.json").then(function (r) { return r.json(); }).then(function (f) { formes = f; return f; });
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(viewBox, label) {
    var s = document.createElementNS(SVG, "svg");
    s.setAttribute("viewBox", viewBox);
    s.setAttribute("aria-hidden", "true");
    s.setAttribute("focusable", "false");
    if (label) { s.dataset.nom = label; }
    return s;
  }

  function chemin(parent, code, d) {
    var p = document.createElementNS(SVG, "path");
    p.setAttribute("d", d);
    p.dataset.departement = code;
    parent.appendChild(p);
    return p;
  }

  function dessinerFond(f) {
    var cadre = el("carte");
    cadre.textContent = "";
    var metro = document.createElement("div");
    metro.className = "carte__metropole";
    var s = svg(f.metropole.viewBox);
    s.innerHTML = '<defs><pattern id="hachures" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)"><rect width="8" height="8" fill="#ffffff"></rect><rect width="3" height="8" fill="#666666"></rect></pattern></defs>';
    var g = document.createElementNS(SVG, "g");
    s.appendChild(g);
    Object.keys(f.metropole.departements).forEach(function (code) { chemin(g, code, f.metropole.departements[code]); });
    metro.appendChild(s);
    cadre.appendChild(metro);
    var encarts = document.createElement("div");
    encarts.className = "carte__encarts";
    // Île-de-France enlarged: the same paths, framed on the petite and grande couronne.
    var idf = document.createElement("figure");
    idf.className = "carte__encart carte__encart--idf";
    var sIdf = svg(f.metropole.viewBox);
    var gIdf = document.createElementNS(SVG, "g");
    ["75", "77", "78", "91", "92", "93", "94", "95"].forEach(function (code) { chemin(gIdf, code, f.metropole.departements[code]); });
    sIdf.appendChild(gIdf);
    idf.appendChild(sIdf);
    var pIdf = document.createElement("p");
    pIdf.textContent = "Île-de-France";
    idf.appendChild(pIdf);
    encarts.appendChild(idf);
    f.outremer.forEach(function (o) {
      var fig = document.createElement("figure");
      fig.className = "carte__encart";
      var so = svg(o.viewBox);
      chemin(so, o.code, o.d);
      fig.appendChild(so);
      var p = document.createElement("p");
      p.textContent = o.nom;
      fig.appendChild(p);
      encarts.appendChild(fig);
    });
    cadre.appendChild(encarts);
    // Frame the enlargement once the paths are laid out.
    var box = gIdf.getBBox();
    var marge = Math.max(box.width, box.height) * 0.05;
    sIdf.setAttribute("viewBox", [box.x - marge, box.y - marge, box.width + 2 * marge, box.height + 2 * marge].join(" "));
  }

  function bornes(valeurs) {
    var v = valeurs.slice().sort(function (a, b) { return a - b; });
    var distinctes = v.filter(function (x, i) { return i === 0 || x !== v[i - 1]; });
    var n = Math.min(CLASSES_CARTE.length, distinctes.length);
    if (n <= 1) { return distinctes.length ? [distinctes[0], distinctes[0]] : []; }
    var b = [v[0]];
    for (var k = 1; k < n; k++) { b.push(v[Math.floor(k * v.length / n)]); }
    b.push(v[v.length - 1]);
    return b.filter(function (x, i) { return i === 0 || x > b[i - 1] || i === b.length - 1; });
  }

  function classe(b, x) {
    if (b.length <= 2) { return CLASSES_CARTE.length - 1; }
    var k = 0;
    while (k < b.length - 2 && x >= b[k + 1]) { k++; }
    // n classes take the n darkest colours.
    var n = b.length - 1;
    return CLASSES_CARTE.length - n + k;
  }

  function carte() {
    var p = parametres();
    return Promise.all([communes(), chargerFormes()]).then(function (r) {
      dessinerFond(r[1]);
      remplirIndicateurs(el("indicateur"), p.get("indicateur"));
      remplirPas(el("pas"), p.get("pas"), true);
      el("indicateur").addEventListener("change", function () { periodesCarte(); });
      el("pas").addEventListener("change", function () { periodesCarte(); });
      el("periode").addEventListener("change", function () { colorier(); });
      return periodesCarte(p.get("periode"));
    });
  }

  // The periods offered: those published for the caller's own territory, latest first.
  function periodesCarte(voulue) {
    var ind = indicateur(el("indicateur").value), pas = el("pas").value;
    return lireJson(urlValeurs(ind.id, { territoire: territoire(territoirePrincipal()) ? territoirePrincipal() : donnees.territoires[0].code, pas: pas })).then(function (lignes) {
      var select = el("periode");
      select.textContent = "";
      lignes.map(function (l) { return l.periode; }).reverse().forEach(function (x) { option(select, x, libellePeriode(pas, x)); });
      if (voulue && select.querySelector('option[value="' + voulue + '"]')) { select.value = voulue; }
      return colorier();
    }).catch(montrerErreur);
  }

  function colorier() {
    var ind = indicateur(el("indicateur").value), pas = el("pas").value, periode = el("periode").value;
    memoriser(new URLSearchParams({ indicateur: ind.id, pas: pas, periode: periode }));
    cacherErreur();
    var params = { pas: pas, periode: periode };
    majExports("/api/v1/indicateurs/" + ind.id + "/carte", params, null);
    if (!periode) { montrerErreur(new Error("aucune période publiée pour cet indicateur")); return Promise.resolve(); }
    return lireJson("/api/v1/indicateurs/" + encodeURIComponent(ind.id) + "/carte?" + new URLSearchParams(params).toString()).then(function (lignes) {
      var titre = ind.libelle + " – " + libellePeriode(pas, periode);
      el("titre-carte").textContent = "Carte : " + ind.libelle;
      el("sous-titre").textContent = libellePeriode(pas, periode).replace(/^./, function (c) { return c.toUpperCase(); }) + " · départements de votre périmètre";
      el("unite").textContent = "Unité : " + uniteLisible(ind) + ". " + ind.definition;
      var parCode = {};
      lignes.forEach(function (l) { parCode[l.territoire] = l; });
      // The départements of the scope: every one for a national scope, else those the
      // territories route lists (a département of the scope with nothing published reads
      // "outside the scope", which the table below does not list either).
      var dansPerimetre = {};
      donnees.territoires.forEach(function (t) { if (t.niveau === "DEPARTEMENT") { dansPerimetre[t.territoire] = t; } });
      var national = meta("observatoire-perimetre") === "FR";
      var valeurs = lignes.filter(function (l) { return !l.secret && l.valeur !== null; }).map(function (l) { return l.valeur; });
      var b = bornes(valeurs);
      document.querySelectorAll("#carte path").forEach(function (path) {
        var code = path.dataset.departement, l = parCode[code];
        path.removeAttribute("style");
        path.setAttribute("class", "");
        if (!dansPerimetre[code] && !national) { path.setAttribute("class", "hors-perimetre"); }
        else if (!l || (!l.secret && l.valeur === null)) { path.setAttribute("class", "non-publie"); }
        else if (l.secret) { path.setAttribute("class", "secret"); }
        else { path.style.fill = CLASSES_CARTE[classe(b, l.valeur)]; }
      });
      legende(ind, b, valeurs.length);
      el("legende-carte").textContent = "Carte de France des départements, outre-mer et Île-de-France agrandie en encart : " + titre + ". Les valeurs figurent dans le tableau « Les valeurs de la carte ».";
      el("titre-tableau").textContent = titre + " – par département";
      var tbody = document.querySelector("#tableau tbody");
      tbody.textContent = "";
      Object.keys(dansPerimetre).sort().forEach(function (code) {
        var l = parCode[code];
        var tr = document.createElement("tr");
        tr.dataset.departement = code;
        cellule(tr, dansPerimetre[code].libelle, { entete: true });
        cellule(tr, texteValeur(ind, l), { nombre: true });
        cellule(tr, l ? statutLisible(l.statut) : "–");
        tbody.appendChild(tr);
      });
      infobulles(ind, parCode, dansPerimetre);
      pret();
    }).catch(montrerErreur);
  }

  function legende(ind, b, n) {
    var ul = el("legende");
    ul.textContent = "";
    var item = function (classeCss, couleur, texte) {
      var li = document.createElement("li");
      var s = document.createElement("span");
      s.className = "pastille" + (classeCss ? " " + classeCss : "");
      if (couleur) { s.style.background = couleur; }
      s.setAttribute("aria-hidden", "true");
      li.appendChild(s);
      li.appendChild(document.createTextNode(texte));
      ul.appendChild(li);
    };
    if (n && b.length >= 2) {
      if (b.length === 2) { item(null, CLASSES_CARTE[CLASSES_CARTE.length - 1], formater(ind, b[0])); }
      for (var k = 0; b.length > 2 && k < b.length - 1; k++) {
        var dernier = k === b.length - 2;
        var texte = b[k] === b[k + 1] ? formater(ind, b[k]) : "de " + formater(ind, b[k]) + (dernier ? " à " : " à moins de ") + formater(ind, b[k + 1]);
        item(null, CLASSES_CARTE[classe(b, b[k])], texte);
      }
    }
    item("pastille--secret", null, "secret statistique (s)");
    item("pastille--non-publie", null, "non publié ou indéfini");
    if (meta("observatoire-perimetre") !== "FR") { item("pastille--hors", null, "hors de votre périmètre"); }
  }

  function infobulles(ind, parCode, dansPerimetre) {
    var bulle = el("infobulle");
    document.querySelectorAll("#carte path").forEach(function (path) {
      path.onmousemove = function (e) {
        var code = path.dataset.departement, l = parCode[code], t = dansPerimetre[code];
        bulle.textContent = t ? t.libelle + " : " + texteValeur(ind, l) + (l && l.secret ? " (secret statistique)" : "")
          : "Département " + code + (meta("observatoire-perimetre") === "FR" ? " : non publié" : " : hors de votre périmètre");
        bulle.hidden = false;
        bulle.style.left = (e.clientX + 14) + "px";
        bulle.style.top = (e.clientY + 14) + "px";
        path.classList.add("survol");
      };
      path.onmouseleave = function () { bulle.hidden = true; path.classList.remove("survol"); };
    });
  }

  // ---------------------------------------------------------------- comparison
  function comparaison() {
    var p = parametres();
    return communes().then(function () {
      remplirIndicateurs(el("indicateur"), p.get("indicateur"));
      remplirPas(el("pas"), p.get("pas"), false);
      var voulus = (p.get("territoires") || "").split(",").filter(function (c) { return territoire(c); });
      if (!voulus.length) {
        var principal = territoire(territoirePrincipal()) ? territoirePrincipal() : "FR";
        voulus = [principal];
        var t = territoire(principal);
        var region = t && t.niveau === "DEPARTEMENT" ? donnees.territoires.find(function (x) { return x.niveau === "REGION"; }) : null;
        if (region) { voulus.push(region.code); }
        if (principal !== "FR" && territoire("FR")) { voulus.push("FR"); }
        if (principal === "FR") {
          donnees.territoires.filter(function (x) { return x.niveau === "REGION"; }).slice(0, 2).forEach(function (x) { voulus.push(x.code); });
        }
      }
      var liste = el("liste-territoires");
      donnees.territoires.forEach(function (t) {
        var div = document.createElement("div");
        div.className = "fr-checkbox-group fr-checkbox-group--sm";
        var input = document.createElement("input");
        input.type = "checkbox";
        input.id = "territoire-" + t.code;
        input.name = "territoires";
        input.value = t.code;
        input.checked = voulus.indexOf(t.code) >= 0;
        var label = document.createElement("label");
        label.className = "fr-label";
        label.htmlFor = input.id;
        label.textContent = t.libelle;
        div.appendChild(input);
        div.appendChild(label);
        liste.appendChild(div);
        input.addEventListener("change", comparer);
      });
      el("indicateur").addEventListener("change", comparer);
      el("pas").addEventListener("change", comparer);
      return comparer();
    });
  }

  function comparer() {
    var ind = indicateur(el("indicateur").value), pas = el("pas").value;
    var codes = Array.prototype.map.call(document.querySelectorAll("#liste-territoires input:checked"), function (i) { return i.value; });
    cacherErreur();
    if (!codes.length) { montrerErreur(new Error("choisissez au moins un territoire")); return Promise.resolve(); }
    if (codes.length > 20) { montrerErreur(new Error("20 territoires au plus : décochez-en " + (codes.length - 20))); return Promise.resolve(); }
    var params = { territoires: codes.join(","), pas: pas };
    memoriser(new URLSearchParams({ indicateur: ind.id, pas: pas, territoires: codes.join(",") }));
    majExports("/api/v1/indicateurs/" + ind.id + "/comparaison", params, null);
    return lireJson("/api/v1/indicateurs/" + encodeURIComponent(ind.id) + "/comparaison?" + new URLSearchParams(params).toString()).then(function (lignes) {
      var periodes = [];
      lignes.forEach(function (l) { if (periodes.indexOf(l.periode) < 0) { periodes.push(l.periode); } });
      periodes.sort(function (a, b) {
        var la = lignes.find(function (l) { return l.periode === a; }), lb = lignes.find(function (l) { return l.periode === b; });
        return la.debut < lb.debut ? -1 : (la.debut > lb.debut ? 1 : 0);
      });
      var series = codes.map(function (c) {
        var par = {};
        lignes.forEach(function (l) { if (l.code_territoire === c) { par[l.periode] = l; } });
        return { libelle: territoire(c).libelle, lignes: par, valeurs: periodes.map(function (x) { var l = par[x]; return l && !l.secret ? l.valeur : null; }) };
      });
      var labels = periodes.map(function (x) { return { court: libelleCourt(pas, x), long: libellePeriode(pas, x) }; });
      var titre = ind.libelle + " – par " + libellePas(pas).toLowerCase() + " – " + series.map(function (s) { return s.libelle; }).join(", ");
      el("sous-titre").textContent = ind.libelle + " (" + ind.code + ") · " + libellePas(pas);
      tracer(el("graphique"), labels, series, ind, "Graphique : " + titre + ". Les valeurs figurent dans le tableau qui suit.");
      el("legende-graphique").textContent = "Une courbe par territoire ; une période sous secret statistique n'est pas tracée. Unité : " + uniteLisible(ind) + ".";
      el("titre-tableau").textContent = titre;
      entetes(document.querySelector("#tableau thead"), ["Période"].concat(series.map(function (s) { return s.libelle; })));
      var tbody = document.querySelector("#tableau tbody");
      tbody.textContent = "";
      periodes.forEach(function (x) {
        var tr = document.createElement("tr");
        cellule(tr, libellePeriode(pas, x), { entete: true });
        series.forEach(function (s) { cellule(tr, s.lignes[x] ? texteValeur(ind, s.lignes[x]) : "–", { nombre: true }); });
        tbody.appendChild(tr);
      });
      pret();
    }).catch(montrerErreur);
  }

  // ---------------------------------------------------------------- data quality
  function qualite() {
    return communes().then(function () {
      var select = el("siao");
      donnees.territoires.filter(function (t) { return t.niveau === "DEPARTEMENT"; }).forEach(function (t) { option(select, t.territoire, "SIAO " + t.libelle); });
      var voulu = parametres().get("siao");
      if (voulu && select.querySelector('option[value="' + voulu + '"]')) { select.value = voulu; }
      select.addEventListener("change", rapport);
      return rapport();
    });
  }

  function rapport() {
    var siao = el("siao").value;
    cacherErreur();
    if (!siao) { montrerErreur(new Error("aucun SIAO dans votre périmètre")); return Promise.resolve(); }
    memoriser(new URLSearchParams({ siao: siao }));
    majExports("/api/v1/qualite", { siao: siao }, null);
    return lireJson("/api/v1/qualite?" + new URLSearchParams({ siao: siao }).toString()).then(function (lignes) {
      var somme = function (f) { return lignes.filter(f).reduce(function (s, l) { return s + l.lignes; }, 0); };
      var lues = somme(function (l) { return l.nature === "LUES"; });
      var quarantaine = somme(function (l) { return l.nature === "QUARANTAINE"; });
      var defaut = somme(function (l) { return l.nature === "CONSERVEE_AVEC_DEFAUT"; });
      var np = somme(function (l) { return l.nature === "COMPLETUDE" && l.mesure === "NON_POURVUE"; });
      var npMotif = somme(function (l) { return l.nature === "COMPLETUDE" && l.mesure === "NON_POURVUE_AVEC_MOTIF"; });
      var personnes = somme(function (l) { return l.nature === "LUES" && l.table_source === "personne"; });
      var naissance = somme(function (l) { return l.nature === "COMPLETUDE" && l.mesure === "AVEC_DATE_NAISSANCE"; });
      var doublons = somme(function (l) { return l.nature === "DOUBLONS_SUSPECTS"; });
      var part = function (a, b) { return b ? pourcent.format(a / b) : "sans objet"; };
      var synthese = el("synthese");
      synthese.textContent = "";
      [["Lignes lues", entier.format(lues), "toutes tables de SI SIAO confondues"],
       ["En quarantaine", entier.format(quarantaine), part(quarantaine, lues) + " des lignes lues, non comptées dans les indicateurs"],
       ["Gardées avec un défaut", entier.format(defaut), "comptées, mais à corriger dans SI SIAO"],
       ["Motif des demandes non pourvues", part(npMotif, np), entier.format(np) + " demandes non pourvues"],
       ["Date de naissance renseignée", part(naissance, personnes), entier.format(personnes) + " personnes"],
       ["Doublons suspects", entier.format(doublons), "personnes partageant une clé de rapprochement avec une autre"]].forEach(function (c) {
        var col = document.createElement("div");
        col.className = "fr-col-12 fr-col-md-4";
        var tuile = document.createElement("div");
        tuile.className = "fr-callout";
        var h = document.createElement("h3");
        h.className = "fr-callout__title fr-h6";
        h.textContent = c[0];
        var v = document.createElement("p");
        v.className = "chiffre-cle";
        v.textContent = c[1];
        var d = document.createElement("p");
        d.className = "fr-callout__text fr-text--sm";
        d.textContent = c[2];
        tuile.appendChild(h); tuile.appendChild(v); tuile.appendChild(d);
        col.appendChild(tuile);
        synthese.appendChild(col);
      });
      var parRegle = {};
      lignes.filter(function (l) { return l.nature === "QUARANTAINE" || l.nature === "CONSERVEE_AVEC_DEFAUT"; }).forEach(function (l) {
        var k = l.mesure + "|" + l.nature + "|" + l.table_source;
        parRegle[k] = (parRegle[k] || 0) + l.lignes;
      });
      var tbody = document.querySelector("#tableau-regles tbody");
      tbody.textContent = "";
      var cles = Object.keys(parRegle).sort(function (a, b) { return parRegle[b] - parRegle[a]; });
      if (!cles.length) {
        var tr0 = document.createElement("tr");
        var td0 = cellule(tr0, "Aucun défaut relevé par la dernière ingestion.");
        td0.colSpan = 5;
        tbody.appendChild(tr0);
      }
      cles.forEach(function (k) {
        var parts = k.split("|");
        var tr = document.createElement("tr");
        cellule(tr, parts[0], { entete: true });
        cellule(tr, REGLES[parts[0]] || "");
        cellule(tr, parts[1] === "QUARANTAINE" ? "mise en quarantaine" : "gardée, signalée");
        cellule(tr, TABLES[parts[2]] || parts[2]);
        cellule(tr, entier.format(parRegle[k]), { nombre: true });
        tbody.appendChild(tr);
      });
      var mois = [];
      lignes.forEach(function (l) { if (l.mois !== "INCONNU" && mois.indexOf(l.mois) < 0) { mois.push(l.mois); } });
      mois.sort().reverse();
      var tbodyMois = document.querySelector("#tableau-mois tbody");
      tbodyMois.textContent = "";
      mois.forEach(function (m) {
        var dans = function (nature, mesure) { return somme(function (l) { return l.mois === m && l.nature === nature && (!mesure || l.mesure === mesure); }); };
        var lu = dans("LUES"), q = dans("QUARANTAINE");
        var tr = document.createElement("tr");
        cellule(tr, libellePeriode("MOIS", m), { entete: true });
        cellule(tr, entier.format(lu), { nombre: true });
        cellule(tr, entier.format(q), { nombre: true });
        cellule(tr, part(q, lu), { nombre: true });
        cellule(tr, entier.format(dans("CONSERVEE_AVEC_DEFAUT")), { nombre: true });
        cellule(tr, part(dans("COMPLETUDE", "NON_POURVUE_AVEC_MOTIF"), dans("COMPLETUDE", "NON_POURVUE")), { nombre: true });
        tbodyMois.appendChild(tr);
      });
      pret();
    }).catch(montrerErreur);
  }

  // ---------------------------------------------------------------- dispatch
  var PAGES = { accueil: accueil, indicateurs: catalogue, indicateur: indicateurPage, carte: carte, comparaison: comparaison, qualite: qualite };
  var page = PAGES[document.body.dataset.page];
  if (page) {
    page().catch(montrerErreur);
  }
})();
