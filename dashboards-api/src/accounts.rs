//! Accounts, API tokens and web sessions, in a local SQLite file (`<data>/comptes.db`,
//! mode 0600): not analytics data, so not in the lake.
//!
//! - passwords are hashed with Argon2id (PHC strings); an account signed in through the
//!   identity federation has no password;
//! - an API token reads `obs_<id>_<secret>`: the id is stored as is (to list and revoke
//!   it), the secret only as its SHA-256 (it is 256 random bits: no slow hash needed);
//!   every token has an expiry and can be revoked;
//! - a web session is a random cookie value stored as its SHA-256, with its CSRF token
//!   and an expiry;
//! - failed logins are throttled per login (in memory): after 5 failures in a row, each
//!   further attempt waits one more minute, at most 15; a success resets the count.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use subtle::ConstantTimeEq;

use crate::authz::{Principal, Profile, Scope};

/// Minimum length of a local password.
pub const MIN_PASSWORD_LEN: usize = 12;
const MAX_FAILURES: u32 = 5;
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("base des comptes {path} : {reason}")]
    Store { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("compte inconnu : « {0} »")]
    UnknownAccount(String),
    #[error("le compte « {0} » existe déjà")]
    Exists(String),
}

/// One account as listed by `users list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Account {
    pub login: String,
    pub profil: Profile,
    pub territoire: String,
    pub actif: bool,
    pub federe: bool,
    pub cree_le: String,
}

/// A token just issued: the only moment its secret is known.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: String,
    pub token: String,
    pub expire_le: DateTime<Utc>,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub login: String,
    pub libelle: String,
    pub cree_le: String,
    pub expire_le: String,
    pub revoque_le: Option<String>,
}

/// Why a login failed (the caller is told only "identifiant ou mot de passe incorrect",
/// or that it must wait; the audit log gets the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    /// Wrong login or password, or a disabled account (not told apart).
    Refused,
    /// Too many failures: retry after this delay.
    Throttled(Duration),
}

struct Failures {
    count: u32,
    last: Instant,
}

/// The account store.
pub struct Accounts {
    pool: SqlitePool,
    path: String,
    failures: Mutex<HashMap<String, Failures>>,
    /// A hash verified when the login is unknown, so that timing does not tell.
    dummy_hash: String,
    /// Tokens recently checked, valid while the store has not changed since.
    tokens: Mutex<TokenCache>,
}

/// The state of the store's files (database and write-ahead log: modification time and
/// size). Any commit — this server's, or a `tokens revoke` or `users disable` run by
/// another process — appends to the log and changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoreStamp([Option<(std::time::SystemTime, u64)>; 2]);

/// Tokens checked against the store, by id: the hash of their secret, their expiry and
/// the account's principal, read while the store had `stamp`. Entries serve only while the
/// store's stamp is unchanged: a revoked token or a disabled account is refused by the
/// next request, as when every request read the store.
///
/// The cache is also emptied every second, so that a commit whose stamp looks unchanged
/// (a file system with coarse modification times, a log rewritten to the same size within
/// one tick) is seen within a second at worst.
#[derive(Default)]
struct TokenCache {
    stamp: Option<StoreStamp>,
    since: Option<std::time::Instant>,
    entries: HashMap<String, (String, DateTime<Utc>, Principal)>,
}

/// How long cached tokens serve at most.
const TOKEN_CACHE_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// At most this many tokens are kept (beyond, the cache starts again empty).
const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// The principal of an active account's row; a row that no longer parses (edited by
/// hand) or whose territory does not fit its profile grants nothing.
fn principal_of(login: &str, profil: &str, territoire: &str) -> Option<Principal> {
    let (Ok(profile), Ok(scope)) = (Profile::parse(profil), Scope::parse(territoire)) else {
        tracing::warn!("compte au profil ou au territoire illisible : accès refusé");
        return None;
    };
    profile.check_scope(&scope).ok()?;
    Some(Principal {
        login: login.to_owned(),
        profile,
        scope,
    })
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS compte (
        login TEXT PRIMARY KEY,
        profil TEXT NOT NULL,
        territoire TEXT NOT NULL,
        mot_de_passe TEXT,
        actif INTEGER NOT NULL DEFAULT 1,
        federe INTEGER NOT NULL DEFAULT 0,
        cree_le TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS jeton (
        id TEXT PRIMARY KEY,
        login TEXT NOT NULL REFERENCES compte(login),
        empreinte TEXT NOT NULL,
        libelle TEXT NOT NULL,
        cree_le TEXT NOT NULL,
        expire_le TEXT NOT NULL,
        revoque_le TEXT)",
    "CREATE TABLE IF NOT EXISTS session (
        empreinte TEXT PRIMARY KEY,
        login TEXT NOT NULL REFERENCES compte(login),
        csrf TEXT NOT NULL,
        cree_le TEXT NOT NULL,
        expire_le TEXT NOT NULL)",
];

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("system random source");
    hex::encode(buf)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Checks a login's form: 3 to 64 characters among a–z, 0–9, `.`, `_`, `-`, `@`.
pub fn check_login(login: &str) -> Result<(), AccountError> {
    let ok = (3..=64).contains(&login.len())
        && login.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@')
        });
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "identifiant invalide « {login} » : de 3 à 64 caractères parmi a-z, 0-9, « . », « _ », « - », « @ »"
        )))
    }
}

fn hash_password(password: &str) -> Result<String, AccountError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AccountError::Invalid(format!(
            "mot de passe trop court : au moins {MIN_PASSWORD_LEN} caractères"
        )));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Invalid(format!("hachage du mot de passe impossible : {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).ok().is_some_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

impl Accounts {
    /// Opens (and creates if missing) the account store at `path`.
    pub async fn open(path: &Path) -> Result<Self, AccountError> {
        let label = path.display().to_string();
        let store = |reason: String| AccountError::Store {
            path: label.clone(),
            reason,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| store(e.to_string()))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| store(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| store(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        for statement in SCHEMA {
            sqlx::query(sqlx::AssertSqlSafe(*statement))
                .execute(&pool)
                .await
                .map_err(|e| store(e.to_string()))?;
        }
        let dummy_hash = Argon2::default()
            .hash_password(random_hex(16).as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| store(e.to_string()))?;
        Ok(Self {
            pool,
            tokens: Mutex::new(TokenCache::default()),
            path: label,
            failures: Mutex::new(HashMap::new()),
            dummy_hash,
        })
    }

    fn err(&self, e: sqlx::Error) -> AccountError {
        AccountError::Store {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Creates a local account (`password` `None`: federated sign-in only).
    pub async fn add_user(
        &self,
        login: &str,
        profile: Profile,
        scope: &Scope,
        password: Option<&str>,
    ) -> Result<(), AccountError> {
        check_login(login)?;
        profile
            .check_scope(scope)
            .map_err(|e| AccountError::Invalid(e.0))?;
        let hash = match password {
            Some(p) => Some(hash_password(p)?),
            None => None,
        };
        let done = sqlx::query(
            "INSERT INTO compte (login, profil, territoire, mot_de_passe, cree_le) VALUES (?, ?, ?, ?, ?) ON CONFLICT (login) DO NOTHING",
        )
        .bind(login)
        .bind(profile.code())
        .bind(scope.to_string())
        .bind(hash)
        .bind(now_text())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(AccountError::Exists(login.to_owned()));
        }
        Ok(())
    }

    /// Creates or replaces an account, revoking its tokens and sessions (the demo's
    /// accounts, re-created at every `demo`).
    pub async fn reset_user(
        &self,
        login: &str,
        profile: Profile,
        scope: &Scope,
        password: &str,
    ) -> Result<(), AccountError> {
        check_login(login)?;
        profile
            .check_scope(scope)
            .map_err(|e| AccountError::Invalid(e.0))?;
        let hash = hash_password(password)?;
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        sqlx::query(
            "INSERT INTO compte (login, profil, territoire, mot_de_passe, cree_le) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (login) DO UPDATE SET profil = excluded.profil, territoire = excluded.territoire,
             mot_de_passe = excluded.mot_de_passe, actif = 1",
        )
        .bind(login)
        .bind(profile.code())
        .bind(scope.to_string())
        .bind(hash)
        .bind(now_text())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        sqlx::query("UPDATE jeton SET revoque_le = ? WHERE login = ? AND revoque_le IS NULL")
            .bind(now_text())
            .bind(login)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        sqlx::query("DELETE FROM session WHERE login = ?")
            .bind(login)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// The account signed in through the identity federation: created on first sign-in,
    /// its profile and territory updated from the claims at each sign-in.
    pub async fn upsert_federated(
        &self,
        login: &str,
        profile: Profile,
        scope: &Scope,
    ) -> Result<(), AccountError> {
        check_login(login)?;
        profile
            .check_scope(scope)
            .map_err(|e| AccountError::Invalid(e.0))?;
        let row = sqlx::query("SELECT federe FROM compte WHERE login = ?")
            .bind(login)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if let Some(row) = row
            && row.get::<i64, _>(0) == 0
        {
            return Err(AccountError::Invalid(format!(
                "le compte local « {login} » ne peut pas être utilisé par la fédération d'identité"
            )));
        }
        sqlx::query(
            "INSERT INTO compte (login, profil, territoire, mot_de_passe, federe, cree_le) VALUES (?, ?, ?, NULL, 1, ?)
             ON CONFLICT (login) DO UPDATE SET profil = excluded.profil, territoire = excluded.territoire",
        )
        .bind(login)
        .bind(profile.code())
        .bind(scope.to_string())
        .bind(now_text())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Enables or disables an account (a disabled account's tokens and sessions stop
    /// working at once).
    pub async fn set_active(&self, login: &str, active: bool) -> Result<(), AccountError> {
        let done = sqlx::query("UPDATE compte SET actif = ? WHERE login = ?")
            .bind(active as i64)
            .bind(login)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(AccountError::UnknownAccount(login.to_owned()));
        }
        if !active {
            sqlx::query("DELETE FROM session WHERE login = ?")
                .bind(login)
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Every account, by login.
    pub async fn list(&self) -> Result<Vec<Account>, AccountError> {
        let rows = sqlx::query(
            "SELECT login, profil, territoire, actif, federe, cree_le FROM compte ORDER BY login",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|r| {
                Ok(Account {
                    login: r.get(0),
                    profil: Profile::parse(&r.get::<String, _>(1))
                        .map_err(|e| AccountError::Invalid(e.0))?,
                    territoire: r.get(2),
                    actif: r.get::<i64, _>(3) != 0,
                    federe: r.get::<i64, _>(4) != 0,
                    cree_le: r.get(5),
                })
            })
            .collect()
    }

    /// The principal of an active account.
    pub async fn principal(&self, login: &str) -> Result<Option<Principal>, AccountError> {
        let row =
            sqlx::query("SELECT profil, territoire FROM compte WHERE login = ? AND actif = 1")
                .bind(login)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        Ok(row.and_then(|row| {
            principal_of(login, &row.get::<String, _>(0), &row.get::<String, _>(1))
        }))
    }

    /// Issues an API token for an account, valid for `valid_for`.
    pub async fn issue_token(
        &self,
        login: &str,
        label: &str,
        valid_for: chrono::Duration,
    ) -> Result<IssuedToken, AccountError> {
        if self.principal(login).await?.is_none() {
            return Err(AccountError::UnknownAccount(login.to_owned()));
        }
        if valid_for <= chrono::Duration::zero() || valid_for > chrono::Duration::days(366) {
            return Err(AccountError::Invalid(
                "durée de validité d'un jeton invalide : de 1 à 366 jours".into(),
            ));
        }
        let id = random_hex(8);
        let secret = random_hex(32);
        let expire_le = Utc::now() + valid_for;
        sqlx::query(
            "INSERT INTO jeton (id, login, empreinte, libelle, cree_le, expire_le) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(login)
        .bind(sha256_hex(&secret))
        .bind(label)
        .bind(now_text())
        .bind(expire_le.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(IssuedToken {
            token: format!("obs_{id}_{secret}"),
            id,
            expire_le,
        })
    }

    /// Revokes a token by its id; `false` when there is no such active token.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, AccountError> {
        let done =
            sqlx::query("UPDATE jeton SET revoque_le = ? WHERE id = ? AND revoque_le IS NULL")
                .bind(now_text())
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() > 0)
    }

    /// The tokens (of one account, or all), newest first.
    pub async fn tokens(&self, login: Option<&str>) -> Result<Vec<TokenInfo>, AccountError> {
        let rows = sqlx::query(
            "SELECT id, login, libelle, cree_le, expire_le, revoque_le FROM jeton
             WHERE ? IS NULL OR login = ? ORDER BY cree_le DESC, id",
        )
        .bind(login)
        .bind(login)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|r| TokenInfo {
                id: r.get(0),
                login: r.get(1),
                libelle: r.get(2),
                cree_le: r.get(3),
                expire_le: r.get(4),
                revoque_le: r.get(5),
            })
            .collect())
    }

    /// The principal a bearer token stands for, if the token is well formed, known, not
    /// revoked, not expired, and its account active.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<Principal>, AccountError> {
        let Some((id, secret)) = token
            .strip_prefix("obs_")
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let stamp = self.stamp();
        let cached = {
            let cache = self.tokens.lock().expect("token cache");
            let fresh = cache.since.is_some_and(|t| t.elapsed() < TOKEN_CACHE_AGE);
            (fresh && stamp.is_some() && cache.stamp == stamp)
                .then(|| cache.entries.get(id).cloned())
                .flatten()
        };
        if let Some((stored, expiry, principal)) = cached {
            let given = sha256_hex(secret);
            let ok = bool::from(stored.as_bytes().ct_eq(given.as_bytes())) && expiry > Utc::now();
            return Ok(ok.then_some(principal));
        }
        // The token and its account in one query: every API request by token runs it.
        let row = sqlx::query(
            "SELECT j.login, j.empreinte, j.expire_le, c.profil, c.territoire \
             FROM jeton j JOIN compte c ON c.login = j.login \
             WHERE j.id = ? AND j.revoque_le IS NULL AND c.actif = 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.get(1);
        let given = sha256_hex(secret);
        if !bool::from(stored.as_bytes().ct_eq(given.as_bytes())) {
            return Ok(None);
        }
        let expiry = match parse_time(&row.get::<String, _>(2)) {
            Some(expiry) if expiry > Utc::now() => expiry,
            _ => return Ok(None),
        };
        let principal = principal_of(
            &row.get::<String, _>(0),
            &row.get::<String, _>(3),
            &row.get::<String, _>(4),
        );
        if let (Some(p), Some(stamp)) = (&principal, stamp) {
            // Stamped before the read: a commit after it shows as a new stamp next time.
            let mut cache = self.tokens.lock().expect("token cache");
            let fresh = cache.since.is_some_and(|t| t.elapsed() < TOKEN_CACHE_AGE);
            if !fresh || cache.stamp != Some(stamp) || cache.entries.len() >= TOKEN_CACHE_ENTRIES {
                *cache = TokenCache {
                    stamp: Some(stamp),
                    since: Some(std::time::Instant::now()),
                    entries: HashMap::new(),
                };
            }
            cache
                .entries
                .insert(id.to_owned(), (stored, expiry, p.clone()));
        }
        Ok(principal)
    }

    /// The store's current stamp (`None` if its files cannot be read: no caching).
    fn stamp(&self) -> Option<StoreStamp> {
        let of = |path: String| {
            std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        let db = of(self.path.clone())?;
        Some(StoreStamp([Some(db), of(format!("{}-wal", self.path))]))
    }

    /// Checks a login and password, with throttling.
    pub async fn check_password(
        &self,
        login: &str,
        password: &str,
    ) -> Result<Result<Principal, LoginFailure>, AccountError> {
        if let Some(wait) = self.throttled(login) {
            return Ok(Err(LoginFailure::Throttled(wait)));
        }
        let row = sqlx::query("SELECT mot_de_passe FROM compte WHERE login = ? AND actif = 1")
            .bind(login)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let stored: Option<String> = row.and_then(|r| r.get(0));
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let given = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || verify_password(&given, &phc))
            .await
            .unwrap_or(false)
            && known;
        let principal = if ok {
            self.principal(login).await?
        } else {
            None
        };
        match principal {
            Some(p) => {
                self.failures.lock().expect("failures").remove(login);
                Ok(Ok(p))
            }
            None => {
                let mut failures = self.failures.lock().expect("failures");
                let f = failures.entry(login.to_owned()).or_insert(Failures {
                    count: 0,
                    last: Instant::now(),
                });
                f.count += 1;
                f.last = Instant::now();
                Ok(Err(LoginFailure::Refused))
            }
        }
    }

    fn throttled(&self, login: &str) -> Option<Duration> {
        let failures = self.failures.lock().expect("failures");
        let f = failures.get(login)?;
        if f.count < MAX_FAILURES {
            return None;
        }
        let wait = (Duration::from_secs(60) * (f.count - MAX_FAILURES + 1)).min(MAX_WAIT);
        let elapsed = f.last.elapsed();
        (elapsed < wait).then(|| wait - elapsed)
    }

    /// Opens a web session: returns the cookie value and the session's CSRF token.
    pub async fn open_session(
        &self,
        login: &str,
        valid_for: chrono::Duration,
    ) -> Result<(String, String), AccountError> {
        let value = random_hex(32);
        let csrf = random_hex(32);
        let now = Utc::now();
        // Expired sessions go at each sign-in.
        sqlx::query("DELETE FROM session WHERE expire_le < ?")
            .bind(now_text())
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        sqlx::query(
            "INSERT INTO session (empreinte, login, csrf, cree_le, expire_le) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(sha256_hex(&value))
        .bind(login)
        .bind(&csrf)
        .bind(now_text())
        .bind((now + valid_for).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok((value, csrf))
    }

    /// The principal and CSRF token of a live session.
    pub async fn session(&self, value: &str) -> Result<Option<(Principal, String)>, AccountError> {
        if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        // The session and its account in one query: every page and API read by a
        // browser runs it.
        let row = sqlx::query(
            "SELECT s.login, s.csrf, s.expire_le, c.profil, c.territoire \
             FROM session s JOIN compte c ON c.login = s.login \
             WHERE s.empreinte = ? AND c.actif = 1",
        )
        .bind(sha256_hex(value))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        match parse_time(&row.get::<String, _>(2)) {
            Some(expiry) if expiry > Utc::now() => {}
            _ => return Ok(None),
        }
        let csrf: String = row.get(1);
        Ok(principal_of(
            &row.get::<String, _>(0),
            &row.get::<String, _>(3),
            &row.get::<String, _>(4),
        )
        .map(|p| (p, csrf)))
    }

    /// Ends a web session.
    pub async fn close_session(&self, value: &str) -> Result<(), AccountError> {
        sqlx::query("DELETE FROM session WHERE empreinte = ?")
            .bind(sha256_hex(value))
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// Constant-time equality of two secrets given as text.
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A fresh random secret (hex), for CSRF tokens of the sign-in form.
pub fn new_secret() -> String {
    random_hex(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(&dir.path().join("comptes.db"))
            .await
            .unwrap();
        (dir, accounts)
    }

    /// The server keeps checked tokens in memory; `tokens revoke` and `users disable` run
    /// in another process, on their own connection to the store: the very next request
    /// must see them.
    #[tokio::test]
    async fn a_revocation_by_another_process_is_seen_by_the_next_request() {
        let (dir, server) = store().await;
        let scope = Scope::parse("D93").unwrap();
        server
            .add_user("siao93", Profile::AdministrateurSiao, &scope, None)
            .await
            .unwrap();
        let cli = Accounts::open(&dir.path().join("comptes.db"))
            .await
            .unwrap();
        for round in 0..20 {
            let t = server
                .issue_token("siao93", "script", chrono::Duration::days(1))
                .await
                .unwrap();
            for _ in 0..3 {
                assert!(server.authenticate_token(&t.token).await.unwrap().is_some());
            }
            if round % 2 == 0 {
                assert!(cli.revoke_token(&t.id).await.unwrap());
                assert!(
                    server.authenticate_token(&t.token).await.unwrap().is_none(),
                    "round {round}: revoked token still served"
                );
            } else {
                cli.set_active("siao93", false).await.unwrap();
                assert!(
                    server.authenticate_token(&t.token).await.unwrap().is_none(),
                    "round {round}: token of a disabled account still served"
                );
                cli.set_active("siao93", true).await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn tokens_authenticate_until_revoked_and_never_after_expiry() {
        let (_dir, a) = store().await;
        let scope = Scope::parse("D93").unwrap();
        a.add_user(
            "ddets93",
            Profile::AdministrateurDepartemental,
            &scope,
            None,
        )
        .await
        .unwrap();
        let t = a
            .issue_token("ddets93", "script", chrono::Duration::days(30))
            .await
            .unwrap();
        let p = a.authenticate_token(&t.token).await.unwrap().unwrap();
        assert_eq!((p.login.as_str(), &p.scope), ("ddets93", &scope));
        // A wrong secret with the right id, a malformed token.
        let forged = format!("{}0", &t.token[..t.token.len() - 1]);
        let forged = if forged == t.token {
            format!("{}1", &t.token[..t.token.len() - 1])
        } else {
            forged
        };
        assert!(a.authenticate_token(&forged).await.unwrap().is_none());
        assert!(a.authenticate_token("obs_xx").await.unwrap().is_none());
        // Disabled account, then revoked token.
        a.set_active("ddets93", false).await.unwrap();
        assert!(a.authenticate_token(&t.token).await.unwrap().is_none());
        a.set_active("ddets93", true).await.unwrap();
        assert!(a.revoke_token(&t.id).await.unwrap());
        assert!(a.authenticate_token(&t.token).await.unwrap().is_none());
        // Expired: the expiry is written in the past by hand.
        let t2 = a
            .issue_token("ddets93", "court", chrono::Duration::days(1))
            .await
            .unwrap();
        sqlx::query("UPDATE jeton SET expire_le = '2020-01-01T00:00:00Z' WHERE id = ?")
            .bind(&t2.id)
            .execute(&a.pool)
            .await
            .unwrap();
        assert!(a.authenticate_token(&t2.token).await.unwrap().is_none());
        // The secret is not stored.
        let stored: Vec<String> = sqlx::query_scalar("SELECT empreinte FROM jeton")
            .fetch_all(&a.pool)
            .await
            .unwrap();
        assert!(stored.iter().all(|s| !t.token.contains(s.as_str())));
    }

    #[tokio::test]
    async fn passwords_are_hashed_checked_and_failures_throttled() {
        let (_dir, a) = store().await;
        let scope = Scope::France;
        let err = a
            .add_user(
                "dihal",
                Profile::AdministrateurNational,
                &scope,
                Some("court"),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("trop court"), "{err}");
        a.add_user(
            "dihal",
            Profile::AdministrateurNational,
            &scope,
            Some("un mot de passe long"),
        )
        .await
        .unwrap();
        let phc: String = sqlx::query_scalar("SELECT mot_de_passe FROM compte")
            .fetch_one(&a.pool)
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(matches!(
            a.check_password("dihal", "un mot de passe long").await.unwrap(),
            Ok(p) if p.profile == Profile::AdministrateurNational
        ));
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                a.check_password("dihal", "mauvais mot de passe")
                    .await
                    .unwrap(),
                Err(LoginFailure::Refused)
            );
        }
        // Now even the right password waits.
        assert!(matches!(
            a.check_password("dihal", "un mot de passe long")
                .await
                .unwrap(),
            Err(LoginFailure::Throttled(_))
        ));
        assert_eq!(
            a.check_password("inconnu", "un mot de passe long")
                .await
                .unwrap(),
            Err(LoginFailure::Refused)
        );
        assert!(matches!(
            a.add_user("dihal", Profile::Analyste, &scope, None).await,
            Err(AccountError::Exists(_))
        ));
        assert!(
            a.add_user("drets", Profile::AdministrateurRegional, &scope, None)
                .await
                .is_err(),
            "a regional administrator needs a région"
        );
    }

    #[tokio::test]
    async fn sessions_carry_their_csrf_and_end() {
        let (_dir, a) = store().await;
        a.add_user(
            "siao93",
            Profile::AdministrateurSiao,
            &Scope::parse("D93").unwrap(),
            None,
        )
        .await
        .unwrap();
        let (value, csrf) = a
            .open_session("siao93", chrono::Duration::hours(8))
            .await
            .unwrap();
        let (p, c) = a.session(&value).await.unwrap().unwrap();
        assert_eq!((p.login.as_str(), c.as_str()), ("siao93", csrf.as_str()));
        a.close_session(&value).await.unwrap();
        assert!(a.session(&value).await.unwrap().is_none());
    }
}
