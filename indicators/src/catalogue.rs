//! The catalogue of national indicators, each declared once.
//!
//! An entry carries everything a reader needs: the id and its snake_case name, the
//! French label, the definition (word for word from `shared/INDICATORS.md`), the unit,
//! the disclosure rule, and the SQL (DataFusion) that computes it from the detail zone.
//! The API's catalogue, the web page's labels and help texts read these entries; nothing
//! is retyped elsewhere.
//!
//! The SQL of an entry sees these relations, prepared by the engine
//! ([`crate::compute`]):
//! - the detail tables (`demande`, `prise_en_charge`, `dispositif`, `groupe_places`, …);
//! - `periodes(pas, periode, debut, fin, debut_obs, fin_obs, jours_obs)`: the published
//!   periods with their observed days;
//! - `territoires(departement, niveau, territoire)`: each COG département mapped to
//!   itself, its région and FR, so that a join counts a record once at each level and
//!   régions and FR are recomputed over the union of their records, never summed.
//!
//! Its result has the columns `niveau, territoire, pas, periode` and then, by shape:
//! `valeur` (a count), `numerateur, denominateur` (a ratio), or one row per record with
//! `v` (a quantile: the engine takes the lower median).

use serde::Serialize;

/// How an indicator's SQL result is turned into published values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Shape {
    Count,
    Ratio,
    Median,
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

/// One indicator of the catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct Indicator {
    /// The national id (`U04`).
    pub code: &'static str,
    /// The snake_case id used in the stats table and the API (`taux_dnp_115`).
    pub id: &'static str,
    pub libelle: &'static str,
    pub definition: &'static str,
    pub unite: &'static str,
    pub domaine: &'static str,
    pub sdc: Disclosure,
    #[serde(skip)]
    pub shape: Shape,
    #[serde(skip)]
    pub sql: &'static str,
    /// The additive terms the indicator publishes, each with the quantity it measures
    /// (`("numerateur", "dnp_urgence")`): cells of one quantity add up from
    /// départements to régions and FR and from months to years, and two terms of the
    /// same quantity are the same cell (secondary suppression, [`crate::suppression`]).
    /// `complement` is a ratio's denominator minus its numerator. Empty for distinct
    /// counts of persons or households and for capacities.
    #[serde(skip)]
    pub additive_terms: &'static [(&'static str, &'static str)],
}

/// The version of the catalogue, recorded in every release.
pub const CATALOGUE_VERSION: &str = "2026.11-1";

/// The categories of dispositif counted by the occupancy rate.
const OCCUPANCY_CATEGORIES: &str = "('HEBERGEMENT', 'LOGEMENT_ADAPTE', 'IML')";

pub const CATALOGUE: &[Indicator] = &[
    Indicator {
        code: "U01",
        id: "demandes_115",
        libelle: "Demandes d'hébergement d'urgence",
        definition: "Demandes de type URGENCE de la période, hors demandes annulées (ANNULEE).",
        unite: "demandes",
        domaine: "Urgence (115)",
        sdc: Disclosure::Compte,
        shape: Shape::Count,
        sql: "SELECT t.niveau, t.territoire, p.pas, p.periode, COUNT(*) AS valeur
              FROM demande d
              JOIN territoires t ON t.departement = d.siao_departement
              JOIN periodes p ON d.date_demande >= p.debut AND d.date_demande < p.fin
              WHERE d.type = 'URGENCE' AND d.statut <> 'ANNULEE'
              GROUP BY t.niveau, t.territoire, p.pas, p.periode",
        additive_terms: &[("valeur", "demandes_urgence")],
    },
    Indicator {
        code: "U03",
        id: "dnp_115",
        libelle: "Demandes non pourvues (DNP)",
        definition: "Demandes de type URGENCE de la période au statut NON_POURVUE.",
        unite: "demandes",
        domaine: "Urgence (115)",
        sdc: Disclosure::Compte,
        shape: Shape::Count,
        sql: "SELECT t.niveau, t.territoire, p.pas, p.periode, COUNT(*) AS valeur
              FROM demande d
              JOIN territoires t ON t.departement = d.siao_departement
              JOIN periodes p ON d.date_demande >= p.debut AND d.date_demande < p.fin
              WHERE d.type = 'URGENCE' AND d.statut = 'NON_POURVUE'
              GROUP BY t.niveau, t.territoire, p.pas, p.periode",
        additive_terms: &[("valeur", "dnp_urgence")],
    },
    Indicator {
        code: "U04",
        id: "taux_dnp_115",
        libelle: "Taux de demandes non pourvues",
        definition: "Demandes non pourvues (U03) rapportées aux demandes URGENCE de la période ayant reçu une décision (statut POURVUE ou NON_POURVUE ; les demandes annulées ou en cours ne sont pas décidées).",
        unite: "ratio",
        domaine: "Urgence (115)",
        sdc: Disclosure::Ratio,
        shape: Shape::Ratio,
        sql: "SELECT t.niveau, t.territoire, p.pas, p.periode,
                     SUM(CASE WHEN d.statut = 'NON_POURVUE' THEN 1 ELSE 0 END) AS numerateur,
                     COUNT(*) AS denominateur
              FROM demande d
              JOIN territoires t ON t.departement = d.siao_departement
              JOIN periodes p ON d.date_demande >= p.debut AND d.date_demande < p.fin
              WHERE d.type = 'URGENCE' AND d.statut IN ('POURVUE', 'NON_POURVUE')
              GROUP BY t.niveau, t.territoire, p.pas, p.periode",
        additive_terms: &[
            ("numerateur", "dnp_urgence"),
            ("denominateur", "demandes_urgence_decidees"),
            ("complement", "demandes_urgence_pourvues"),
        ],
    },
    Indicator {
        code: "I03",
        id: "delai_attente_admission",
        libelle: "Délai d'attente avant admission (médiane)",
        definition: "Pour chaque demande d'INSERTION, son premier séjour est la prise en charge portant cette demande dont la date d'entrée est la plus petite (puis l'identifiant le plus petit), quel que soit le dispositif ; la demande compte dans la période qui contient cette date d'entrée, sur le territoire de son SIAO ; délai = date d'entrée − date de la demande, en jours (délais négatifs conservés) ; médiane inférieure.",
        unite: "jours",
        domaine: "Insertion",
        sdc: Disclosure::Quantile,
        shape: Shape::Median,
        sql: "WITH premier AS (
                  SELECT demande_id, date_entree,
                         ROW_NUMBER() OVER (PARTITION BY demande_id ORDER BY date_entree, id) AS rang
                  FROM prise_en_charge
                  WHERE demande_id IS NOT NULL AND date_entree IS NOT NULL)
              SELECT t.niveau, t.territoire, p.pas, p.periode,
                     arrow_cast(s.date_entree, 'Int64') - arrow_cast(d.date_demande, 'Int64') AS v
              FROM premier s
              JOIN demande d ON d.id = s.demande_id
              JOIN territoires t ON t.departement = d.siao_departement
              JOIN periodes p ON s.date_entree >= p.debut AND s.date_entree < p.fin
              WHERE s.rang = 1 AND d.type = 'INSERTION' AND d.date_demande IS NOT NULL",
        additive_terms: &[("denominateur", "premiers_sejours_insertion")],
    },
    Indicator {
        code: "O04",
        id: "taux_occupation",
        libelle: "Taux d'occupation",
        definition: "Places occupées (moyenne, O03) rapportées aux places installées (moyenne, O02), toutes deux restreintes aux dispositifs de catégorie HEBERGEMENT, LOGEMENT_ADAPTE et IML ; non défini quand les places installées restreintes sont nulles ; peut dépasser 1.",
        unite: "ratio",
        domaine: "Offre",
        sdc: Disclosure::Aucune,
        shape: Shape::Ratio,
        sql: "WITH installees AS (
                  SELECT t.niveau, t.territoire, p.pas, p.periode, p.jours_obs,
                         SUM(g.nb_places * GREATEST(0,
                             arrow_cast(LEAST(COALESCE(g.date_fin, p.fin_obs), p.fin_obs), 'Int64')
                             - arrow_cast(GREATEST(g.date_debut, p.debut_obs), 'Int64'))) AS jours_places
                  FROM groupe_places g
                  JOIN dispositif x ON x.id = g.dispositif_id
                  JOIN territoires t ON t.departement = x.departement
                  JOIN periodes p ON g.date_debut < p.fin_obs AND (g.date_fin IS NULL OR g.date_fin > p.debut_obs)
                  WHERE x.categorie IN __OCCUPANCY__ AND g.nb_places IS NOT NULL
                  GROUP BY t.niveau, t.territoire, p.pas, p.periode, p.jours_obs),
              occupees AS (
                  SELECT t.niveau, t.territoire, p.pas, p.periode,
                         SUM(s.nb_personnes * GREATEST(0,
                             arrow_cast(LEAST(COALESCE(s.date_sortie, p.fin_obs), p.fin_obs), 'Int64')
                             - arrow_cast(GREATEST(s.date_entree, p.debut_obs), 'Int64'))) AS nuits
                  FROM prise_en_charge s
                  JOIN dispositif x ON x.id = s.dispositif_id
                  JOIN territoires t ON t.departement = x.departement
                  JOIN periodes p ON s.date_entree < p.fin_obs AND (s.date_sortie IS NULL OR s.date_sortie > p.debut_obs)
                  WHERE x.categorie IN __OCCUPANCY__ AND s.nb_personnes IS NOT NULL
                  GROUP BY t.niveau, t.territoire, p.pas, p.periode)
              SELECT i.niveau, i.territoire, i.pas, i.periode,
                     CAST(COALESCE(o.nuits, 0) AS DOUBLE) / i.jours_obs AS numerateur,
                     CAST(i.jours_places AS DOUBLE) / i.jours_obs AS denominateur
              FROM installees i
              LEFT JOIN occupees o ON o.niveau = i.niveau AND o.territoire = i.territoire
                                  AND o.pas = i.pas AND o.periode = i.periode",
        additive_terms: &[],
    },
];

/// The SQL of an indicator with the engine's placeholders filled in.
pub fn resolved_sql(indicator: &Indicator) -> String {
    indicator.sql.replace("__OCCUPANCY__", OCCUPANCY_CATEGORIES)
}

/// An indicator by its snake_case id.
pub fn by_id(id: &str) -> Option<&'static Indicator> {
    CATALOGUE.iter().find(|i| i.id == id)
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
}
