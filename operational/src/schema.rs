//! The source tables of `shared/SOURCE_SCHEMA.md`, declared once in Rust.
//!
//! The SQL migrations create them; the simulator writes rows in this column order and
//! the ingest builds its SELECT lists from the same declaration, so a column cannot be
//! added on one side and forgotten on the other (a test compares them with the
//! migrated databases).

/// The logical type of a source column, independent of the back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// BIGINT / INTEGER: ids and references.
    Id,
    /// INTEGER: counts (places, persons).
    Count,
    /// TEXT: codes, names, free text.
    Text,
    /// BOOLEAN / INTEGER 0-1.
    Bool,
    /// DATE / TEXT `YYYY-MM-DD`.
    Date,
    /// TIMESTAMPTZ / TEXT RFC 3339 with its offset.
    Timestamp,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
}

#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    /// Every column, `id` first and `updated_at` last, in migration order.
    pub columns: &'static [Column],
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

const fn c(name: &'static str, ty: ColumnType) -> Column {
    Column { name, ty }
}

use ColumnType::*;

pub const TABLES: &[Table] = &[
    Table {
        name: "entite",
        columns: &[
            c("id", Id),
            c("raison_sociale", Text),
            c("siren", Text),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "dispositif",
        columns: &[
            c("id", Id),
            c("entite_id", Id),
            c("departement", Text),
            c("nom", Text),
            c("siret", Text),
            c("finess", Text),
            c("categorie", Text),
            c("type", Text),
            c("volet", Text),
            c("places_financees_p177", Count),
            c("places_financees_hors_p177", Count),
            c("publics_acceptes", Text),
            c("date_ouverture", Date),
            c("date_fermeture", Date),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "groupe_places",
        columns: &[
            c("id", Id),
            c("dispositif_id", Id),
            c("nb_places", Count),
            c("temporaire", Bool),
            c("date_debut", Date),
            c("date_fin", Date),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "menage",
        columns: &[
            c("id", Id),
            c("siao_departement", Text),
            c("date_creation", Date),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "personne",
        columns: &[
            c("id", Id),
            c("nom", Text),
            c("prenom", Text),
            c("date_naissance", Date),
            c("sexe", Text),
            c("nationalite", Text),
            c("telephone", Text),
            c("email", Text),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "menage_personne",
        columns: &[
            c("id", Id),
            c("menage_id", Id),
            c("personne_id", Id),
            c("role", Text),
            c("date_debut", Date),
            c("date_fin", Date),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "evaluation",
        columns: &[
            c("id", Id),
            c("menage_id", Id),
            c("type", Text),
            c("date_evaluation", Date),
            c("situation_ethos", Text),
            c("violences", Bool),
            c("sante", Bool),
            c("sortie_institution", Bool),
            c("texte", Text),
            c("auteur", Text),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "note",
        columns: &[
            c("id", Id),
            c("menage_id", Id),
            c("texte", Text),
            c("auteur", Text),
            c("created_at", Timestamp),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "demande",
        columns: &[
            c("id", Id),
            c("menage_id", Id),
            c("type", Text),
            c("siao_departement", Text),
            c("date_demande", Timestamp),
            c("canal", Text),
            c("statut", Text),
            c("date_statut", Timestamp),
            c("motif_non_pourvue", Text),
            c("preconisation", Text),
            c("prescripteur_entite_id", Id),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "demande_personne",
        columns: &[
            c("id", Id),
            c("demande_id", Id),
            c("personne_id", Id),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "orientation",
        columns: &[
            c("id", Id),
            c("demande_id", Id),
            c("dispositif_id", Id),
            c("groupe_places_id", Id),
            c("date_orientation", Date),
            c("statut", Text),
            c("date_reponse", Date),
            c("motif_refus", Text),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "liste_attente",
        columns: &[
            c("id", Id),
            c("demande_id", Id),
            c("dispositif_id", Id),
            c("date_inscription", Date),
            c("date_desinscription", Date),
            c("motif_desinscription", Text),
            c("updated_at", Timestamp),
        ],
    },
    Table {
        name: "prise_en_charge",
        columns: &[
            c("id", Id),
            c("menage_id", Id),
            c("demande_id", Id),
            c("orientation_id", Id),
            c("dispositif_id", Id),
            c("groupe_places_id", Id),
            c("nb_personnes", Count),
            c("date_entree", Date),
            c("date_sortie", Date),
            c("motif_sortie", Text),
            c("renouvellement_de", Id),
            c("updated_at", Timestamp),
        ],
    },
];

/// The declaration of a source table by name.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}
