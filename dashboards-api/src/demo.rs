//! The demo's accounts: one per profile, re-created (new password, new token, old
//! tokens revoked) at every `observatoire demo`.

use std::path::Path;

use crate::accounts::{AccountError, Accounts};
use crate::authz::{Profile, Scope};

/// A demo account with its password and API token, printed once by `demo`.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub login: String,
    pub profile: Profile,
    pub scope: Scope,
    pub password: String,
    pub token: String,
}

/// Creates the demo accounts of a data folder. `departement` is the one the
/// départemental, SIAO and analyst accounts are scoped to (its région for the regional
/// one).
pub async fn create_demo_accounts(
    data_dir: &Path,
    departement: &str,
) -> Result<Vec<DemoAccount>, AccountError> {
    let region = operational::region_of(departement)
        .ok_or_else(|| AccountError::Invalid(format!("département inconnu « {departement} »")))?;
    let accounts = Accounts::open(&crate::accounts_path(data_dir)).await?;
    let plan = [
        ("dihal", Profile::AdministrateurNational, "FR".to_owned()),
        (
            "dreets",
            Profile::AdministrateurRegional,
            format!("R{region}"),
        ),
        (
            "ddets",
            Profile::AdministrateurDepartemental,
            format!("D{departement}"),
        ),
        (
            "siao",
            Profile::AdministrateurSiao,
            format!("D{departement}"),
        ),
        ("analyste", Profile::Analyste, "FR".to_owned()),
        (
            "statisticien",
            Profile::StatisticienNational,
            "FR".to_owned(),
        ),
    ];
    let mut out = Vec::new();
    for (base, profile, scope) in plan {
        let login = if scope == "FR" {
            format!("{base}.demo")
        } else {
            format!("{base}-{}.demo", scope.to_ascii_lowercase())
        };
        let scope = Scope::parse(&scope).map_err(|e| AccountError::Invalid(e.0))?;
        let password = crate::accounts::new_secret()[..20].to_owned();
        accounts
            .reset_user(&login, profile, &scope, &password)
            .await?;
        let token = accounts
            .issue_token(&login, "démonstration", chrono::Duration::days(30))
            .await?
            .token;
        out.push(DemoAccount {
            login,
            profile,
            scope,
            password,
            token,
        });
    }
    Ok(out)
}
