//! The catalogue of national indicators, each declared once.
//!
//! An entry carries everything a reader needs: the id and its snake_case name, the
//! French label, the definition (word for word from `shared/INDICATORS.md`), the unit,
//! the dimensions, the disclosure rule, and the SQL (DataFusion) that lists the
//! indicator's records from the detail zone. The API's catalogue, the web page's labels
//! and help texts read these entries; nothing is retyped elsewhere.
//!
//! An entry's SQL lists **records**, one row per thing counted (a request, a person of
//! a request, a stay, a place group over a period, …); the engine ([`crate::compute`])
//! places them in territories and periods and aggregates them the same way for every
//! indicator. The SQL sees the detail tables (`demande`, `prise_en_charge`,
//! `dispositif`, `groupe_places`, …, with the derived `composition` of each request,
//! orientation and stay and the `tranche_age` of each person of a request) and
//! `periodes(pas, periode, debut, fin, debut_obs, fin_obs, jours_obs, mois_fin)`, the
//! published periods with their observed days and the month index of the last one,
//! `periodes_mois` (the same, once per month index `mois` the observed days touch,
//! with `mois_debut` the first) and `bornes(mois0, mois1, fin)` (the first and last
//! observed months, the day after the last observed day), so that records spanning an
//! interval meet their periods by an equality join on a month. Its columns:
//! - `departement`: the département the record belongs to (the engine maps it to
//!   itself, its région and FR, so that régions and FR are recomputed over the union of
//!   their records, never summed);
//! - [`Grain::Jour`]: `jour`, the record's date (the engine finds its period of every
//!   pas); [`Grain::Periode`]: `pas, periode`, for stocks and averages that join
//!   `periodes` themselves (a record per period it falls in);
//! - by [`Measure`]: `w` (summed), `entite, ordre_date, ordre_id` (distinct entities,
//!   plus `garde` for [`Measure::DistinctAll`]), `num, den` (a ratio), `entite, au_num,
//!   au_den` (a ratio of distinct entities) or `v` (quantiles);
//! - one column per dimension, named as the dimension (a null is `NON_RENSEIGNE`).

use serde::Serialize;

/// How an indicator's records are aggregated in each territory, period and modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Measure {
    /// Σ `w` (1 for a count of records).
    Sum,
    /// The number of distinct `entite`; each takes the modalities of its first record
    /// (earliest `ordre_date`, then smallest `ordre_id`) in the territory and period.
    Distinct,
    /// As [`Measure::Distinct`], counting only the entities whose records all have
    /// `garde` true.
    DistinctAll,
    /// Σ `num` / Σ `den`.
    Ratio,
    /// Distinct `entite` with some `au_den` record (denominator), and among them those
    /// with some `au_num` record (numerator).
    DistinctRatio,
    /// The lower median of `v` (position ⌈n/2⌉); with the dimension `quantile`, P75 and
    /// P90 by the same rule.
    Quantile,
}

/// How the records are dated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Grain {
    /// A date `jour`: the record falls in the period of each pas holding it.
    Jour,
    /// Already per period (`pas`, `periode`): stocks and averages over observed days.
    Periode,
}

/// The disclosure rule ("sdc" column of INDICATORS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Disclosure {
    /// A value from 1 to t−1 is hidden.
    Compte,
    /// Hidden when 1 ≤ numerator ≤ t−1, or 0 < denominator < t, or 1 ≤ denominator − numerator ≤ t−1.
    Ratio,
    /// Hidden when computed on fewer than t records.
    Quantile,
    /// Capacities: not about persons.
    Aucune,
}

/// One dimension of the matrix of INDICATORS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dimension {
    /// The name, as in the stats table's `dimension` column (`composition`).
    pub nom: &'static str,
    pub libelle: &'static str,
    /// The modalities, in display order (`NON_RENSEIGNE` is always possible).
    pub modalites: &'static [&'static str],
}

/// One indicator of the catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct Indicator {
    /// The national id (`U04`), or a convention's own id.
    pub code: &'static str,
    /// The snake_case id used in the stats table and the API (`taux_dnp_115`).
    pub id: &'static str,
    pub libelle: &'static str,
    pub definition: &'static str,
    pub unite: &'static str,
    pub domaine: &'static str,
    pub sdc: Disclosure,
    /// The dimensions it is broken down by (besides the total).
    #[serde(serialize_with = "serialize_dimensions")]
    pub dimensions: &'static [&'static str],
    /// For an indicator a préfet–SIAO convention adds: the one département (COG code)
    /// where it is computed and shown. `None`: national.
    pub territoire: Option<&'static str>,
    #[serde(skip)]
    pub measure: Measure,
    #[serde(skip)]
    pub grain: Grain,
    /// Values (and a ratio's terms) are divided by the period's observed days (averages).
    #[serde(skip)]
    pub per_observed_day: bool,
    /// A ratio whose dimensions split the numerator only: each modality's numerator over
    /// the whole denominator, so that modalities add up to the total (I07).
    #[serde(skip)]
    pub numerator_only_dimensions: bool,
    #[serde(skip)]
    pub sql: &'static str,
    /// The additive terms the indicator publishes, each with the quantity it measures
    /// (`("numerateur", "dnp_urgence")`): cells of one quantity add up from
    /// départements to régions and FR and from months to years, and two terms of the
    /// same quantity are the same cell (secondary suppression, [`crate::suppression`]).
    /// `complement` is a ratio's denominator minus its numerator. Empty for distinct
    /// counts of persons or households, for stocks and for capacities.
    #[serde(skip)]
    pub additive_terms: &'static [(&'static str, &'static str)],
}

fn serialize_dimensions<S: serde::Serializer>(
    names: &&'static [&'static str],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(names.len()))?;
    for n in names.iter() {
        match dimension(n) {
            Some(d) => seq.serialize_element(d)?,
            None => seq.serialize_element(&Dimension {
                nom: n,
                libelle: n,
                modalites: &[],
            })?,
        }
    }
    seq.end()
}

/// The version of the catalogue, recorded in every release.
pub const CATALOGUE_VERSION: &str = "2026.12-1";

/// The dimensions of INDICATORS.md.
pub const DIMENSIONS: &[Dimension] = &[
    Dimension {
        nom: "composition",
        libelle: "Composition du ménage",
        modalites: anonymize::composition::COMPOSITIONS,
    },
    Dimension {
        nom: "tranche_age",
        libelle: "Tranche d'âge",
        modalites: anonymize::AGE_BANDS,
    },
    Dimension {
        nom: "sexe",
        libelle: "Sexe",
        modalites: &["F", "M", "INCONNU"],
    },
    Dimension {
        nom: "motif",
        libelle: "Motif de non-attribution",
        modalites: &[
            "ABSENCE_PLACE",
            "PLACE_INADAPTEE_COMPOSITION",
            "PLACE_INADAPTEE_SANTE",
            "REFUS_USAGER",
            "AUTRE",
        ],
    },
    Dimension {
        nom: "preconisation",
        libelle: "Préconisation",
        modalites: DISPOSITIF_TYPES,
    },
    Dimension {
        nom: "type_dispositif",
        libelle: "Type de dispositif",
        modalites: DISPOSITIF_TYPES,
    },
    Dimension {
        nom: "categorie",
        libelle: "Catégorie de dispositif",
        modalites: &[
            "HEBERGEMENT",
            "LOGEMENT_ADAPTE",
            "IML",
            "VEILLE_SOCIALE",
            "ACCOMPAGNEMENT",
            "PREMIER_ACCUEIL",
        ],
    },
    Dimension {
        nom: "volet",
        libelle: "Volet",
        modalites: &["URGENCE", "INSERTION"],
    },
    Dimension {
        nom: "temporaire",
        libelle: "Places temporaires",
        modalites: &["OUI", "NON"],
    },
    Dimension {
        nom: "statut",
        libelle: "Statut de l'orientation",
        modalites: &[
            "EN_ATTENTE",
            "ACCEPTEE",
            "REFUSEE_STRUCTURE",
            "REFUSEE_USAGER",
        ],
    },
    Dimension {
        nom: "motif_refus",
        libelle: "Motif de refus",
        modalites: &[
            "PUBLIC_INADAPTE",
            "CAPACITE",
            "CONDITIONS_REFUSEES",
            "LOCALISATION",
            "AUTRE",
        ],
    },
    Dimension {
        nom: "quantile",
        libelle: "Quantile",
        modalites: &["P75", "P90"],
    },
];

const DISPOSITIF_TYPES: &[&str] = &[
    "CHRS",
    "HORS_CHRS",
    "HOTEL",
    "RHVS",
    "AUTRE_HEBERGEMENT",
    "PENSION_FAMILLE",
    "RESIDENCE_ACCUEIL",
    "FJT",
    "FTM",
    "RS_CLASSIQUE",
    "IML_LOCATION",
    "IML_MANDAT",
    "UN_CHEZ_SOI",
    "MARAUDE",
    "ACCUEIL_JOUR",
    "HALTE_NUIT",
    "SAO",
    "AVDL",
    "PASH",
    "AUTRE",
];

/// A dimension by name.
pub fn dimension(nom: &str) -> Option<&'static Dimension> {
    DIMENSIONS.iter().find(|d| d.nom == nom)
}

/// The categories of dispositif counted by the occupancy rate.
const OCCUPANCY_CATEGORIES: &str = "('HEBERGEMENT', 'LOGEMENT_ADAPTE', 'IML')";

/// The month index (year × 12 + month) of a date, as SQL: the key of `periodes_mois`.
macro_rules! month_index {
    ($date:literal) => {
        concat!(
            "(CAST(date_part('year', ",
            $date,
            ") AS BIGINT) * 12 + CAST(date_part('month', ",
            $date,
            ") AS BIGINT))"
        )
    };
}

/// The rows of `$table` (alias `t`, with `bornes b`), each repeated once per month
/// index `mois` from the month of `$lo` to the month of `$hi`, both clipped to the
/// observed months; `mois_lo` is the first of them.
macro_rules! by_month {
    ($table:literal, $lo:literal, $hi:literal, $filter:literal) => {
        concat!(
            "(SELECT r.*, unnest(generate_series(r.mois_lo, r.mois_hi)) AS mois
              FROM (SELECT t.*, GREATEST(b.mois0, ",
            month_index!($lo),
            ") AS mois_lo, LEAST(b.mois1, ",
            month_index!($hi),
            ") AS mois_hi FROM ",
            $table,
            " t CROSS JOIN bornes b",
            $filter,
            ") r)"
        )
    };
}

/// Placeholders shared by several entries' SQL, filled in by [`resolved_sql`].
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("__OCCUPANCY__", OCCUPANCY_CATEGORIES),
    // The distinct persons of each request, with their age band at its date.
    (
        "__PERSONNES__",
        "(SELECT DISTINCT demande_id, personne_id, tranche_age FROM demande_personne
          WHERE demande_id IS NOT NULL AND personne_id IS NOT NULL)",
    ),
    // Nights of a stay within the observed days of period p.
    (
        "__NUITS__",
        "GREATEST(0, arrow_cast(LEAST(COALESCE(s.date_sortie, p.fin_obs), p.fin_obs), 'Int64')
                     - arrow_cast(GREATEST(s.date_entree, p.debut_obs), 'Int64'))",
    ),
    // The stays, place groups and INSERTION requests, each repeated once per month
    // (`mois`, [`month_index!`]) that its interval touches within the observed months:
    // a record then finds its periods by an equality join on the month
    // (`periodes_mois`, `periodes.mois_fin`) instead of a range join. A record outside
    // the interval's months has no row; the exact condition is checked after the join.
    (
        "__SEJOURS__",
        by_month!(
            "prise_en_charge",
            "LEAST(t.date_entree, COALESCE(t.date_sortie, t.date_entree))",
            "GREATEST(t.date_entree, COALESCE(t.date_sortie, b.fin))",
            ""
        ),
    ),
    (
        "__GROUPES__",
        by_month!(
            "groupe_places",
            "LEAST(t.date_debut, COALESCE(t.date_fin, t.date_debut))",
            "GREATEST(t.date_debut, COALESCE(t.date_fin, b.fin))",
            ""
        ),
    ),
    (
        "__DEMANDES_INSERTION__",
        by_month!(
            "demande",
            "t.date_demande",
            "CASE WHEN t.statut = 'EN_COURS' THEN b.fin
                  WHEN t.statut IN ('POURVUE', 'NON_POURVUE', 'ANNULEE') THEN t.date_statut END",
            " WHERE t.type = 'INSERTION'"
        ),
    ),
    // A stay of `__SEJOURS__ s` in period `p` of `periodes_mois`: the interval meets the
    // period's observed days, joined on the first month they share (one row per pair).
    (
        "__SEJOUR_DANS_P__",
        "p.mois = s.mois AND s.mois = GREATEST(s.mois_lo, p.mois_debut)
         AND s.date_entree < p.fin_obs AND (s.date_sortie IS NULL OR s.date_sortie > p.debut_obs)",
    ),
    // Open days of a place group within the observed days of period p.
    (
        "__JOURS_GROUPE__",
        "GREATEST(0, arrow_cast(LEAST(COALESCE(g.date_fin, p.fin_obs), p.fin_obs), 'Int64')
                     - arrow_cast(GREATEST(g.date_debut, p.debut_obs), 'Int64'))",
    ),
    // A place group of `__GROUPES__ g` in period `p` of `periodes_mois`.
    (
        "__GROUPE_DANS_P__",
        "p.mois = g.mois AND g.mois = GREATEST(g.mois_lo, p.mois_debut)
         AND g.date_debut < p.fin_obs AND (g.date_fin IS NULL OR g.date_fin > p.debut_obs)",
    ),
    // A request of `__DEMANDES_INSERTION__ d` still open at the end of period p's
    // observed days (I02, I05): joined on the month of the last observed day.
    (
        "__EN_ATTENTE__",
        "p.mois_fin = d.mois AND d.type = 'INSERTION' AND d.date_demande < p.fin_obs
         AND (d.statut = 'EN_COURS'
              OR (d.statut IN ('POURVUE', 'NON_POURVUE', 'ANNULEE') AND d.date_statut >= p.fin_obs))",
    ),
    // Newly identified households: their first request ever (E01, E02), one row per
    // household. The first is the smallest (date_demande, id), packed into one integer
    // as the distinct counts do (`compute::ORDER_KEY`, exact ranges checked by
    // `prepare`), found by MIN in a hash aggregate and read back by that key (DataFusion's
    // ROW_NUMBER window over every household was the slowest part of E01 and E02).
    (
        "__PREMIERES__",
        "(SELECT d.menage_id, d.siao_departement, d.date_demande
          FROM demande d
          JOIN (SELECT menage_id,
                       MIN(arrow_cast(date_demande, 'Int64') * 140737488355328 + id) AS k
                FROM demande
                WHERE statut <> 'ANNULEE' AND menage_id IS NOT NULL AND date_demande IS NOT NULL
                GROUP BY menage_id) m
            ON m.menage_id = d.menage_id
           AND m.k = arrow_cast(d.date_demande, 'Int64') * 140737488355328 + d.id)",
    ),
];

/// What every entry shares unless it says otherwise.
const BASE: Indicator = Indicator {
    code: "",
    id: "",
    libelle: "",
    definition: "",
    unite: "",
    domaine: "",
    sdc: Disclosure::Compte,
    dimensions: &[],
    territoire: None,
    measure: Measure::Sum,
    grain: Grain::Jour,
    per_observed_day: false,
    numerator_only_dimensions: false,
    sql: "",
    additive_terms: &[],
};

const URGENCE: &str = "Urgence (115)";
const INSERTION: &str = "Insertion";
const OFFRE: &str = "Offre";
const PUBLIC: &str = "Public";
const EVALUATION: &str = "Évaluation";

/// The dimensions of the offer's indicators.
const OFFRE_DIMS: &[&str] = &["type_dispositif", "categorie", "volet"];
const PERSONNES_DIMS: &[&str] = &["composition", "tranche_age", "sexe"];

pub const CATALOGUE: &[Indicator] = &[
    // ---------------------------------------------------------------- Urgence (115)
    Indicator {
        code: "U01",
        id: "demandes_115",
        libelle: "Demandes d'hébergement d'urgence",
        definition: "Demandes de type URGENCE de la période, hors demandes annulées (ANNULEE).",
        unite: "demandes",
        domaine: URGENCE,
        dimensions: &["composition"],
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour, 1 AS w, d.composition
              FROM demande d
              WHERE d.type = 'URGENCE' AND d.statut <> 'ANNULEE'",
        additive_terms: &[("valeur", "demandes_urgence")],
        ..BASE
    },
    Indicator {
        code: "U02",
        id: "personnes_demandeuses_115",
        libelle: "Personnes ayant sollicité le 115",
        definition: "Personnes distinctes des demandes U01 de la période (chaque personne prend les modalités de sa première demande de la période sur le territoire).",
        unite: "personnes",
        domaine: URGENCE,
        dimensions: PERSONNES_DIMS,
        measure: Measure::Distinct,
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour,
                     dp.personne_id AS entite, d.date_demande AS ordre_date, d.id AS ordre_id,
                     d.composition, dp.tranche_age, pe.sexe
              FROM demande d
              JOIN __PERSONNES__ dp ON dp.demande_id = d.id
              LEFT JOIN personne pe ON pe.id = dp.personne_id
              WHERE d.type = 'URGENCE' AND d.statut <> 'ANNULEE'",
        ..BASE
    },
    Indicator {
        code: "U03",
        id: "dnp_115",
        libelle: "Demandes non pourvues (DNP)",
        definition: "Demandes de type URGENCE de la période au statut NON_POURVUE.",
        unite: "demandes",
        domaine: URGENCE,
        dimensions: &["composition", "motif"],
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour, 1 AS w,
                     d.composition, d.motif_non_pourvue AS motif
              FROM demande d
              WHERE d.type = 'URGENCE' AND d.statut = 'NON_POURVUE'",
        additive_terms: &[("valeur", "dnp_urgence")],
        ..BASE
    },
    Indicator {
        code: "U04",
        id: "taux_dnp_115",
        libelle: "Taux de demandes non pourvues",
        definition: "Demandes non pourvues (U03) rapportées aux demandes URGENCE de la période ayant reçu une décision (statut POURVUE ou NON_POURVUE ; les demandes annulées ou en cours ne sont pas décidées).",
        unite: "ratio",
        domaine: URGENCE,
        sdc: Disclosure::Ratio,
        dimensions: &["composition"],
        measure: Measure::Ratio,
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour,
                     CASE WHEN d.statut = 'NON_POURVUE' THEN 1 ELSE 0 END AS num, 1 AS den,
                     d.composition
              FROM demande d
              WHERE d.type = 'URGENCE' AND d.statut IN ('POURVUE', 'NON_POURVUE')",
        additive_terms: &[
            ("numerateur", "dnp_urgence"),
            ("denominateur", "demandes_urgence_decidees"),
            ("complement", "demandes_urgence_pourvues"),
        ],
        ..BASE
    },
    Indicator {
        code: "U05",
        id: "personnes_dnp_115",
        libelle: "Personnes concernées par au moins une DNP",
        definition: "Personnes distinctes des demandes non pourvues (U03) de la période.",
        unite: "personnes",
        domaine: URGENCE,
        dimensions: PERSONNES_DIMS,
        measure: Measure::Distinct,
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour,
                     dp.personne_id AS entite, d.date_demande AS ordre_date, d.id AS ordre_id,
                     d.composition, dp.tranche_age, pe.sexe
              FROM demande d
              JOIN __PERSONNES__ dp ON dp.demande_id = d.id
              LEFT JOIN personne pe ON pe.id = dp.personne_id
              WHERE d.type = 'URGENCE' AND d.statut = 'NON_POURVUE'",
        ..BASE
    },
    Indicator {
        code: "U06",
        id: "personnes_sans_solution_115",
        libelle: "Personnes jamais hébergées par le 115",
        definition: "Personnes distinctes ayant au moins une demande URGENCE décidée de la période sur le territoire et dont aucune de ces demandes n'est POURVUE.",
        unite: "personnes",
        domaine: URGENCE,
        dimensions: PERSONNES_DIMS,
        measure: Measure::DistinctAll,
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour,
                     dp.personne_id AS entite, d.date_demande AS ordre_date, d.id AS ordre_id,
                     d.statut <> 'POURVUE' AS garde,
                     d.composition, dp.tranche_age, pe.sexe
              FROM demande d
              JOIN __PERSONNES__ dp ON dp.demande_id = d.id
              LEFT JOIN personne pe ON pe.id = dp.personne_id
              WHERE d.type = 'URGENCE' AND d.statut IN ('POURVUE', 'NON_POURVUE')",
        ..BASE
    },
    Indicator {
        code: "U07",
        id: "mineurs_dnp_115",
        libelle: "Mineurs concernés par une DNP",
        definition: "Personnes de U05 âgées de moins de 18 ans à la date d'au moins une de leurs demandes non pourvues (U03) de la période (sans date de naissance : non comptées) ; chacune prend les modalités de la première de ces demandes.",
        unite: "personnes",
        domaine: URGENCE,
        dimensions: PERSONNES_DIMS,
        measure: Measure::Distinct,
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour,
                     dp.personne_id AS entite, d.date_demande AS ordre_date, d.id AS ordre_id,
                     d.composition, dp.tranche_age, pe.sexe
              FROM demande d
              JOIN __PERSONNES__ dp ON dp.demande_id = d.id
              LEFT JOIN personne pe ON pe.id = dp.personne_id
              WHERE d.type = 'URGENCE' AND d.statut = 'NON_POURVUE'
                AND dp.tranche_age IN ('0-2', '3-17')",
        ..BASE
    },
    Indicator {
        code: "U08",
        id: "dnp_115_faute_de_place",
        libelle: "DNP faute de place",
        definition: "Demandes non pourvues (U03) dont le motif est ABSENCE_PLACE.",
        unite: "demandes",
        domaine: URGENCE,
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour, 1 AS w
              FROM demande d
              WHERE d.type = 'URGENCE' AND d.statut = 'NON_POURVUE'
                AND d.motif_non_pourvue = 'ABSENCE_PLACE'",
        additive_terms: &[("valeur", "dnp_urgence_faute_de_place")],
        ..BASE
    },
    Indicator {
        code: "U09",
        id: "dnp_115_personnes",
        libelle: "DNP en personnes",
        definition: "Somme, sur les demandes non pourvues (U03), de leur nombre de personnes (personnes distinctes de la demande ; aucune : 0).",
        unite: "personnes × demandes",
        domaine: URGENCE,
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour,
                     COALESCE(n.personnes, 0) AS w
              FROM demande d
              LEFT JOIN (SELECT demande_id, COUNT(DISTINCT personne_id) AS personnes
                         FROM __PERSONNES__ GROUP BY demande_id) n ON n.demande_id = d.id
              WHERE d.type = 'URGENCE' AND d.statut = 'NON_POURVUE'",
        additive_terms: &[("valeur", "dnp_urgence_personnes")],
        ..BASE
    },
    Indicator {
        code: "U10",
        id: "taux_reponse_positive",
        libelle: "Taux de réponse positive aux demandeurs (indicateur P177)",
        definition: "Dénominateur : personnes distinctes des demandes de la période sur le territoire (tout type, hors ANNULEE) ; numérateur : celles d'entre elles qui, sur ce territoire, ont eu une demande URGENCE de la période POURVUE, ou une orientation ACCEPTEE datée de la période sur une demande d'INSERTION (de toute date et de tout statut) dont elles sont une personne.",
        unite: "ratio",
        domaine: URGENCE,
        sdc: Disclosure::Ratio,
        measure: Measure::DistinctRatio,
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour,
                     dp.personne_id AS entite, TRUE AS au_den,
                     d.type = 'URGENCE' AND d.statut = 'POURVUE' AS au_num
              FROM demande d
              JOIN __PERSONNES__ dp ON dp.demande_id = d.id
              WHERE d.statut <> 'ANNULEE'
              UNION ALL
              SELECT d.siao_departement, o.date_orientation, dp.personne_id, FALSE, TRUE
              FROM orientation o
              JOIN demande d ON d.id = o.demande_id
              JOIN __PERSONNES__ dp ON dp.demande_id = d.id
              WHERE o.statut = 'ACCEPTEE' AND d.type = 'INSERTION'",
        ..BASE
    },
    // ---------------------------------------------------------------- Insertion
    Indicator {
        code: "I01",
        id: "demandes_insertion",
        libelle: "Nouvelles demandes d'insertion",
        definition: "Demandes de type INSERTION de la période, hors demandes annulées (ANNULEE).",
        unite: "demandes",
        domaine: INSERTION,
        dimensions: &["composition", "preconisation"],
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour, 1 AS w,
                     d.composition, d.preconisation
              FROM demande d
              WHERE d.type = 'INSERTION' AND d.statut <> 'ANNULEE'",
        additive_terms: &[("valeur", "demandes_insertion")],
        ..BASE
    },
    Indicator {
        code: "I02",
        id: "demandes_insertion_en_attente",
        libelle: "Demandes d'insertion en attente",
        definition: "Demandes d'INSERTION déposées avant la fin des jours observés de la période (date de la demande < fin_obs) et encore ouvertes à cette date : statut EN_COURS, ou statut POURVUE, NON_POURVUE ou ANNULEE atteint à partir de fin_obs.",
        unite: "demandes, à la fin des jours observés",
        domaine: INSERTION,
        dimensions: &["composition", "preconisation"],
        grain: Grain::Periode,
        sql: "SELECT d.siao_departement AS departement, p.pas, p.periode, 1 AS w,
                     d.composition, d.preconisation
              FROM __DEMANDES_INSERTION__ d JOIN periodes p ON __EN_ATTENTE__",
        ..BASE
    },
    Indicator {
        code: "I03",
        id: "delai_attente_admission",
        libelle: "Délai d'attente avant admission (médiane)",
        definition: "Pour chaque demande d'INSERTION, son premier séjour est la prise en charge portant cette demande dont la date d'entrée est la plus petite (puis l'identifiant le plus petit), quel que soit le dispositif ; la demande compte dans la période qui contient cette date d'entrée, sur le territoire de son SIAO ; délai = date d'entrée − date de la demande, en jours (délais négatifs conservés) ; médiane inférieure.",
        unite: "jours",
        domaine: INSERTION,
        sdc: Disclosure::Quantile,
        dimensions: &["type_dispositif", "quantile"],
        measure: Measure::Quantile,
        sql: "SELECT d.siao_departement AS departement, s.date_entree AS jour,
                     arrow_cast(s.date_entree, 'Int64') - arrow_cast(d.date_demande, 'Int64') AS v,
                     x.type AS type_dispositif
              FROM (SELECT demande_id,
                           MIN(arrow_cast(date_entree, 'Int64') * 140737488355328 + id) AS k
                    FROM prise_en_charge
                    WHERE demande_id IS NOT NULL AND date_entree IS NOT NULL
                    GROUP BY demande_id) f
              JOIN prise_en_charge s
                ON s.demande_id = f.demande_id
               AND arrow_cast(s.date_entree, 'Int64') * 140737488355328 + s.id = f.k
              JOIN demande d ON d.id = s.demande_id
              LEFT JOIN dispositif x ON x.id = s.dispositif_id
              WHERE d.type = 'INSERTION' AND d.date_demande IS NOT NULL",
        additive_terms: &[("denominateur", "premiers_sejours_insertion")],
        ..BASE
    },
    Indicator {
        code: "I04",
        id: "delai_premiere_orientation",
        libelle: "Délai avant première orientation (médiane)",
        definition: "Sur les demandes d'INSERTION dont la première orientation (la plus petite date d'orientation parmi toutes leurs orientations, quel que soit leur statut) tombe dans la période : médiane inférieure de (cette date − date de la demande), en jours.",
        unite: "jours",
        domaine: INSERTION,
        sdc: Disclosure::Quantile,
        dimensions: &["quantile"],
        measure: Measure::Quantile,
        sql: "SELECT d.siao_departement AS departement, f.jour,
                     arrow_cast(f.jour, 'Int64') - arrow_cast(d.date_demande, 'Int64') AS v
              FROM (SELECT demande_id, MIN(date_orientation) AS jour FROM orientation
                    WHERE demande_id IS NOT NULL AND date_orientation IS NOT NULL
                    GROUP BY demande_id) f
              JOIN demande d ON d.id = f.demande_id
              WHERE d.type = 'INSERTION' AND d.date_demande IS NOT NULL",
        additive_terms: &[("denominateur", "premieres_orientations_insertion")],
        ..BASE
    },
    Indicator {
        code: "I05",
        id: "anciennete_attente",
        libelle: "Ancienneté des demandes en attente (médiane)",
        definition: "Sur les demandes de I02 : médiane inférieure de ((fin_obs − 1 jour) − date de la demande), en jours.",
        unite: "jours",
        domaine: INSERTION,
        sdc: Disclosure::Quantile,
        dimensions: &["quantile"],
        measure: Measure::Quantile,
        grain: Grain::Periode,
        sql: "SELECT d.siao_departement AS departement, p.pas, p.periode,
                     arrow_cast(p.fin_obs, 'Int64') - 1 - arrow_cast(d.date_demande, 'Int64') AS v
              FROM __DEMANDES_INSERTION__ d JOIN periodes p ON __EN_ATTENTE__",
        ..BASE
    },
    Indicator {
        code: "I06",
        id: "orientations",
        libelle: "Orientations prononcées",
        definition: "Orientations des demandes d'INSERTION dont la date d'orientation est dans la période et dont le statut n'est pas ANNULEE.",
        unite: "orientations",
        domaine: INSERTION,
        dimensions: &["statut"],
        sql: "SELECT d.siao_departement AS departement, o.date_orientation AS jour, 1 AS w,
                     o.statut
              FROM orientation o JOIN demande d ON d.id = o.demande_id
              WHERE d.type = 'INSERTION' AND o.statut <> 'ANNULEE'",
        additive_terms: &[("valeur", "orientations_insertion")],
        ..BASE
    },
    Indicator {
        code: "I07",
        id: "taux_refus_orientation",
        libelle: "Taux de refus des orientations",
        definition: "Dénominateur : orientations des demandes d'INSERTION datées de la période au statut ACCEPTEE, REFUSEE_STRUCTURE ou REFUSEE_USAGER ; numérateur : celles REFUSEE_STRUCTURE ou REFUSEE_USAGER. Dimension motif_refus : refus de ce motif rapportés à tout le dénominateur, de sorte que les modalités s'additionnent au total.",
        unite: "ratio",
        domaine: INSERTION,
        sdc: Disclosure::Ratio,
        dimensions: &["motif_refus"],
        measure: Measure::Ratio,
        numerator_only_dimensions: true,
        sql: "SELECT d.siao_departement AS departement, o.date_orientation AS jour,
                     CASE WHEN o.statut IN ('REFUSEE_STRUCTURE', 'REFUSEE_USAGER') THEN 1 ELSE 0 END AS num,
                     1 AS den, o.motif_refus
              FROM orientation o JOIN demande d ON d.id = o.demande_id
              WHERE d.type = 'INSERTION'
                AND o.statut IN ('ACCEPTEE', 'REFUSEE_STRUCTURE', 'REFUSEE_USAGER')",
        additive_terms: &[
            ("numerateur", "orientations_refusees"),
            ("denominateur", "orientations_repondues"),
            ("complement", "orientations_acceptees"),
        ],
        ..BASE
    },
    Indicator {
        code: "I08",
        id: "admissions_insertion",
        libelle: "Admissions en insertion",
        definition: "Séjours dont la date d'entrée est dans la période et dont la demande est de type INSERTION (territoire : celui du dispositif du séjour).",
        unite: "séjours",
        domaine: INSERTION,
        dimensions: &["type_dispositif"],
        sql: "SELECT x.departement, s.date_entree AS jour, 1 AS w, x.type AS type_dispositif
              FROM prise_en_charge s
              JOIN demande d ON d.id = s.demande_id
              JOIN dispositif x ON x.id = s.dispositif_id
              WHERE d.type = 'INSERTION'",
        additive_terms: &[("valeur", "admissions_insertion")],
        ..BASE
    },
    Indicator {
        code: "I09",
        id: "taux_orientations_admission",
        libelle: "Part des orientations suivies d'une admission",
        definition: "Parmi les orientations du dénominateur de I07 : la part pour laquelle un séjour portant cette orientation existe au moment du calcul (figée à la clôture).",
        unite: "ratio",
        domaine: INSERTION,
        sdc: Disclosure::Ratio,
        measure: Measure::Ratio,
        sql: "SELECT d.siao_departement AS departement, o.date_orientation AS jour,
                     CASE WHEN a.orientation_id IS NULL THEN 0 ELSE 1 END AS num, 1 AS den
              FROM orientation o
              JOIN demande d ON d.id = o.demande_id
              LEFT JOIN (SELECT DISTINCT orientation_id FROM prise_en_charge
                         WHERE orientation_id IS NOT NULL) a ON a.orientation_id = o.id
              WHERE d.type = 'INSERTION'
                AND o.statut IN ('ACCEPTEE', 'REFUSEE_STRUCTURE', 'REFUSEE_USAGER')",
        additive_terms: &[
            ("numerateur", "orientations_admises"),
            ("denominateur", "orientations_repondues"),
            ("complement", "orientations_sans_admission"),
        ],
        ..BASE
    },
    // ---------------------------------------------------------------- Offre
    Indicator {
        code: "O01",
        id: "places_financees",
        libelle: "Places financées",
        definition: "Somme des places financées (P177 et hors P177, valeurs absentes comptées 0) des dispositifs ouverts le dernier jour observé l = fin_obs − 1 (date d'ouverture <= l et (pas de date de fermeture ou l < date de fermeture) ; sans date d'ouverture : non compté).",
        unite: "places",
        domaine: OFFRE,
        sdc: Disclosure::Aucune,
        dimensions: OFFRE_DIMS,
        grain: Grain::Periode,
        sql: "SELECT x.departement, p.pas, p.periode,
                     COALESCE(x.places_financees_p177, 0) + COALESCE(x.places_financees_hors_p177, 0) AS w,
                     x.type AS type_dispositif, x.categorie, x.volet
              FROM dispositif x JOIN periodes p
                ON x.date_ouverture < p.fin_obs
               AND (x.date_fermeture IS NULL OR x.date_fermeture >= p.fin_obs)",
        ..BASE
    },
    Indicator {
        code: "O02",
        id: "places_installees",
        libelle: "Places installées (moyenne)",
        definition: "Somme, sur les jours observés, des places (nb_places) des groupes de places ouverts, divisée par le nombre de jours observés.",
        unite: "places",
        domaine: OFFRE,
        sdc: Disclosure::Aucune,
        dimensions: &["type_dispositif", "categorie", "volet", "temporaire"],
        grain: Grain::Periode,
        per_observed_day: true,
        sql: "SELECT x.departement, p.pas, p.periode, g.nb_places * __JOURS_GROUPE__ AS w,
                     x.type AS type_dispositif, x.categorie, x.volet,
                     CASE WHEN g.temporaire THEN 'OUI' WHEN NOT g.temporaire THEN 'NON' END AS temporaire
              FROM __GROUPES__ g
              JOIN dispositif x ON x.id = g.dispositif_id
              JOIN periodes_mois p ON __GROUPE_DANS_P__
              WHERE g.nb_places IS NOT NULL",
        ..BASE
    },
    Indicator {
        code: "O03",
        id: "places_occupees",
        libelle: "Places occupées (moyenne)",
        definition: "Somme, sur les nuits observées, des personnes (nb_personnes) des séjours occupant la nuit, divisée par le nombre de jours observés.",
        unite: "places",
        domaine: OFFRE,
        sdc: Disclosure::Aucune,
        dimensions: OFFRE_DIMS,
        grain: Grain::Periode,
        per_observed_day: true,
        sql: "SELECT x.departement, p.pas, p.periode, s.nb_personnes * __NUITS__ AS w,
                     x.type AS type_dispositif, x.categorie, x.volet
              FROM __SEJOURS__ s
              JOIN dispositif x ON x.id = s.dispositif_id
              JOIN periodes_mois p ON __SEJOUR_DANS_P__
              WHERE s.nb_personnes IS NOT NULL",
        ..BASE
    },
    Indicator {
        code: "O04",
        id: "taux_occupation",
        libelle: "Taux d'occupation",
        definition: "Places occupées (moyenne, O03) rapportées aux places installées (moyenne, O02), toutes deux restreintes aux dispositifs de catégorie HEBERGEMENT, LOGEMENT_ADAPTE et IML ; non défini quand les places installées restreintes sont nulles ; peut dépasser 1.",
        unite: "ratio",
        domaine: OFFRE,
        sdc: Disclosure::Aucune,
        dimensions: OFFRE_DIMS,
        measure: Measure::Ratio,
        grain: Grain::Periode,
        per_observed_day: true,
        sql: "SELECT x.departement, p.pas, p.periode, s.nb_personnes * __NUITS__ AS num, 0 AS den,
                     x.type AS type_dispositif, x.categorie, x.volet
              FROM __SEJOURS__ s
              JOIN dispositif x ON x.id = s.dispositif_id
              JOIN periodes_mois p ON __SEJOUR_DANS_P__
              WHERE x.categorie IN __OCCUPANCY__ AND s.nb_personnes IS NOT NULL
              UNION ALL
              SELECT x.departement, p.pas, p.periode, 0, g.nb_places * __JOURS_GROUPE__,
                     x.type, x.categorie, x.volet
              FROM __GROUPES__ g
              JOIN dispositif x ON x.id = g.dispositif_id
              JOIN periodes_mois p ON __GROUPE_DANS_P__
              WHERE x.categorie IN __OCCUPANCY__ AND g.nb_places IS NOT NULL",
        ..BASE
    },
    Indicator {
        code: "O05",
        id: "ecart_installe_finance",
        libelle: "Écart places installées − financées",
        definition: "Places installées (moyenne, O02) moins places financées (O01) ; un terme absent compte 0.",
        unite: "places",
        domaine: OFFRE,
        sdc: Disclosure::Aucune,
        grain: Grain::Periode,
        per_observed_day: true,
        sql: "SELECT x.departement, p.pas, p.periode, g.nb_places * __JOURS_GROUPE__ AS w
              FROM __GROUPES__ g
              JOIN dispositif x ON x.id = g.dispositif_id
              JOIN periodes_mois p ON __GROUPE_DANS_P__
              WHERE g.nb_places IS NOT NULL
              UNION ALL
              SELECT x.departement, p.pas, p.periode,
                     -(COALESCE(x.places_financees_p177, 0) + COALESCE(x.places_financees_hors_p177, 0)) * p.jours_obs
              FROM dispositif x JOIN periodes p
                ON x.date_ouverture < p.fin_obs
               AND (x.date_fermeture IS NULL OR x.date_fermeture >= p.fin_obs)",
        ..BASE
    },
    Indicator {
        code: "O06",
        id: "duree_sejour",
        libelle: "Durée de séjour (médiane)",
        definition: "Sur les séjours dont la date de sortie est dans la période, chaque ligne pour elle-même (un renouvellement est un séjour) : médiane inférieure de (date de sortie − date d'entrée), en jours, zéro compris.",
        unite: "jours",
        domaine: OFFRE,
        sdc: Disclosure::Quantile,
        dimensions: &["type_dispositif", "quantile"],
        measure: Measure::Quantile,
        sql: "SELECT x.departement, s.date_sortie AS jour,
                     arrow_cast(s.date_sortie, 'Int64') - arrow_cast(s.date_entree, 'Int64') AS v,
                     x.type AS type_dispositif
              FROM prise_en_charge s JOIN dispositif x ON x.id = s.dispositif_id
              WHERE s.date_sortie IS NOT NULL",
        additive_terms: &[("denominateur", "sorties_sejour")],
        ..BASE
    },
    Indicator {
        code: "O07",
        id: "sorties_vers_logement",
        libelle: "Sorties vers le logement",
        definition: "Séjours dont la date de sortie est dans la période et dont le motif de sortie est ACCES_LOGEMENT ou LOGEMENT_ADAPTE.",
        unite: "séjours",
        domaine: OFFRE,
        dimensions: &["type_dispositif"],
        sql: "SELECT x.departement, s.date_sortie AS jour, 1 AS w, x.type AS type_dispositif
              FROM prise_en_charge s JOIN dispositif x ON x.id = s.dispositif_id
              WHERE s.date_sortie IS NOT NULL
                AND s.motif_sortie IN ('ACCES_LOGEMENT', 'LOGEMENT_ADAPTE')",
        additive_terms: &[("valeur", "sorties_logement")],
        ..BASE
    },
    Indicator {
        code: "O08",
        id: "part_sorties_logement",
        libelle: "Part des sorties vers le logement",
        definition: "Sorties vers le logement (O07) rapportées aux séjours dont la date de sortie est dans la période (motif absent compris).",
        unite: "ratio",
        domaine: OFFRE,
        sdc: Disclosure::Ratio,
        dimensions: &["type_dispositif"],
        measure: Measure::Ratio,
        sql: "SELECT x.departement, s.date_sortie AS jour,
                     CASE WHEN s.motif_sortie IN ('ACCES_LOGEMENT', 'LOGEMENT_ADAPTE') THEN 1 ELSE 0 END AS num,
                     1 AS den, x.type AS type_dispositif
              FROM prise_en_charge s JOIN dispositif x ON x.id = s.dispositif_id
              WHERE s.date_sortie IS NOT NULL",
        additive_terms: &[
            ("numerateur", "sorties_logement"),
            ("denominateur", "sorties_sejour"),
            ("complement", "sorties_autres"),
        ],
        ..BASE
    },
    Indicator {
        code: "O09",
        id: "nuitees_hotel",
        libelle: "Nuitées hôtelières",
        definition: "Somme, sur les nuits observées, des personnes (nb_personnes) des séjours occupant la nuit dans les dispositifs de type HOTEL.",
        unite: "nuitées",
        domaine: OFFRE,
        grain: Grain::Periode,
        sql: "SELECT x.departement, p.pas, p.periode, s.nb_personnes * __NUITS__ AS w
              FROM __SEJOURS__ s
              JOIN dispositif x ON x.id = s.dispositif_id
              JOIN periodes_mois p ON __SEJOUR_DANS_P__
              WHERE x.type = 'HOTEL' AND s.nb_personnes IS NOT NULL",
        additive_terms: &[("valeur", "nuitees_hotel")],
        ..BASE
    },
    // ---------------------------------------------------------------- Public
    Indicator {
        code: "P01",
        id: "menages_demandeurs",
        libelle: "Ménages demandeurs",
        definition: "Ménages distincts ayant au moins une demande (tout type, hors ANNULEE) de la période (chaque ménage prend la composition de sa première demande de la période sur le territoire).",
        unite: "ménages",
        domaine: PUBLIC,
        dimensions: &["composition"],
        measure: Measure::Distinct,
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour,
                     d.menage_id AS entite, d.date_demande AS ordre_date, d.id AS ordre_id,
                     d.composition
              FROM demande d
              WHERE d.statut <> 'ANNULEE' AND d.menage_id IS NOT NULL",
        ..BASE
    },
    Indicator {
        code: "P02",
        id: "personnes_demandeuses",
        libelle: "Personnes demandeuses",
        definition: "Personnes distinctes des demandes de P01.",
        unite: "personnes",
        domaine: PUBLIC,
        dimensions: &["tranche_age", "sexe"],
        measure: Measure::Distinct,
        sql: "SELECT d.siao_departement AS departement, d.date_demande AS jour,
                     dp.personne_id AS entite, d.date_demande AS ordre_date, d.id AS ordre_id,
                     dp.tranche_age, pe.sexe
              FROM demande d
              JOIN __PERSONNES__ dp ON dp.demande_id = d.id
              LEFT JOIN personne pe ON pe.id = dp.personne_id
              WHERE d.statut <> 'ANNULEE'",
        ..BASE
    },
    // ---------------------------------------------------------------- Évaluation
    Indicator {
        code: "E01",
        id: "taux_evaluation_flash_72h",
        libelle: "Évaluations flash sous 72 h",
        definition: "Part des ménages nouvellement identifiés dans la période (leur première demande, tout type hors ANNULEE, la plus ancienne puis d'identifiant le plus petit, y tombe ; territoire : celui de cette demande ; d0 : sa date) ayant une évaluation FLASH datée de d0 à d0 + 3 jours inclus.",
        unite: "ratio",
        domaine: EVALUATION,
        sdc: Disclosure::Ratio,
        measure: Measure::Ratio,
        sql: "SELECT f.siao_departement AS departement, f.date_demande AS jour, 1 AS den,
                     CASE WHEN e.menage_id IS NULL THEN 0 ELSE 1 END AS num
              FROM __PREMIERES__ f
              LEFT JOIN (SELECT DISTINCT f.menage_id FROM __PREMIERES__ f
                         JOIN evaluation e ON e.menage_id = f.menage_id
                         WHERE e.type = 'FLASH'
                           AND e.date_evaluation >= f.date_demande
                           AND e.date_evaluation <= f.date_demande + INTERVAL '3 days') e
                ON e.menage_id = f.menage_id",
        additive_terms: &[
            ("numerateur", "menages_evalues_72h"),
            ("denominateur", "menages_nouveaux"),
            ("complement", "menages_non_evalues_72h"),
        ],
        ..BASE
    },
    Indicator {
        code: "E02",
        id: "taux_evaluation_approfondie_2_mois",
        libelle: "Évaluations approfondies sous 2 mois",
        definition: "Part des ménages nouvellement identifiés dans la période ayant une évaluation APPROFONDIE datée de d0 à d0 + 2 mois calendaires (ramené au dernier jour du mois), inclus.",
        unite: "ratio",
        domaine: EVALUATION,
        sdc: Disclosure::Ratio,
        measure: Measure::Ratio,
        sql: "SELECT f.siao_departement AS departement, f.date_demande AS jour, 1 AS den,
                     CASE WHEN e.menage_id IS NULL THEN 0 ELSE 1 END AS num
              FROM __PREMIERES__ f
              LEFT JOIN (SELECT DISTINCT f.menage_id FROM __PREMIERES__ f
                         JOIN evaluation e ON e.menage_id = f.menage_id
                         WHERE e.type = 'APPROFONDIE'
                           AND e.date_evaluation >= f.date_demande
                           AND e.date_evaluation <= f.date_demande + INTERVAL '2 months') e
                ON e.menage_id = f.menage_id",
        additive_terms: &[
            ("numerateur", "menages_evalues_2_mois"),
            ("denominateur", "menages_nouveaux"),
            ("complement", "menages_non_evalues_2_mois"),
        ],
        ..BASE
    },
];

/// The SQL of an indicator with the engine's placeholders filled in.
pub fn resolved_sql(indicator: &Indicator) -> String {
    let mut sql = indicator.sql.to_owned();
    for (name, text) in PLACEHOLDERS {
        sql = sql.replace(name, text);
    }
    sql
}

/// An indicator by its snake_case id.
pub fn by_id(id: &str) -> Option<&'static Indicator> {
    CATALOGUE.iter().find(|i| i.id == id)
}

/// An indicator by its national code (`U04`) or its id (`taux_dnp_115`).
pub fn by_code_or_id(key: &str) -> Option<&'static Indicator> {
    CATALOGUE.iter().find(|i| i.code == key || i.id == key)
}

/// An indicator a préfet–SIAO convention adds for its département, as its file declares
/// it (see [`convention`]).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConventionDeclaration {
    pub code: String,
    pub id: String,
    /// The département (COG code) where it is computed and shown.
    pub territoire: String,
    pub libelle: String,
    pub definition: String,
    pub unite: String,
    pub domaine: Option<String>,
    /// COMPTE, RATIO, QUANTILE or AUCUNE.
    pub sdc: String,
    /// SUM, DISTINCT, DISTINCT_ALL, RATIO, DISTINCT_RATIO or QUANTILE.
    pub mesure: String,
    /// JOUR (records dated by `jour`, the default) or PERIODE.
    pub grain: Option<String>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// Values divided by the period's observed days (averages).
    #[serde(default)]
    pub par_jour_observe: bool,
    /// The records' SQL, as for a national entry.
    pub sql: String,
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// Validates a convention's declaration into an indicator shown only in its territory.
/// A convention is loaded once per process (its texts live as long as the process).
pub fn convention(
    declaration: &ConventionDeclaration,
    others: &[Indicator],
) -> Result<Indicator, String> {
    let d = declaration;
    let name = if d.id.is_empty() { &d.code } else { &d.id };
    let fail = |what: String| Err(format!("indicateur de convention « {name} » : {what}"));
    if d.id.is_empty()
        || !d
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return fail("« id » doit être en minuscules, chiffres et _".into());
    }
    if d.code.trim().is_empty() {
        return fail("« code » manquant".into());
    }
    if CATALOGUE
        .iter()
        .chain(others)
        .any(|i| i.id == d.id || i.code == d.code)
    {
        return fail("« id » ou « code » déjà pris".into());
    }
    if operational::territory::departements().all(|x| x.code != d.territoire) {
        return fail(format!("territoire « {} » hors COG", d.territoire));
    }
    for (field, text) in [
        ("libelle", &d.libelle),
        ("definition", &d.definition),
        ("unite", &d.unite),
        ("sql", &d.sql),
    ] {
        if text.trim().is_empty() {
            return fail(format!("« {field} » manquant"));
        }
    }
    let sdc = match d.sdc.as_str() {
        "COMPTE" => Disclosure::Compte,
        "RATIO" => Disclosure::Ratio,
        "QUANTILE" => Disclosure::Quantile,
        "AUCUNE" => Disclosure::Aucune,
        other => return fail(format!("règle de secret « {other} » inconnue")),
    };
    let measure = match d.mesure.as_str() {
        "SUM" => Measure::Sum,
        "DISTINCT" => Measure::Distinct,
        "DISTINCT_ALL" => Measure::DistinctAll,
        "RATIO" => Measure::Ratio,
        "DISTINCT_RATIO" => Measure::DistinctRatio,
        "QUANTILE" => Measure::Quantile,
        other => return fail(format!("mesure « {other} » inconnue")),
    };
    let grain = match d.grain.as_deref().unwrap_or("JOUR") {
        "JOUR" => Grain::Jour,
        "PERIODE" => Grain::Periode,
        other => return fail(format!("grain « {other} » inconnu")),
    };
    let mut dims = Vec::new();
    for n in &d.dimensions {
        match dimension(n) {
            Some(x) if x.nom != "quantile" || measure == Measure::Quantile => dims.push(x.nom),
            _ => return fail(format!("dimension « {n} » inconnue ou inapplicable")),
        }
    }
    if measure == Measure::DistinctRatio && !dims.is_empty() {
        return fail("un ratio de personnes distinctes ne se ventile pas".into());
    }
    // The relations secondary suppression protects, as for a national entry: dated
    // records' counts (a sum, a ratio's terms, a quantile's number of records) add up from
    // days to weeks and months, and from months to quarters, winters and years. Stocks and
    // averages over observed days do not, nor do distinct counts.
    let additive: Vec<(&'static str, &'static str)> =
        if grain != Grain::Jour || d.par_jour_observe || sdc == Disclosure::Aucune {
            Vec::new()
        } else {
            let quantity = |term: &str| leak(&format!("{}.{term}", d.id));
            match measure {
                Measure::Sum => vec![("valeur", leak(&d.id))],
                Measure::Ratio => vec![
                    ("numerateur", quantity("numerateur")),
                    ("denominateur", quantity("denominateur")),
                    ("complement", quantity("complement")),
                ],
                Measure::Quantile => vec![("denominateur", quantity("enregistrements"))],
                Measure::Distinct | Measure::DistinctAll | Measure::DistinctRatio => Vec::new(),
            }
        };
    Ok(Indicator {
        code: leak(&d.code),
        id: leak(&d.id),
        libelle: leak(&d.libelle),
        definition: leak(&d.definition),
        unite: leak(&d.unite),
        domaine: leak(d.domaine.as_deref().unwrap_or("Convention préfet–SIAO")),
        sdc,
        dimensions: Box::leak(dims.into_boxed_slice()),
        territoire: Some(leak(&d.territoire)),
        measure,
        grain,
        per_observed_day: d.par_jour_observe,
        numerator_only_dimensions: false,
        sql: leak(&d.sql),
        additive_terms: Box::leak(additive.into_boxed_slice()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_snake_case() {
        for (i, a) in CATALOGUE.iter().enumerate() {
            assert!(
                a.id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                a.id
            );
            for b in &CATALOGUE[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.code, b.code);
            }
        }
        assert_eq!(by_id("taux_dnp_115").map(|i| i.code), Some("U04"));
    }

    #[test]
    fn the_catalogue_holds_the_32_national_indicators() {
        let mut codes: Vec<&str> = CATALOGUE.iter().map(|i| i.code).collect();
        codes.sort_unstable();
        let mut expected: Vec<String> = Vec::new();
        for (prefix, n) in [("U", 10), ("I", 9), ("O", 9), ("P", 2), ("E", 2)] {
            for k in 1..=n {
                expected.push(format!("{prefix}{k:02}"));
            }
        }
        expected.sort_unstable();
        assert_eq!(codes, expected);
        assert!(CATALOGUE.iter().all(|i| i.territoire.is_none()));
    }

    #[test]
    fn every_dimension_is_declared_and_shapes_fit() {
        for i in CATALOGUE {
            for d in i.dimensions {
                assert!(
                    dimension(d).is_some(),
                    "{} : dimension {d} inconnue",
                    i.code
                );
                // P75/P90 only for quantiles.
                assert_eq!(
                    *d == "quantile",
                    i.measure == Measure::Quantile && *d == "quantile"
                );
            }
            if i.measure == Measure::Quantile {
                assert_eq!(i.sdc, Disclosure::Quantile, "{}", i.code);
                assert!(i.dimensions.contains(&"quantile"), "{}", i.code);
            }
            assert!(!i.definition.is_empty() && !i.libelle.is_empty());
            let sql = resolved_sql(i);
            assert!(
                !sql.contains("__"),
                "{} : espace réservé non remplacé",
                i.code
            );
            assert!(sql.contains("departement"), "{}", i.code);
        }
        // The matrix of INDICATORS.md, spot-checked.
        let dims = |c: &str| by_code_or_id(c).unwrap().dimensions.to_vec();
        assert_eq!(dims("U03"), ["composition", "motif"]);
        assert_eq!(
            dims("O02"),
            ["type_dispositif", "categorie", "volet", "temporaire"]
        );
        assert_eq!(dims("I03"), ["type_dispositif", "quantile"]);
        assert!(dims("U10").is_empty() && dims("E02").is_empty());
    }

    #[test]
    fn a_convention_adds_an_indicator_for_its_territory_only() {
        let declaration = ConventionDeclaration {
            code: "C93-01".into(),
            id: "demandes_maraude_93".into(),
            territoire: "93".into(),
            libelle: "Demandes venues des maraudes".into(),
            definition: "Demandes dont le canal est MARAUDE.".into(),
            unite: "demandes".into(),
            sdc: "COMPTE".into(),
            mesure: "SUM".into(),
            dimensions: vec!["composition".into()],
            sql: "SELECT siao_departement AS departement, date_demande AS jour, 1 AS w, composition FROM demande WHERE canal = 'MARAUDE'".into(),
            ..Default::default()
        };
        let i = convention(&declaration, &[]).unwrap();
        assert_eq!(
            (i.territoire, i.measure, i.sdc),
            (Some("93"), Measure::Sum, Disclosure::Compte)
        );
        // Taken ids, territories outside the COG, unknown rules are refused by name.
        let again = convention(&declaration, std::slice::from_ref(&i)).unwrap_err();
        assert!(again.contains("déjà pris"), "{again}");
        for (field, bad) in [
            ("territoire", "99"),
            ("sdc", "SECRET"),
            ("mesure", "MOYENNE"),
        ] {
            let mut d = declaration.clone();
            d.id = "autre".into();
            d.code = "C93-02".into();
            match field {
                "territoire" => d.territoire = bad.into(),
                "sdc" => d.sdc = bad.into(),
                _ => d.mesure = bad.into(),
            }
            let e = convention(&d, &[]).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        let mut d = declaration.clone();
        d.id = "taux_dnp_115".into();
        assert!(convention(&d, &[]).is_err());
    }
}
