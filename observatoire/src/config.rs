//! One typed configuration: `observatoire.toml` (in the working folder, or the file
//! named by `OBSERVATOIRE_CONFIG`), overridden by environment variables
//! `OBSERVATOIRE_*`, overridden by command-line flags.
//!
//! | key | variable | default |
//! |---|---|---|
//! | `data` | `OBSERVATOIRE_DATA` | `./observatoire-data` |
//! | `source` | `OBSERVATOIRE_SOURCE` | `sqlite://<data>/source.db` |
//! | `listen` | `OBSERVATOIRE_LISTEN` | `127.0.0.1:8080` |
//! | `secrecy_threshold` | `OBSERVATOIRE_SECRECY_THRESHOLD` | `11` |
//! | `time_travel_days` | `OBSERVATOIRE_TIME_TRAVEL_DAYS` | `7` (what `vacuum` keeps) |
//! | `analyst_k` | `OBSERVATOIRE_ANALYST_K` | `11` (k-anonymity of the analyst zone) |
//! | `max_delete_share` | `OBSERVATOIRE_MAX_DELETE_SHARE` | `0.05` (safety stop of `ingest`) |
//! | `auto_close_days` | `OBSERVATOIRE_AUTO_CLOSE_DAYS` | none (months are closed only by `period close`; N: a month is closed by the first compute N days after its end) |
//! | `watermark_overlap_minutes` | `OBSERVATOIRE_WATERMARK_OVERLAP_MINUTES` | `60` (how far before its watermark an incremental read starts again) |
//!
//! | `[oidc]` | (`OBSERVATOIRE_OIDC_CLIENT_SECRET` for its secret) | none: local accounts only |
//!
//! The pseudonymisation key is never in this file: `<data>/secrets/pseudonymisation.key`
//! or `OBSERVATOIRE_PSEUDO_KEY`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<PathBuf>,
    pub source: Option<String>,
    pub listen: Option<String>,
    pub secrecy_threshold: Option<i64>,
    pub time_travel_days: Option<i64>,
    pub analyst_k: Option<i64>,
    pub max_delete_share: Option<f64>,
    pub watermark_overlap_minutes: Option<i64>,
    pub auto_close_days: Option<i64>,
    /// Sign-in through the identity federation (`[oidc]`, README).
    pub oidc: Option<dashboards_api::oidc::OidcConfig>,
}

impl FileConfig {
    /// Reads the configuration file if there is one.
    pub fn load() -> Result<Self, Error> {
        let path = std::env::var_os("OBSERVATOIRE_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("observatoire.toml"));
        if !path.exists() {
            if std::env::var_os("OBSERVATOIRE_CONFIG").is_some() {
                return Err(Error::Config(format!(
                    "le fichier {} n'existe pas",
                    path.display()
                )));
            }
            return Ok(Self::default());
        }
        Self::read(&path)
    }

    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{} : {}", path.display(), e.message())))
    }

    pub fn data(&self, flag: Option<PathBuf>) -> PathBuf {
        flag.or_else(|| self.data.clone())
            .unwrap_or_else(|| PathBuf::from("observatoire-data"))
    }

    pub fn listen(&self, flag: Option<String>) -> Result<SocketAddr, Error> {
        let text = flag
            .or_else(|| self.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        text.parse().map_err(|_| {
            Error::Config(format!(
                "adresse d'écoute invalide « {text} » (attendu IP:PORT, par exemple 127.0.0.1:8080)"
            ))
        })
    }

    pub fn secrecy_threshold(&self, flag: Option<i64>) -> Result<i64, Error> {
        let t = flag.or(self.secrecy_threshold).unwrap_or(11);
        if t < 1 {
            return Err(Error::Config(format!(
                "seuil de secret statistique invalide : {t} (au moins 1)"
            )));
        }
        Ok(t)
    }

    /// The time-travel window kept by `vacuum`, in days.
    pub fn time_travel_days(&self, flag: Option<i64>) -> Result<i64, Error> {
        let days = flag.or(self.time_travel_days).unwrap_or(7);
        if days < 0 {
            return Err(Error::Config(format!(
                "fenêtre de voyage dans le temps invalide : {days} jour(s) (au moins 0)"
            )));
        }
        Ok(days)
    }

    /// The options of an ingest: the mass-delete stop (variable
    /// `OBSERVATOIRE_MAX_DELETE_SHARE` over the file's `max_delete_share`).
    pub fn ingest_options(&self, allow_mass_delete: bool) -> Result<crate::IngestOptions, Error> {
        let from_env = match std::env::var("OBSERVATOIRE_MAX_DELETE_SHARE") {
            Ok(text) => Some(text.trim().replace(',', ".").parse::<f64>().map_err(|_| {
                Error::Config(format!(
                    "OBSERVATOIRE_MAX_DELETE_SHARE : « {text} » n'est pas une part entre 0 et 1"
                ))
            })?),
            Err(_) => None,
        };
        let share = from_env.or(self.max_delete_share).unwrap_or(0.05);
        if !(0.0..=1.0).contains(&share) {
            return Err(Error::Config(format!(
                "part maximale de suppression invalide : {share} (entre 0 et 1)"
            )));
        }
        let overlap = match std::env::var("OBSERVATOIRE_WATERMARK_OVERLAP_MINUTES") {
            Ok(text) => Some(text.trim().parse::<i64>().map_err(|_| {
                Error::Config(format!(
                    "OBSERVATOIRE_WATERMARK_OVERLAP_MINUTES : « {text} » n'est pas un nombre de minutes"
                ))
            })?),
            Err(_) => None,
        }
        .or(self.watermark_overlap_minutes)
        .unwrap_or(60);
        if overlap < 0 {
            return Err(Error::Config(format!(
                "recouvrement des filigranes invalide : {overlap} minute(s) (au moins 0)"
            )));
        }
        Ok(crate::IngestOptions {
            max_delete_share: share,
            allow_mass_delete,
            overlap: chrono::Duration::minutes(overlap),
            ..Default::default()
        })
    }

    /// The delay after which a month is closed automatically (`None`: never).
    pub fn auto_close_days(&self) -> Result<Option<u32>, Error> {
        let days = match std::env::var("OBSERVATOIRE_AUTO_CLOSE_DAYS") {
            Ok(text) => Some(text.trim().parse::<i64>().map_err(|_| {
                Error::Config(format!(
                    "OBSERVATOIRE_AUTO_CLOSE_DAYS : « {text} » n'est pas un nombre de jours"
                ))
            })?),
            Err(_) => None,
        }
        .or(self.auto_close_days);
        match days {
            None => Ok(None),
            Some(d) if (0..=3650).contains(&d) => Ok(Some(d as u32)),
            Some(d) => Err(Error::Config(format!(
                "délai de clôture automatique invalide : {d} jour(s) (de 0 à 3650)"
            ))),
        }
    }

    /// The k of the analyst zone's k-anonymity.
    pub fn analyst_k(&self, flag: Option<i64>) -> Result<usize, Error> {
        let k = flag.or(self.analyst_k).unwrap_or(11);
        if k < 1 {
            return Err(Error::Config(format!(
                "k de la zone analyste invalide : {k} (au moins 1)"
            )));
        }
        Ok(k as usize)
    }

    pub fn source(&self, flag: Option<String>, data: &Path) -> String {
        flag.or_else(|| self.source.clone())
            .unwrap_or_else(|| format!("sqlite://{}", data.join("source.db").display()))
    }
}
