//! The OpenAPI document of `/api/v1`, generated from the handlers' annotations and the
//! response types (`GET /api/v1/openapi.json`, public).
//!
//! The catalogue's and the errors' shapes are declared here as documentation types: the
//! catalogue is serialised from `indicators::Indicator`, which knows nothing of HTTP.

use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An API error.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Erreur {
    /// Code stable (ACCES_REFUSE, TABLE_INCONNUE, …).
    code: String,
    /// Message en français.
    erreur: String,
}

/// A dimension of an indicator.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Dimension {
    nom: String,
    libelle: String,
    modalites: Vec<String>,
}

/// An indicator of the catalogue.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Indicateur {
    /// Code national (U04) ou d'une convention.
    code: String,
    /// Identifiant dans l'API (taux_dnp_115).
    id: String,
    libelle: String,
    definition: String,
    unite: String,
    domaine: String,
    /// Règle de secret : COMPTE, RATIO, QUANTILE ou AUCUNE.
    sdc: String,
    dimensions: Vec<Dimension>,
    /// Département d'une convention ; absent pour un indicateur national.
    territoire: Option<String>,
}

/// A column of an SQL result.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ColonneSql {
    nom: String,
    #[schema(rename = "type")]
    type_: String,
}

/// An SQL result as JSON.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ResultatSql {
    colonnes: Vec<ColonneSql>,
    nombre: i64,
    /// Une ligne par objet, colonne → valeur.
    lignes: Vec<serde_json::Map<String, serde_json::Value>>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "jeton",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Jeton d'accès (observatoire tokens create) : Authorization: Bearer obs_…",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::layer::SESSION_COOKIE,
                "Session web (connexion par /connexion) ; les écritures demandent l'en-tête X-CSRF-Token",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Observatoire SI SIAO",
        description = "API des indicateurs nationaux de l'hébergement d'urgence et de l'insertion. Chaque lecture est authentifiée, limitée au périmètre du profil et journalisée.",
        license(name = "EUPL-1.2")
    ),
    paths(
        crate::health,
        crate::catalogue,
        crate::territoires,
        crate::publications,
        crate::valeurs,
        crate::comparaison,
        crate::carte,
        crate::periodes,
        crate::qualite,
        crate::audit_log,
        crate::sql_query,
    ),
    components(schemas(
        Erreur,
        Indicateur,
        Dimension,
        ResultatSql,
        crate::StatRow,
        crate::values::Publication,
        crate::values::QualityRow,
        crate::audit::AuditRecord,
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`.
pub async fn document() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}
