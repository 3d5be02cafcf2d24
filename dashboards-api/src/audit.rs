//! The audit log of reads: a local append-only journal, compacted into the Delta table
//! `lake/audit/reads`.
//!
//! - Every read hands its record to [`AuditLog::record`] and waits until the record is
//!   written to the journal file (one `write` per batch of records), not for the fsync:
//!   a dedicated thread syncs the file every [`SYNC_EVERY`] while records arrive.
//! - If the journal cannot be written (or synced), the read fails: fail closed. After a
//!   failed sync the journal refuses every record until the server restarts.
//! - [`AuditLog::compact`] closes the current journal file as a segment, appends the
//!   segments' records whose sequence number is above the table's highest to the Delta
//!   table, then deletes the segments — so a crash between the two appends nothing twice.
//!   The server compacts periodically, before serving `/api/v1/audit`, and at shutdown.
//!
//! Records hold who read what (login, profile, path, indicator or SQL text, territory,
//! period, rows returned, outcome), never a figure or a personal value of the lake.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use warehouse::Lake;

/// How often the journal is synced to disk while records arrive.
pub const SYNC_EVERY: Duration = Duration::from_millis(100);
const TABLE_ZONE: &str = "audit";
const TABLE_NAME: &str = "reads";
const CURRENT: &str = "journal.jsonl";

/// One read, as written to the journal and the audit table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Increasing number, assigned by the journal.
    #[serde(default)]
    pub seq: i64,
    pub horodatage: DateTime<Utc>,
    /// The account's login (`anonyme` when the caller was not authenticated).
    pub utilisateur: String,
    pub profil: Option<String>,
    pub methode: String,
    /// The path and query string (`/api/v1/indicateurs/x/valeurs?territoire=D93`).
    pub chemin: String,
    pub indicateur: Option<String>,
    pub requete_sql: Option<String>,
    pub territoire: Option<String>,
    pub periode: Option<String>,
    pub lignes: Option<i64>,
    /// `OK`, `REFUSE` (authorisation), `ERREUR` (bad request, failure), `CONNEXION`,
    /// `ECHEC_CONNEXION`, `DECONNEXION`.
    pub resultat: String,
    pub statut_http: i32,
    pub motif: Option<String>,
    pub duree_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("journal d'audit {path} : {reason}")]
    Journal { path: String, reason: String },
    #[error("table d'audit : {0}")]
    Table(String),
}

enum Message {
    Write(
        Box<AuditRecord>,
        tokio::sync::oneshot::Sender<Result<i64, String>>,
    ),
    /// Close the current file as a segment; replies with the segments to compact.
    Rotate(tokio::sync::oneshot::Sender<Result<Vec<PathBuf>, String>>),
}

/// The audit log: the journal's writer thread and the compaction into the lake.
pub struct AuditLog {
    sender: std::sync::Mutex<mpsc::Sender<Message>>,
    dir: PathBuf,
    lake: Arc<Lake>,
    /// One compaction at a time.
    compacting: tokio::sync::Mutex<()>,
    /// Records written since start (for `/metrics`).
    pub written: AtomicI64,
}

fn journal_err(path: &Path, reason: impl std::fmt::Display) -> AuditError {
    AuditError::Journal {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The segments of a journal folder (closed files `journal.<last seq>.jsonl`), in order.
fn segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<(i64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(n) = name
            .strip_prefix("journal.")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<i64>().ok())
        {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// The records of a journal file; a torn last line (a crash mid-write) is skipped.
fn read_records(path: &Path) -> std::io::Result<Vec<AuditRecord>> {
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<AuditRecord>(&line) {
            Ok(r) => out.push(r),
            Err(_) => {
                tracing::warn!(fichier = %path.display(), "ligne illisible du journal d'audit ignorée")
            }
        }
    }
    Ok(out)
}

impl AuditLog {
    /// Opens the journal in `dir` (created if missing) and starts its writer thread.
    /// `journal_file` replaces the current journal file's path (tests point it at a
    /// device that cannot be written).
    pub async fn open(
        lake: Arc<Lake>,
        dir: &Path,
        journal_file: Option<PathBuf>,
    ) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir).map_err(|e| journal_err(dir, e))?;
        // One writer per journal: sequence numbers are assigned by this process alone.
        let lock_path = dir.join("verrou");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| journal_err(&lock_path, e))?;
        lock.try_lock().map_err(|_| {
            journal_err(
                dir,
                "un autre serveur utilise déjà ce journal d'audit (un journal par serveur : voir audit_dir)",
            )
        })?;
        let current = journal_file.unwrap_or_else(|| dir.join(CURRENT));
        // The next number follows every record already written, compacted or not.
        let mut last = table_max_seq(&lake).await?;
        let mut files = segments(dir).map_err(|e| journal_err(dir, e))?;
        files.push(current.clone());
        for f in &files {
            if f.is_file() {
                for r in read_records(f).map_err(|e| journal_err(f, e))? {
                    last = last.max(r.seq);
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)
            .map_err(|e| journal_err(&current, e))?;
        let (tx, rx) = mpsc::channel();
        let syncer = Arc::new(Syncer {
            file: std::sync::Mutex::new(file.try_clone().map_err(|e| journal_err(&current, e))?),
            dirty: AtomicBool::new(false),
            broken: std::sync::Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let writer = Writer {
            _lock: lock,
            dir: dir.to_owned(),
            path: current,
            file,
            next: last + 1,
            syncer,
        };
        std::thread::Builder::new()
            .name("journal-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| journal_err(dir, e))?;
        Ok(Self {
            sender: std::sync::Mutex::new(tx),
            dir: dir.to_owned(),
            lake,
            compacting: tokio::sync::Mutex::new(()),
            written: AtomicI64::new(0),
        })
    }

    /// Writes a record to the journal; returns its sequence number once written.
    pub async fn record(&self, record: AuditRecord) -> Result<i64, AuditError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sender
            .lock()
            .expect("journal sender")
            .send(Message::Write(Box::new(record), tx))
            .map_err(|_| journal_err(&self.dir, "le processus d'écriture est arrêté"))?;
        let seq = rx
            .await
            .map_err(|_| journal_err(&self.dir, "le processus d'écriture est arrêté"))?
            .map_err(|e| journal_err(&self.dir, e))?;
        self.written.fetch_add(1, Ordering::Relaxed);
        Ok(seq)
    }

    /// Moves the journal's records into the audit Delta table; returns how many.
    pub async fn compact(&self) -> Result<usize, AuditError> {
        let _guard = self.compacting.lock().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sender
            .lock()
            .expect("journal sender")
            .send(Message::Rotate(tx))
            .map_err(|_| journal_err(&self.dir, "le processus d'écriture est arrêté"))?;
        let files = rx
            .await
            .map_err(|_| journal_err(&self.dir, "le processus d'écriture est arrêté"))?
            .map_err(|e| journal_err(&self.dir, e))?;
        if files.is_empty() {
            return Ok(0);
        }
        let floor = table_max_seq(&self.lake).await?;
        let mut records = Vec::new();
        for f in &files {
            records.extend(
                read_records(f)
                    .map_err(|e| journal_err(f, e))?
                    .into_iter()
                    .filter(|r| r.seq > floor),
            );
        }
        records.sort_by_key(|r| r.seq);
        records.dedup_by_key(|r| r.seq);
        let n = records.len();
        if n > 0 {
            self.lake
                .append(TABLE_ZONE, TABLE_NAME, batch(&records))
                .await
                .map_err(|e| AuditError::Table(e.to_string()))?;
        }
        for f in &files {
            std::fs::remove_file(f).map_err(|e| journal_err(f, e))?;
        }
        Ok(n)
    }
}

/// The highest sequence number in the audit table (0 when empty or absent).
async fn table_max_seq(lake: &Lake) -> Result<i64, AuditError> {
    use arrow::array::AsArray;
    use datafusion::functions_aggregate::expr_fn::max;
    use datafusion::logical_expr::col;
    let Some(table) = lake
        .open(TABLE_ZONE, TABLE_NAME, None)
        .await
        .map_err(|e| AuditError::Table(e.to_string()))?
    else {
        return Ok(0);
    };
    let ctx = warehouse::new_session();
    lake.register(&ctx, "audit", &table)
        .await
        .map_err(|e| AuditError::Table(e.to_string()))?;
    let batches = ctx
        .table("audit")
        .await
        .and_then(|t| t.aggregate(vec![], vec![max(col("seq")).alias("m")]))
        .map_err(|e| AuditError::Table(e.to_string()))?
        .collect()
        .await
        .map_err(|e| AuditError::Table(e.to_string()))?;
    Ok(batches
        .first()
        .map(|b| b.column(0).as_primitive::<arrow::datatypes::Int64Type>())
        .filter(|a| !a.is_empty() && !a.is_null(0))
        .map_or(0, |a| a.value(0)))
}

/// The audit table's schema.
pub fn schema() -> Arc<Schema> {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new(
            "horodatage",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        text("utilisateur", false),
        text("profil", true),
        text("methode", false),
        text("chemin", false),
        text("indicateur", true),
        text("requete_sql", true),
        text("territoire", true),
        text("periode", true),
        Field::new("lignes", DataType::Int64, true),
        text("resultat", false),
        Field::new("statut_http", DataType::Int32, false),
        text("motif", true),
        Field::new("duree_ms", DataType::Float64, false),
    ]))
}

fn batch(records: &[AuditRecord]) -> RecordBatch {
    let text = |f: &dyn Fn(&AuditRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(records.iter().map(|r| r.seq).collect::<Int64Array>()),
        Arc::new(
            TimestampMicrosecondArray::from(
                records
                    .iter()
                    .map(|r| r.horodatage.timestamp_micros())
                    .collect::<Vec<i64>>(),
            )
            .with_timezone("UTC"),
        ),
        text(&|r| Some(r.utilisateur.as_str())),
        text(&|r| r.profil.as_deref()),
        text(&|r| Some(r.methode.as_str())),
        text(&|r| Some(r.chemin.as_str())),
        text(&|r| r.indicateur.as_deref()),
        text(&|r| r.requete_sql.as_deref()),
        text(&|r| r.territoire.as_deref()),
        text(&|r| r.periode.as_deref()),
        Arc::new(records.iter().map(|r| r.lignes).collect::<Int64Array>()),
        text(&|r| Some(r.resultat.as_str())),
        Arc::new(
            records
                .iter()
                .map(|r| r.statut_http)
                .collect::<Int32Array>(),
        ),
        text(&|r| r.motif.as_deref()),
        Arc::new(records.iter().map(|r| r.duree_ms).collect::<Float64Array>()),
    ];
    RecordBatch::try_new(schema(), columns).expect("audit batch matches its schema")
}

/// What the writer and the syncing thread share: the journal file to sync, whether
/// records were written since the last sync, and the failure that closes the journal.
struct Syncer {
    file: std::sync::Mutex<std::fs::File>,
    dirty: AtomicBool,
    /// Set after a failed sync: every later record is refused.
    broken: std::sync::Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Syncer {
    /// Syncs the journal file if records were written since the last sync.
    fn sync(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let file = self.file.lock().expect("journal file");
        if let Err(e) = file.sync_data() {
            tracing::error!(erreur = %e, "synchronisation du journal d'audit impossible : les lectures sont refusées");
            *self.broken.lock().expect("journal state") =
                Some(format!("synchronisation impossible : {e}"));
        }
    }

    fn broken(&self) -> Option<String> {
        self.broken.lock().expect("journal state").clone()
    }

    /// The syncing thread: every [`SYNC_EVERY`], until the writer stops.
    fn run(&self) {
        while !self.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(SYNC_EVERY);
            self.sync();
        }
        self.sync();
    }
}

struct Writer {
    /// Held while the writer runs.
    _lock: std::fs::File,
    dir: PathBuf,
    path: PathBuf,
    file: std::fs::File,
    next: i64,
    /// The file's syncing, on a thread of its own: a read waits for its record's write,
    /// never for an fsync in progress.
    syncer: Arc<Syncer>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        let syncer = self.syncer.clone();
        let syncing = std::thread::Builder::new()
            .name("journal-audit-sync".into())
            .spawn(move || syncer.run());
        if let Err(e) = &syncing {
            *self.syncer.broken.lock().expect("journal state") =
                Some(format!("fil de synchronisation impossible : {e}"));
        }
        while let Ok(first) = rx.recv() {
            // Everything already waiting goes in the same write.
            let mut batch = vec![first];
            while let Ok(m) = rx.try_recv() {
                batch.push(m);
            }
            self.handle(batch);
        }
        self.syncer.stop.store(true, Ordering::Release);
        if let Ok(handle) = syncing {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }

    fn handle(&mut self, batch: Vec<Message>) {
        let mut text = String::new();
        let mut waiting = Vec::new();
        let mut seq = self.next;
        for m in batch {
            match m {
                Message::Write(mut record, reply) => {
                    if let Some(reason) = self.syncer.broken() {
                        let _ = reply.send(Err(reason));
                        continue;
                    }
                    record.seq = seq;
                    match serde_json::to_string(&record) {
                        Ok(line) => {
                            text.push_str(&line);
                            text.push('\n');
                            waiting.push((seq, reply));
                            seq += 1;
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
                Message::Rotate(reply) => {
                    // Records before the rotation go into the segment it closes.
                    self.write(&mut text, &mut waiting, seq);
                    let _ = reply.send(self.rotate());
                }
            }
        }
        self.write(&mut text, &mut waiting, seq);
    }

    fn write(
        &mut self,
        text: &mut String,
        waiting: &mut Vec<(i64, tokio::sync::oneshot::Sender<Result<i64, String>>)>,
        next: i64,
    ) {
        if waiting.is_empty() {
            return;
        }
        let outcome = self.file.write_all(text.as_bytes());
        text.clear();
        match outcome {
            Ok(()) => {
                self.next = next;
                self.syncer.dirty.store(true, Ordering::Release);
                for (seq, reply) in waiting.drain(..) {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(e) => {
                tracing::error!(erreur = %e, "écriture du journal d'audit impossible : lecture refusée");
                for (_, reply) in waiting.drain(..) {
                    let _ = reply.send(Err(format!("écriture impossible : {e}")));
                }
            }
        }
    }

    fn rotate(&mut self) -> Result<Vec<PathBuf>, String> {
        // The segment it closes is synced before it is renamed (rare: here, in line).
        self.syncer.sync();
        if let Some(reason) = self.syncer.broken() {
            return Err(reason);
        }
        let has_records = std::fs::metadata(&self.path)
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        if has_records {
            let segment = self
                .dir
                .join(format!("journal.{:020}.jsonl", self.next - 1));
            std::fs::rename(&self.path, &segment).map_err(|e| e.to_string())?;
            self.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| e.to_string())?;
            *self.syncer.file.lock().expect("journal file") =
                self.file.try_clone().map_err(|e| e.to_string())?;
        }
        segments(&self.dir).map_err(|e| e.to_string())
    }
}
