//! The one place that decides what a caller may read (DESIGN.md, access model).
//!
//! A caller is a [`Principal`]: an account's login, its [`Profile`] and its [`Scope`].
//! Every read path asks this module for a decision and hands that decision to the
//! data-access function, which cannot be called without one:
//! - [`stats_access`] gives a [`StatsAccess`]: the statistical-base cells the caller may see
//!   (its territory and every level below it, plus the aggregates of the levels above: its
//!   région, FR), as a row predicate and as a DataFusion filter;
//! - [`StatsAccess::territory`] refuses an explicit request for a territory outside the scope;
//! - [`zones`] says which lake zones the caller's SQL may name (deny by default).
//!
//! Nothing here reads the lake: the decisions are pure functions of the principal.

use std::collections::BTreeSet;
use std::fmt;

use datafusion::logical_expr::{Expr, col, lit};
use serde::{Deserialize, Serialize};

/// The profiles of DESIGN.md's access model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Profile {
    /// Dihal: France; stats, analyst zone, audit log.
    AdministrateurNational,
    /// DREETS: one région; stats.
    AdministrateurRegional,
    /// DDETS: one or more départements; stats.
    AdministrateurDepartemental,
    /// SIAO director: one SIAO (a département); stats, its activity report.
    AdministrateurSiao,
    /// Social-observation analyst: France or a territory; stats, analyst zone (SQL).
    Analyste,
    /// National statistician: France; stats, analyst and detail zones (audited).
    StatisticienNational,
}

impl Profile {
    pub const ALL: [Profile; 6] = [
        Profile::AdministrateurNational,
        Profile::AdministrateurRegional,
        Profile::AdministrateurDepartemental,
        Profile::AdministrateurSiao,
        Profile::Analyste,
        Profile::StatisticienNational,
    ];

    /// The stable code stored with the account and given on the command line.
    pub fn code(self) -> &'static str {
        match self {
            Profile::AdministrateurNational => "ADMINISTRATEUR_NATIONAL",
            Profile::AdministrateurRegional => "ADMINISTRATEUR_REGIONAL",
            Profile::AdministrateurDepartemental => "ADMINISTRATEUR_DEPARTEMENTAL",
            Profile::AdministrateurSiao => "ADMINISTRATEUR_SIAO",
            Profile::Analyste => "ANALYSTE",
            Profile::StatisticienNational => "STATISTICIEN_NATIONAL",
        }
    }

    /// The French label shown to users.
    pub fn label(self) -> &'static str {
        match self {
            Profile::AdministrateurNational => "Administrateur national (Dihal)",
            Profile::AdministrateurRegional => "Administrateur régional (DREETS)",
            Profile::AdministrateurDepartemental => "Administrateur départemental (DDETS)",
            Profile::AdministrateurSiao => "Administrateur SIAO",
            Profile::Analyste => "Analyste (observation sociale)",
            Profile::StatisticienNational => "Statisticien national",
        }
    }

    /// Parses a profile code (case-insensitive, `-` accepted for `_`).
    pub fn parse(text: &str) -> Result<Profile, AuthzError> {
        let norm = text.trim().to_ascii_uppercase().replace('-', "_");
        Profile::ALL
            .into_iter()
            .find(|p| p.code() == norm)
            .ok_or_else(|| {
                AuthzError(format!(
                    "profil inconnu « {text} » (attendu l'un de {})",
                    Profile::ALL.map(|p| p.code()).join(", ")
                ))
            })
    }

    /// Checks that a scope is one this profile may have.
    pub fn check_scope(self, scope: &Scope) -> Result<(), AuthzError> {
        let ok = match self {
            Profile::AdministrateurNational | Profile::StatisticienNational => {
                matches!(scope, Scope::France)
            }
            Profile::AdministrateurRegional => matches!(scope, Scope::Region(_)),
            Profile::AdministrateurDepartemental => matches!(scope, Scope::Departements(_)),
            Profile::AdministrateurSiao => {
                matches!(scope, Scope::Departements(d) if d.len() == 1)
            }
            Profile::Analyste => true,
        };
        if ok {
            return Ok(());
        }
        let expected = match self {
            Profile::AdministrateurNational | Profile::StatisticienNational => "FR",
            Profile::AdministrateurRegional => "une région (par exemple R11)",
            Profile::AdministrateurDepartemental => {
                "un ou plusieurs départements (par exemple D93 ou D75,D93)"
            }
            Profile::AdministrateurSiao => "le département de son SIAO (par exemple D93)",
            Profile::Analyste => "FR ou un territoire",
        };
        Err(AuthzError(format!(
            "territoire « {scope} » impossible pour le profil {} : attendu {expected}",
            self.code()
        )))
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The territory an account is scoped to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    France,
    /// One région (COG code, `11`).
    Region(String),
    /// One or more départements (COG codes), sorted, without duplicates.
    Departements(BTreeSet<String>),
}

impl Scope {
    /// Parses `FR`, `R11`, or `D93` / `D75,D93` (départements of one or more régions).
    pub fn parse(text: &str) -> Result<Scope, AuthzError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("FR") {
            return Ok(Scope::France);
        }
        let bad = || {
            AuthzError(format!(
                "territoire invalide « {text} » (attendu FR, R suivi d'un code de région comme R11, ou D suivi d'un code de département comme D93, plusieurs départements séparés par des virgules)"
            ))
        };
        if let Some(r) = text.strip_prefix('R')
            && operational::region_name(r).is_some()
        {
            return Ok(Scope::Region(r.to_owned()));
        }
        let mut deps = BTreeSet::new();
        for part in text.split(',') {
            let d = part.trim().strip_prefix('D').ok_or_else(bad)?;
            if operational::departement(d).is_none() {
                return Err(bad());
            }
            deps.insert(d.to_owned());
        }
        if deps.is_empty() {
            return Err(bad());
        }
        Ok(Scope::Departements(deps))
    }

    /// The régions of the scope (those of its départements), empty for France.
    fn regions(&self) -> BTreeSet<&str> {
        match self {
            Scope::France => BTreeSet::new(),
            Scope::Region(r) => BTreeSet::from([r.as_str()]),
            Scope::Departements(d) => d.iter().filter_map(|d| operational::region_of(d)).collect(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::France => f.write_str("FR"),
            Scope::Region(r) => write!(f, "R{r}"),
            Scope::Departements(d) => {
                let codes: Vec<String> = d.iter().map(|d| format!("D{d}")).collect();
                f.write_str(&codes.join(","))
            }
        }
    }
}

/// A configuration or validation error of this module (French message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzError(pub String);

impl fmt::Display for AuthzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthzError {}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub login: String,
    pub profile: Profile,
    pub scope: Scope,
}

/// A refusal: the reason, in French, given to the caller and written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub reason: String,
}

/// The lake zones a SQL session may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zones {
    pub stats: bool,
    pub analyst: bool,
    pub detail: bool,
    pub audit: bool,
}

/// The zones a profile may read in SQL (DESIGN.md's table; SQL itself is open to the
/// Analyste, the Statisticien national and the Administrateur national only).
pub fn zones(principal: &Principal) -> Result<Zones, Denied> {
    match principal.profile {
        Profile::Analyste => Ok(Zones {
            stats: true,
            analyst: true,
            detail: false,
            audit: false,
        }),
        Profile::StatisticienNational => Ok(Zones {
            stats: true,
            analyst: true,
            detail: true,
            audit: false,
        }),
        Profile::AdministrateurNational => Ok(Zones {
            stats: true,
            analyst: true,
            detail: false,
            audit: true,
        }),
        p => Err(Denied {
            reason: format!(
                "l'accès SQL est réservé aux profils Analyste, Statisticien national et Administrateur national (votre profil : {})",
                p.label()
            ),
        }),
    }
}

/// May the caller read the audit log?
pub fn audit_access(principal: &Principal) -> Result<AuditAccess, Denied> {
    if principal.profile == Profile::AdministrateurNational {
        Ok(AuditAccess { _private: () })
    } else {
        Err(Denied {
            reason: "le journal d'audit est réservé à l'administrateur national".into(),
        })
    }
}

/// The decision that the audit log may be read (only [`audit_access`] makes one).
#[derive(Debug, Clone)]
pub struct AuditAccess {
    _private: (),
}

/// The statistical-base cells a caller may read. Only [`stats_access`] makes one, so a
/// data-access function that takes it as an argument cannot be called unchecked.
#[derive(Debug, Clone)]
pub struct StatsAccess {
    scope: Scope,
    /// The régions whose aggregates the scope sees (its own, or those of its départements).
    regions: BTreeSet<String>,
}

/// The statistical-base decision for a caller: every profile reads stats, within its scope.
pub fn stats_access(principal: &Principal) -> StatsAccess {
    let regions = principal
        .scope
        .regions()
        .into_iter()
        .map(str::to_owned)
        .collect();
    StatsAccess {
        scope: principal.scope.clone(),
        regions,
    }
}

impl StatsAccess {
    /// Whether a cell of (`territoire_niveau`, `territoire`) may be shown.
    pub fn allows(&self, niveau: &str, territoire: &str) -> bool {
        match (&self.scope, niveau) {
            (Scope::France, _) => true,
            (_, "FR") => territoire == "FR",
            (Scope::Region(r), "REGION") => territoire == r,
            (Scope::Region(r), "DEPARTEMENT") => operational::region_of(territoire) == Some(r),
            (Scope::Departements(_), "REGION") => self.regions.contains(territoire),
            (Scope::Departements(d), "DEPARTEMENT") => d.contains(territoire),
            _ => false,
        }
    }

    /// Refuses an explicit request for a territory outside the scope.
    pub fn territory(&self, niveau: &str, territoire: &str) -> Result<(), Denied> {
        if self.allows(niveau, territoire) {
            Ok(())
        } else {
            Err(Denied {
                reason: format!(
                    "le territoire {} n'est pas dans votre périmètre ({})",
                    crate::territory_code(niveau, territoire),
                    self.scope
                ),
            })
        }
    }

    /// Whether an indicator declared for one département (a convention's) is shown: only
    /// to callers who may see that département's cells.
    pub fn shows_indicator(&self, territoire: Option<&str>) -> bool {
        territoire.is_none_or(|d| self.allows("DEPARTEMENT", d))
    }

    /// The same rule as [`Self::allows`], as a filter over a table with the stats
    /// table's `territoire_niveau` and `territoire` columns.
    pub fn filter(&self) -> Expr {
        let niveau = || col("territoire_niveau");
        let ter = || col("territoire");
        let in_list = |values: Vec<String>| {
            if values.is_empty() {
                lit(false)
            } else {
                ter().in_list(values.into_iter().map(lit).collect(), false)
            }
        };
        let fr = niveau().eq(lit("FR"));
        match &self.scope {
            Scope::France => lit(true),
            Scope::Region(r) => {
                let deps: Vec<String> = operational::territory::departements()
                    .filter(|d| d.region == r)
                    .map(|d| d.code.to_owned())
                    .collect();
                fr.or(niveau().eq(lit("REGION")).and(ter().eq(lit(r.clone()))))
                    .or(niveau().eq(lit("DEPARTEMENT")).and(in_list(deps)))
            }
            Scope::Departements(d) => fr
                .or(niveau()
                    .eq(lit("REGION"))
                    .and(in_list(self.regions.iter().cloned().collect())))
                .or(niveau()
                    .eq(lit("DEPARTEMENT"))
                    .and(in_list(d.iter().cloned().collect()))),
        }
    }

    /// The scope the decision was made for.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(profile: Profile, scope: &str) -> Principal {
        Principal {
            login: "test".into(),
            profile,
            scope: Scope::parse(scope).unwrap(),
        }
    }

    #[test]
    fn a_departement_sees_itself_its_region_and_france_only() {
        let a = stats_access(&principal(Profile::AdministrateurDepartemental, "D93"));
        assert!(a.allows("DEPARTEMENT", "93"));
        assert!(a.allows("REGION", "11"));
        assert!(a.allows("FR", "FR"));
        assert!(
            !a.allows("DEPARTEMENT", "75"),
            "same région, other département"
        );
        assert!(!a.allows("DEPARTEMENT", "23"));
        assert!(!a.allows("REGION", "75"));
        assert!(!a.allows("FR", "93"), "a crafted level");
        assert!(!a.allows("AUTRE", "93"), "unknown level: denied");
        assert!(a.territory("DEPARTEMENT", "75").is_err());
    }

    #[test]
    fn a_region_sees_its_departements_and_france() {
        let a = stats_access(&principal(Profile::AdministrateurRegional, "R11"));
        for d in ["75", "77", "93", "95"] {
            assert!(a.allows("DEPARTEMENT", d), "{d}");
        }
        assert!(!a.allows("DEPARTEMENT", "13"));
        assert!(!a.allows("DEPARTEMENT", "23"));
        assert!(a.allows("REGION", "11"));
        assert!(!a.allows("REGION", "93"));
        assert!(a.allows("FR", "FR"));
    }

    #[test]
    fn several_departements_of_two_regions() {
        let a = stats_access(&principal(Profile::AdministrateurDepartemental, "D93,D13"));
        assert!(a.allows("DEPARTEMENT", "93") && a.allows("DEPARTEMENT", "13"));
        assert!(a.allows("REGION", "11") && a.allows("REGION", "93"));
        assert!(!a.allows("DEPARTEMENT", "75") && !a.allows("REGION", "75"));
    }

    #[test]
    fn france_sees_everything_and_conventions_follow_the_scope() {
        let a = stats_access(&principal(Profile::AdministrateurNational, "FR"));
        assert!(a.allows("DEPARTEMENT", "23") && a.allows("REGION", "75"));
        let d75 = stats_access(&principal(Profile::AdministrateurSiao, "D75"));
        assert!(!d75.shows_indicator(Some("93")));
        assert!(d75.shows_indicator(Some("75")));
        assert!(d75.shows_indicator(None));
    }

    #[test]
    fn scopes_are_checked_against_profiles() {
        let s = |t: &str| Scope::parse(t).unwrap();
        assert!(
            Profile::AdministrateurNational
                .check_scope(&s("R11"))
                .is_err()
        );
        assert!(
            Profile::AdministrateurRegional
                .check_scope(&s("D93"))
                .is_err()
        );
        assert!(
            Profile::AdministrateurSiao
                .check_scope(&s("D93,D75"))
                .is_err()
        );
        assert!(Profile::AdministrateurSiao.check_scope(&s("D93")).is_ok());
        assert!(Profile::Analyste.check_scope(&s("R11")).is_ok());
        assert!(Scope::parse("D99").is_err());
        assert!(Scope::parse("R99").is_err());
        assert!(Scope::parse("93").is_err());
        assert_eq!(s("D93,D75").to_string(), "D75,D93");
    }

    #[test]
    fn sql_zones_by_profile() {
        assert!(zones(&principal(Profile::AdministrateurSiao, "D93")).is_err());
        assert!(zones(&principal(Profile::AdministrateurRegional, "R11")).is_err());
        let z = zones(&principal(Profile::Analyste, "R11")).unwrap();
        assert!(z.analyst && !z.detail && !z.audit);
        let z = zones(&principal(Profile::StatisticienNational, "FR")).unwrap();
        assert!(z.detail && !z.audit);
        let z = zones(&principal(Profile::AdministrateurNational, "FR")).unwrap();
        assert!(z.audit && !z.detail);
        assert!(audit_access(&principal(Profile::Analyste, "FR")).is_err());
    }
}
