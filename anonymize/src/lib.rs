//! From source batches to the lake's detail zone, in memory.
//!
//! One field policy, declared once ([`POLICY`]): for every column of every source table,
//! what becomes of it. Ids of persons and households (and of the rows that describe
//! them) become keyed pseudonyms; timestamps become dates in Europe/Paris; birth dates
//! are only used to derive age bands at each event, then dropped; direct identifiers and
//! free text are dropped (the ingest does not even select them). A column the policy
//! does not know stops the run: a new column of the operational app must be classified
//! before it flows.
//!
//! Event ids (demande, orientation, stay, waiting list) are kept as integers: they
//! describe no person, and the national conventions order ties by them ("earliest date,
//! then smallest id").

pub mod composition;
pub mod disclosure;
pub mod kanon;
pub mod key;
pub mod linkage;

use std::collections::{BTreeMap, HashMap};

/// Maps keyed by source ids: a fast hasher (ids are not attacker-chosen, and a national
/// ingest looks up millions of them).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Int64Array, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Date32Type, Field, Int64Type, Schema, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Datelike, NaiveDate};
use chrono_tz::Europe::Paris;

pub use key::{KEY_ENV, KeyError, MasterKey, Pseudonymizer};

/// The household of a row, by row index (through its request for an orientation).
type HouseholdOfRow<'a> = Box<dyn Fn(usize) -> Option<i64> + 'a>;

/// What becomes of one source column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Never selected, never stored.
    Drop,
    /// Replaced by the keyed pseudonym of the referenced entity.
    Pseudonymise(&'static str),
    /// A timestamp generalised to its date in Europe/Paris.
    DateParis,
    /// Read in memory to derive another column, then dropped.
    Derive(&'static str),
    /// Stored as read.
    Keep,
}

impl Treatment {
    /// The French wording of the treatment, for the README and reports.
    pub fn describe(&self) -> String {
        match self {
            Treatment::Drop => "SUPPRIMÉ (jamais lu)".into(),
            Treatment::Pseudonymise(entity) => format!("PSEUDONYMISÉ (entité {entity})"),
            Treatment::DateParis => "GÉNÉRALISÉ (date en Europe/Paris)".into(),
            Treatment::Derive(what) => format!("DÉRIVÉ ({what}), puis supprimé"),
            Treatment::Keep => "CONSERVÉ".into(),
        }
    }
}

use Treatment::*;

/// The field policy: every column of every source table.
pub const POLICY: &[(&str, &str, Treatment)] = &[
    ("entite", "id", Keep),
    ("entite", "raison_sociale", Keep),
    ("entite", "siren", Keep),
    (
        "entite",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    ("dispositif", "id", Keep),
    ("dispositif", "entite_id", Keep),
    ("dispositif", "departement", Keep),
    ("dispositif", "nom", Drop),
    ("dispositif", "siret", Keep),
    ("dispositif", "finess", Keep),
    ("dispositif", "categorie", Keep),
    ("dispositif", "type", Keep),
    ("dispositif", "volet", Keep),
    ("dispositif", "places_financees_p177", Keep),
    ("dispositif", "places_financees_hors_p177", Keep),
    ("dispositif", "publics_acceptes", Keep),
    ("dispositif", "date_ouverture", Keep),
    ("dispositif", "date_fermeture", Keep),
    (
        "dispositif",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    ("groupe_places", "id", Keep),
    ("groupe_places", "dispositif_id", Keep),
    ("groupe_places", "nb_places", Keep),
    ("groupe_places", "temporaire", Keep),
    ("groupe_places", "date_debut", Keep),
    ("groupe_places", "date_fin", Keep),
    (
        "groupe_places",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    ("menage", "id", Pseudonymise("menage")),
    ("menage", "siao_departement", Keep),
    ("menage", "date_creation", Keep),
    (
        "menage",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    ("personne", "id", Pseudonymise("personne")),
    (
        "personne",
        "nom",
        Derive("clé de rapprochement des doublons suspects, en mémoire"),
    ),
    (
        "personne",
        "prenom",
        Derive("clé de rapprochement des doublons suspects, en mémoire"),
    ),
    (
        "personne",
        "date_naissance",
        Derive("tranche d'âge et composition du ménage à chaque événement"),
    ),
    ("personne", "sexe", Keep),
    ("personne", "nationalite", Keep),
    ("personne", "telephone", Drop),
    ("personne", "email", Drop),
    (
        "personne",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    ("menage_personne", "id", Pseudonymise("menage_personne")),
    ("menage_personne", "menage_id", Pseudonymise("menage")),
    ("menage_personne", "personne_id", Pseudonymise("personne")),
    ("menage_personne", "role", Keep),
    ("menage_personne", "date_debut", Keep),
    ("menage_personne", "date_fin", Keep),
    (
        "menage_personne",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    (
        "evaluation",
        "id",
        Derive("clé de ligne des règles de qualité, en mémoire"),
    ),
    ("evaluation", "menage_id", Pseudonymise("menage")),
    ("evaluation", "type", Keep),
    ("evaluation", "date_evaluation", Keep),
    ("evaluation", "situation_ethos", Keep),
    ("evaluation", "violences", Keep),
    ("evaluation", "sante", Keep),
    ("evaluation", "sortie_institution", Keep),
    ("evaluation", "texte", Drop),
    ("evaluation", "auteur", Drop),
    (
        "evaluation",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    ("note", "id", Drop),
    ("note", "menage_id", Drop),
    ("note", "texte", Drop),
    ("note", "auteur", Drop),
    ("note", "created_at", Drop),
    ("note", "updated_at", Drop),
    ("demande", "id", Keep),
    ("demande", "menage_id", Pseudonymise("menage")),
    ("demande", "type", Keep),
    ("demande", "siao_departement", Keep),
    ("demande", "date_demande", DateParis),
    ("demande", "canal", Keep),
    ("demande", "statut", Keep),
    ("demande", "date_statut", DateParis),
    ("demande", "motif_non_pourvue", Keep),
    ("demande", "preconisation", Keep),
    ("demande", "prescripteur_entite_id", Keep),
    (
        "demande",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    ("demande_personne", "id", Pseudonymise("demande_personne")),
    ("demande_personne", "demande_id", Keep),
    ("demande_personne", "personne_id", Pseudonymise("personne")),
    (
        "demande_personne",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    ("orientation", "id", Keep),
    ("orientation", "demande_id", Keep),
    ("orientation", "dispositif_id", Keep),
    ("orientation", "groupe_places_id", Keep),
    ("orientation", "date_orientation", Keep),
    ("orientation", "statut", Keep),
    ("orientation", "date_reponse", Keep),
    ("orientation", "motif_refus", Keep),
    (
        "orientation",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    ("liste_attente", "id", Keep),
    ("liste_attente", "demande_id", Keep),
    ("liste_attente", "dispositif_id", Keep),
    ("liste_attente", "date_inscription", Keep),
    ("liste_attente", "date_desinscription", Keep),
    ("liste_attente", "motif_desinscription", Keep),
    (
        "liste_attente",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
    ("prise_en_charge", "id", Keep),
    ("prise_en_charge", "menage_id", Pseudonymise("menage")),
    ("prise_en_charge", "demande_id", Keep),
    ("prise_en_charge", "orientation_id", Keep),
    ("prise_en_charge", "dispositif_id", Keep),
    ("prise_en_charge", "groupe_places_id", Keep),
    ("prise_en_charge", "nb_personnes", Keep),
    ("prise_en_charge", "date_entree", Keep),
    ("prise_en_charge", "date_sortie", Keep),
    ("prise_en_charge", "motif_sortie", Keep),
    ("prise_en_charge", "renouvellement_de", Keep),
    (
        "prise_en_charge",
        "updated_at",
        Derive("filigrane de lecture incrémentale"),
    ),
];

/// The treatment of a source column, if the policy classifies it.
pub fn treatment(table: &str, column: &str) -> Option<Treatment> {
    POLICY
        .iter()
        .find(|(t, c, _)| *t == table && *c == column)
        .map(|(_, _, tr)| *tr)
}

/// The field policy as a Markdown table (rendered in the README between the markers
/// `<!-- politique:debut -->` and `<!-- politique:fin -->`, kept in step by a test).
pub fn policy_markdown() -> String {
    let mut out = String::from("| table | column | treatment |\n|---|---|---|\n");
    for (table, column, treatment) in POLICY {
        out.push_str(&format!(
            "| {table} | {column} | {} |\n",
            treatment.describe()
        ));
    }
    out
}

/// The age bands of INDICATORS.md.
pub const AGE_BANDS: &[&str] = &[
    "0-2",
    "3-17",
    "18-24",
    "25-34",
    "35-44",
    "45-54",
    "55-64",
    "65+",
    "NON_RENSEIGNE",
];

/// Calendar years completed on `on` (a 29 February birthday is reached on 1 March).
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

/// The age band at a date; `NON_RENSEIGNE` without a birth date.
///
/// ```
/// use chrono::NaiveDate;
/// let d = |y, m, j| NaiveDate::from_ymd_opt(y, m, j).unwrap();
/// // Eighteen on the day of the request: an adult.
/// assert_eq!(anonymize::age_band(Some(d(2007, 3, 14)), d(2025, 3, 14)), "18-24");
/// assert_eq!(anonymize::age_band(Some(d(2007, 3, 15)), d(2025, 3, 14)), "3-17");
/// assert_eq!(anonymize::age_band(None, d(2025, 3, 14)), "NON_RENSEIGNE");
/// ```
pub fn age_band(birth: Option<NaiveDate>, on: NaiveDate) -> &'static str {
    let Some(birth) = birth else {
        return "NON_RENSEIGNE";
    };
    match age_on(birth, on) {
        ..=2 => "0-2",
        3..=17 => "3-17",
        18..=24 => "18-24",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=54 => "45-54",
        55..=64 => "55-64",
        _ => "65+",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnonymizeError {
    #[error(
        "la colonne source {table}.{column} n'est pas classée dans la politique des champs : classez-la (anonymize::POLICY) avant de l'ingérer"
    )]
    Unclassified { table: String, column: String },
    #[error("la colonne {table}.{column} doit être supprimée et ne doit pas être lue")]
    DroppedColumnRead { table: String, column: String },
    #[error("table {table} : type inattendu pour la colonne {column}")]
    UnexpectedType { table: String, column: String },
    #[error("table {0} absente de l'extraction")]
    MissingTable(String),
    #[error("traitement Arrow impossible : {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// The Paris date of timestamps, remembered per UTC hour: since 1950 every change of
/// Paris's offset falls on a whole UTC hour, so one hour has one Paris date (a national
/// read converts millions of timestamps from a few thousand hours).
#[derive(Default)]
struct ParisDays(FastMap<i64, NaiveDate>);

impl ParisDays {
    /// 1950-01-01T00:00:00Z in microseconds.
    const SINCE: i64 = -631_152_000_000_000;
    const HOUR: i64 = 3_600_000_000;

    fn of(&mut self, micros: i64) -> NaiveDate {
        if micros < Self::SINCE {
            return paris_date(micros);
        }
        *self
            .0
            .entry(micros.div_euclid(Self::HOUR))
            .or_insert_with(|| paris_date(micros))
    }
}

fn paris_date(micros: i64) -> NaiveDate {
    DateTime::from_timestamp_micros(micros)
        .expect("timestamp within range")
        .with_timezone(&Paris)
        .date_naive()
}

/// One source table as handed over by the ingest: its name and its batches.
pub struct SourceTable<'a> {
    pub name: &'a str,
    pub batch: RecordBatch,
}

/// Turns the source tables into the detail zone's tables.
pub struct DetailBuilder {
    pseudonyms: Pseudonymizer,
}

impl DetailBuilder {
    pub fn new(key: &MasterKey) -> Self {
        Self {
            pseudonyms: key.subkey("detail"),
        }
    }

    /// Applies the policy to every table. `tables` maps a source table name to all its
    /// rows (one batch). Returns the detail tables by name.
    pub fn build(
        &self,
        tables: &BTreeMap<String, RecordBatch>,
    ) -> Result<BTreeMap<String, RecordBatch>, AnonymizeError> {
        // Derivations that need other tables: the Paris date of each request and the
        // birth date of each person, kept in memory only.
        let request_dates = self.request_dates(tables)?;
        let births = self.births(tables)?;
        let households = composition::Households::from_batches(
            tables.get("menage_personne"),
            tables.get("personne"),
        );
        let request_households: FastMap<i64, i64> = match tables.get("demande") {
            Some(b) => {
                let ids = int_column(b, "id").ok_or_else(|| self.type_error("demande", "id"))?;
                let menages = int_column(b, "menage_id")
                    .ok_or_else(|| self.type_error("demande", "menage_id"))?;
                ids.iter()
                    .zip(menages.iter())
                    .filter_map(|(d, m)| Some((d?, m?)))
                    .collect()
            }
            None => FastMap::default(),
        };
        // The households' and persons' own ids pseudonymised once: the tables that
        // reference them copy those pseudonyms (same entity, same key: the same text).
        let mut own: FastMap<&'static str, (StringArray, FastMap<i64, u32>)> = FastMap::default();
        for entity in ["menage", "personne"] {
            let Some(batch) = tables.get(entity) else {
                continue;
            };
            if !matches!(treatment(entity, "id"), Some(Pseudonymise(e)) if e == entity) {
                continue;
            }
            let ids = int_column(batch, "id").ok_or_else(|| self.type_error(entity, "id"))?;
            let made = self.pseudonyms.pseudonymise(entity, ids)?;
            let mut rows = FastMap::with_capacity_and_hasher(ids.len(), Default::default());
            for (i, id) in ids.iter().enumerate() {
                if let Some(id) = id {
                    rows.entry(id).or_insert(i as u32);
                }
            }
            own.insert(entity, (made, rows));
        }
        // Each table on its own thread: they only share what was derived above.
        let one = |name: &String, batch: &RecordBatch| -> Result<RecordBatch, AnonymizeError> {
            let mut fields = Vec::new();
            let mut columns: Vec<ArrayRef> = Vec::new();
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                let unclassified = || AnonymizeError::Unclassified {
                    table: name.clone(),
                    column: field.name().clone(),
                };
                match treatment(name, field.name()).ok_or_else(unclassified)? {
                    Drop => {
                        return Err(AnonymizeError::DroppedColumnRead {
                            table: name.clone(),
                            column: field.name().clone(),
                        });
                    }
                    Derive(_) => {}
                    Keep => {
                        fields.push(field.as_ref().clone());
                        columns.push(column.clone());
                    }
                    Pseudonymise(entity) => {
                        let ids = column
                            .as_primitive_opt::<Int64Type>()
                            .ok_or_else(|| self.type_error(name, field.name()))?;
                        let pseudonyms = match own.get(entity) {
                            Some((made, _)) if name == entity && field.name() == "id" => {
                                made.clone()
                            }
                            Some((made, rows)) => self
                                .pseudonyms
                                .pseudonymise_known(entity, ids, rows, made)?,
                            None => self.pseudonyms.pseudonymise(entity, ids)?,
                        };
                        fields.push(Field::new(
                            field.name(),
                            DataType::Utf8,
                            field.is_nullable(),
                        ));
                        columns.push(Arc::new(pseudonyms));
                    }
                    DateParis => {
                        let ts = column
                            .as_primitive_opt::<TimestampMicrosecondType>()
                            .ok_or_else(|| self.type_error(name, field.name()))?;
                        let mut days = ParisDays::default();
                        let dates: Date32Array = ts
                            .iter()
                            .map(|t| t.map(|t| Date32Type::from_naive_date(days.of(t))))
                            .collect();
                        fields.push(Field::new(field.name(), DataType::Date32, true));
                        columns.push(Arc::new(dates));
                    }
                }
            }
            // Derived columns.
            match name.as_str() {
                "demande_personne" => {
                    let demandes = int_column(batch, "demande_id")
                        .ok_or_else(|| self.type_error(name, "demande_id"))?;
                    let personnes = int_column(batch, "personne_id")
                        .ok_or_else(|| self.type_error(name, "personne_id"))?;
                    let bands: StringArray = demandes
                        .iter()
                        .zip(personnes.iter())
                        .map(|(d, p)| {
                            let on = d.and_then(|d| request_dates.get(&d).copied())?;
                            Some(age_band(
                                p.and_then(|p| births.get(&p).copied().flatten()),
                                on,
                            ))
                        })
                        .collect();
                    fields.push(Field::new("tranche_age", DataType::Utf8, true));
                    columns.push(Arc::new(bands));
                }
                "menage_personne" => {
                    let personnes = int_column(batch, "personne_id")
                        .ok_or_else(|| self.type_error(name, "personne_id"))?;
                    let debut = batch
                        .column_by_name("date_debut")
                        .and_then(|c| c.as_primitive_opt::<Date32Type>())
                        .ok_or_else(|| self.type_error(name, "date_debut"))?;
                    let bands: StringArray = personnes
                        .iter()
                        .zip(debut.iter())
                        .map(|(p, d)| {
                            Some(age_band(
                                p.and_then(|p| births.get(&p).copied().flatten()),
                                Date32Type::to_naive_date_opt(d?)?,
                            ))
                        })
                        .collect();
                    fields.push(Field::new("tranche_age_debut", DataType::Utf8, true));
                    columns.push(Arc::new(bands));
                }
                "demande" => {
                    let ids = int_column(batch, "id").ok_or_else(|| self.type_error(name, "id"))?;
                    let menages = int_column(batch, "menage_id")
                        .ok_or_else(|| self.type_error(name, "menage_id"))?;
                    let compositions: StringArray = ids
                        .iter()
                        .zip(menages.iter())
                        .map(|(d, m)| {
                            let on = request_dates.get(&d?)?;
                            Some(households.composition(m?, *on))
                        })
                        .collect();
                    fields.push(Field::new("composition", DataType::Utf8, true));
                    columns.push(Arc::new(compositions));
                }
                "orientation" | "prise_en_charge" => {
                    let request_households = &request_households;
                    let (day, menage): (&str, HouseholdOfRow) = if name == "orientation" {
                        let demandes = int_column(batch, "demande_id")
                            .ok_or_else(|| self.type_error(name, "demande_id"))?;
                        (
                            "date_orientation",
                            Box::new(move |i| {
                                demandes
                                    .is_valid(i)
                                    .then(|| request_households.get(&demandes.value(i)))
                                    .flatten()
                                    .copied()
                            }),
                        )
                    } else {
                        let menages = int_column(batch, "menage_id")
                            .ok_or_else(|| self.type_error(name, "menage_id"))?;
                        (
                            "date_entree",
                            Box::new(move |i| menages.is_valid(i).then(|| menages.value(i))),
                        )
                    };
                    let days = batch
                        .column_by_name(day)
                        .and_then(|c| c.as_primitive_opt::<Date32Type>())
                        .ok_or_else(|| self.type_error(name, day))?;
                    let compositions: StringArray = (0..batch.num_rows())
                        .map(|i| {
                            let on = days
                                .is_valid(i)
                                .then(|| Date32Type::to_naive_date_opt(days.value(i)))
                                .flatten()?;
                            Some(households.composition(menage(i)?, on))
                        })
                        .collect();
                    fields.push(Field::new("composition", DataType::Utf8, true));
                    columns.push(Arc::new(compositions));
                }
                _ => {}
            }
            Ok(RecordBatch::try_new(
                Arc::new(Schema::new(fields)),
                columns,
            )?)
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = tables
                .iter()
                .map(|(name, batch)| (name, scope.spawn(|| one(name, batch))))
                .collect();
            handles
                .into_iter()
                .map(|(name, h)| Ok((name.clone(), h.join().expect("a table's thread")?)))
                .collect()
        })
    }

    fn type_error(&self, table: &str, column: &str) -> AnonymizeError {
        AnonymizeError::UnexpectedType {
            table: table.to_owned(),
            column: column.to_owned(),
        }
    }

    fn request_dates(
        &self,
        tables: &BTreeMap<String, RecordBatch>,
    ) -> Result<FastMap<i64, NaiveDate>, AnonymizeError> {
        let Some(batch) = tables.get("demande") else {
            return Ok(FastMap::default());
        };
        let ids = int_column(batch, "id").ok_or_else(|| self.type_error("demande", "id"))?;
        let dates = batch
            .column_by_name("date_demande")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or_else(|| self.type_error("demande", "date_demande"))?;
        let mut days = ParisDays::default();
        let mut out = FastMap::with_capacity_and_hasher(batch.num_rows(), Default::default());
        out.extend(
            ids.iter()
                .zip(dates.iter())
                .filter_map(|(id, t)| Some((id?, days.of(t?)))),
        );
        Ok(out)
    }

    fn births(
        &self,
        tables: &BTreeMap<String, RecordBatch>,
    ) -> Result<FastMap<i64, Option<NaiveDate>>, AnonymizeError> {
        let Some(batch) = tables.get("personne") else {
            return Ok(FastMap::default());
        };
        let ids = int_column(batch, "id").ok_or_else(|| self.type_error("personne", "id"))?;
        let births = batch
            .column_by_name("date_naissance")
            .and_then(|c| c.as_primitive_opt::<Date32Type>())
            .ok_or_else(|| self.type_error("personne", "date_naissance"))?;
        let mut out = FastMap::with_capacity_and_hasher(batch.num_rows(), Default::default());
        out.extend(
            ids.iter()
                .zip(births.iter())
                .filter_map(|(id, b)| Some((id?, b.and_then(Date32Type::to_naive_date_opt)))),
        );
        Ok(out)
    }
}

fn int_column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a Int64Array> {
    batch.column_by_name(name)?.as_primitive_opt::<Int64Type>()
}

/// Concatenates a table's batches into one (empty schema-conformant batch if none).
pub fn concat(
    schema: &arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> Result<RecordBatch, AnonymizeError> {
    Ok(concat_batches(schema, batches)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn age_counts_completed_years_and_leap_birthdays() {
        assert_eq!(age_on(d(2000, 5, 10), d(2025, 5, 9)), 24);
        assert_eq!(age_on(d(2000, 5, 10), d(2025, 5, 10)), 25);
        // Born 29 February: the birthday is reached on 1 March in common years.
        assert_eq!(age_on(d(2004, 2, 29), d(2025, 2, 28)), 20);
        assert_eq!(age_on(d(2004, 2, 29), d(2025, 3, 1)), 21);
    }

    #[test]
    fn age_bands_follow_indicators_md() {
        assert_eq!(age_band(Some(d(2023, 1, 1)), d(2025, 12, 31)), "0-2");
        assert_eq!(age_band(Some(d(2022, 1, 1)), d(2025, 1, 1)), "3-17");
        assert_eq!(age_band(Some(d(2007, 6, 1)), d(2025, 6, 1)), "18-24");
        assert_eq!(age_band(Some(d(2007, 6, 2)), d(2025, 6, 1)), "3-17");
        assert_eq!(age_band(Some(d(1960, 1, 1)), d(2025, 1, 1)), "65+");
        assert_eq!(age_band(None, d(2025, 1, 1)), "NON_RENSEIGNE");
    }

    #[test]
    fn timestamps_become_paris_dates() {
        // 2025-01-31 23:30 UTC is 1 February 00:30 in Paris.
        let t = DateTime::parse_from_rfc3339("2025-01-31T23:30:00+00:00")
            .unwrap()
            .timestamp_micros();
        assert_eq!(paris_date(t), d(2025, 2, 1));
        // Summer time: 2025-06-30 22:30 UTC is 1 July 00:30 in Paris.
        let t = DateTime::parse_from_rfc3339("2025-06-30T22:30:00+00:00")
            .unwrap()
            .timestamp_micros();
        assert_eq!(paris_date(t), d(2025, 7, 1));
    }

    #[test]
    fn paris_days_per_hour_agree_with_the_time_zone() {
        // Every 7 minutes across both 2025 changes of offset, two midnights each, and
        // the first hour cached (1950).
        let mut days = ParisDays::default();
        for (start, end) in [
            ("2025-03-29T20:00:00Z", "2025-03-31T02:00:00Z"),
            ("2025-10-25T20:00:00Z", "2025-10-27T02:00:00Z"),
            ("1949-12-31T20:00:00Z", "1950-01-01T04:00:00Z"),
        ] {
            let from = DateTime::parse_from_rfc3339(start)
                .unwrap()
                .timestamp_micros();
            let to = DateTime::parse_from_rfc3339(end)
                .unwrap()
                .timestamp_micros();
            let mut t = from;
            while t < to {
                assert_eq!(days.of(t), paris_date(t), "{t}");
                t += 7 * 60_000_000;
            }
        }
    }

    #[test]
    fn every_source_column_is_classified_once() {
        for table in operational::TABLES {
            for column in table.columns {
                let n = POLICY
                    .iter()
                    .filter(|(t, c, _)| *t == table.name && *c == column.name)
                    .count();
                assert_eq!(n, 1, "{}.{}", table.name, column.name);
            }
        }
        assert_eq!(
            POLICY.len(),
            operational::TABLES
                .iter()
                .map(|t| t.columns.len())
                .sum::<usize>()
        );
    }

    #[test]
    fn the_readme_renders_the_policy() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
        )
        .unwrap();
        let start = "<!-- politique:debut -->\n";
        let block = readme
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once("<!-- politique:fin -->"))
            .map(|(block, _)| block)
            .expect("the README holds the policy between its markers");
        assert_eq!(
            block,
            policy_markdown(),
            "README out of date: paste anonymize::policy_markdown()"
        );
    }

    #[test]
    fn identifiers_and_free_text_are_dropped() {
        for (table, column) in [
            ("personne", "telephone"),
            ("personne", "email"),
            ("evaluation", "texte"),
            ("evaluation", "auteur"),
            ("note", "texte"),
            ("note", "auteur"),
        ] {
            assert_eq!(treatment(table, column), Some(Drop));
        }
    }
}
