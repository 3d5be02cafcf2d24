//! The run state: what an incremental run must know of the source as the previous run
//! saw it, and that the lake cannot tell because it holds pseudonyms only.
//!
//! Per source table, row by row in id order: the id, the references an incremental run
//! follows (household, person, request, dispositif…), the row's place in the
//! data-quality report (SIAO, month) and the facts counted on it (rules, measures);
//! per person, its linkage key and SIAO; the day numbers the rules compare across rows
//! (a request's Paris date, a stay's entry and exit), so that a run rewrites the requests
//! of one night and the stays that overlap, not whole households. No name, no birth
//! date, no code, no free text.
//!
//! It holds source ids, so it is kept with the master key in `secrets/etat/NNNNNN/`
//! (mode 0700), never in the lake: `NNNNNN` is the run it describes, written before that
//! run's manifest, so a state is used only with the manifest it belongs to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, DictionaryArray, FixedSizeBinaryArray, Int64Array,
    RecordBatch, StringArray, UInt32Array,
};
use arrow::buffer::{Buffer, ScalarBuffer};
use arrow::datatypes::{
    DataType, Date32Type, Field, Int64Type, Schema, TimestampMicrosecondType, UInt32Type,
};

use ingest::quality::Place;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use crate::{Error, Result};

/// The references kept per table (columns of the source table).
pub const REFS: &[(&str, &[&str])] = &[
    ("entite", &[]),
    ("dispositif", &[]),
    ("groupe_places", &[]),
    ("menage", &[]),
    ("personne", &[]),
    ("menage_personne", &["menage_id", "personne_id"]),
    ("evaluation", &["menage_id"]),
    ("demande", &["menage_id", "jour_demande"]),
    ("demande_personne", &["demande_id", "personne_id"]),
    (
        "orientation",
        &["demande_id", "dispositif_id", "groupe_places_id"],
    ),
    ("liste_attente", &["demande_id", "dispositif_id"]),
    (
        "prise_en_charge",
        &[
            "menage_id",
            "demande_id",
            "orientation_id",
            "dispositif_id",
            "groupe_places_id",
            "jour_entree",
            "jour_sortie",
        ],
    ),
];

/// Columns of [`REFS`] that are day numbers derived from a date of the row (days since
/// 1970-01-01): a request's Paris date (DOUBLON_115's night), a stay's entry and exit
/// (SEJOURS_CHEVAUCHANTS' intervals).
const DAYS: &[(&str, &str)] = &[
    ("jour_demande", "date_demande"),
    ("jour_entree", "date_entree"),
    ("jour_sortie", "date_sortie"),
];

/// The reference columns kept for a table.
pub fn refs_of(table: &str) -> &'static [&'static str] {
    REFS.iter()
        .find(|(t, _)| *t == table)
        .map_or(&[], |(_, r)| r)
}

/// One table's state, rows sorted by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableState {
    /// Kept as the Arrow buffers they are read from and written to (the source's id
    /// column on a full read, the state file's on an incremental one): 15 million ids
    /// and 25 million references are neither copied in nor copied out.
    pub ids: ScalarBuffer<i64>,
    /// One column per name of [`refs_of`].
    pub refs: Vec<Int64Array>,
    /// Shared values: a few thousand distinct places for millions of rows.
    pub places: Vec<ingest::quality::Place>,
    pub facts: ingest::quality::Facts,
    /// Persons only: the linkage key (none when too weak) and the SIAO it counts in.
    pub link_key: Vec<Option<[u8; 32]>>,
    pub link_siao: Vec<String>,
}

impl TableState {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The row of an id.
    pub fn find(&self, id: i64) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// The value of reference column `column` on row `row`.
    pub fn reference(&self, table: &str, column: &str, row: usize) -> Option<i64> {
        let k = refs_of(table).iter().position(|c| *c == column)?;
        let values = &self.refs[k];
        values.is_valid(row).then(|| values.value(row))
    }

    /// The column of a reference.
    pub fn column(&self, table: &str, column: &str) -> &Int64Array {
        let k = refs_of(table)
            .iter()
            .position(|c| *c == column)
            .expect("a kept reference");
        &self.refs[k]
    }
}

/// The state of every table after one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub run: u64,
    pub tables: BTreeMap<&'static str, TableState>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn arrow_error(e: arrow::error::ArrowError) -> Error {
    Error::State(e.to_string())
}

/// Where the states live.
pub fn states_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets").join("etat")
}

fn state_dir(data_dir: &Path, run: u64) -> PathBuf {
    states_dir(data_dir).join(format!("{run:06}"))
}

impl State {
    fn batch(&self, table: &str, t: &TableState) -> Result<RecordBatch> {
        let mut fields = vec![Field::new("id", DataType::Int64, false)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::new(t.ids.clone(), None))];
        for (k, name) in refs_of(table).iter().enumerate() {
            fields.push(Field::new(*name, DataType::Int64, true));
            columns.push(Arc::new(t.refs[k].clone()));
        }
        // The places as one number per row into the table's distinct places (a few
        // thousand), the SIAO and month dictionaries sharing those numbers.
        let (keys, distinct) = place_numbers(&t.places);
        let dictionary = DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8));
        for (name, text) in [
            ("siao", Place::siao as fn(&Place) -> &str),
            ("mois", Place::mois),
        ] {
            let values = StringArray::from_iter_values(distinct.iter().map(text));
            fields.push(Field::new(name, dictionary.clone(), false));
            columns.push(Arc::new(
                DictionaryArray::<UInt32Type>::try_new(keys.clone(), Arc::new(values))
                    .map_err(arrow_error)?,
            ));
        }
        fields.push(Field::new("faits", DataType::Binary, false));
        columns.push(Arc::new(BinaryArray::from_iter_values(t.facts.iter())));
        if table == "personne" {
            fields.push(Field::new(
                "cle_liaison",
                DataType::FixedSizeBinary(32),
                true,
            ));
            // One buffer of 32 bytes a person (zeros where there is no key).
            let mut bytes: Vec<u8> = Vec::with_capacity(32 * t.link_key.len());
            let mut nulls = arrow::array::NullBufferBuilder::new(t.link_key.len());
            for key in &t.link_key {
                bytes.extend_from_slice(key.as_ref().unwrap_or(&[0; 32]));
                nulls.append(key.is_some());
            }
            columns.push(Arc::new(
                FixedSizeBinaryArray::try_new(32, bytes.into(), nulls.finish())
                    .map_err(arrow_error)?,
            ));
            fields.push(Field::new("siao_liaison", DataType::Utf8, false));
            columns.push(Arc::new(StringArray::from_iter_values(&t.link_siao)));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow_error)
    }

    /// Writes the state of run `self.run` (files first, then the folder renamed into
    /// place, so that a half-written state is never taken for a whole one).
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let root = states_dir(data_dir);
        let tmp = root.join(format!("{:06}.partiel", self.run));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
                .map_err(io(&root))?;
        }
        // One file per table, written and synced on every core (a national state is
        // 15 million rows; the files are independent until the folder is renamed).
        let write_one = |table: &str, t: &TableState| -> Result<()> {
            let batch = self.batch(table, t)?;
            let path = tmp.join(format!("{table}.arrow"));
            let file = std::fs::File::create(&path).map_err(io(&path))?;
            let mut writer = arrow::ipc::writer::FileWriter::try_new(file, &batch.schema())
                .map_err(arrow_error)?;
            writer.write(&batch).map_err(arrow_error)?;
            writer.finish().map_err(arrow_error)?;
            writer
                .into_inner()
                .map_err(arrow_error)?
                .sync_all()
                .map_err(io(&path))
        };
        // Largest tables first, each taken by the next free thread.
        let tables: Vec<(&&'static str, &TableState)> = self.tables.iter().collect();
        let results = crate::on_each(&tables, |(_, t)| t.len(), |(table, t)| write_one(table, t));
        results.into_iter().collect::<Result<Vec<()>>>()?;
        let done = state_dir(data_dir, self.run);
        if done.exists() {
            std::fs::remove_dir_all(&done).map_err(io(&done))?;
        }
        std::fs::rename(&tmp, &done).map_err(io(&done))?;
        Ok(())
    }

    /// The state written by run `run`, if it is there.
    pub fn read(data_dir: &Path, run: u64) -> Result<Option<State>> {
        let dir = state_dir(data_dir, run);
        if !dir.exists() {
            return Ok(None);
        }
        let mut state = State {
            run,
            tables: BTreeMap::new(),
        };
        // One table after the other on each core, largest first (their places are
        // shared within a table; equal places of two tables are equal by their texts).
        let read_one = |name: &str| -> Result<Option<TableState>> {
            let path = dir.join(format!("{name}.arrow"));
            if !path.exists() {
                return Ok(None);
            }
            let batch = read_mapped(&path)?;
            // A state written by an earlier version, without a column this one keeps:
            // as if there were none (the run reads everything again and writes a new one).
            if let Some(c) = refs_of(name)
                .iter()
                .find(|c| batch.column_by_name(c).is_none())
            {
                tracing::info!(
                    table = name,
                    colonne = c,
                    "état d'une version antérieure : relecture complète"
                );
                return Ok(None);
            }
            let mut places = ingest::quality::Places::default();
            table_of(name, &batch, &mut places).map(Some)
        };
        let size = |name: &&str| {
            std::fs::metadata(dir.join(format!("{name}.arrow"))).map_or(0, |m| m.len() as usize)
        };
        let tables = crate::on_each(ingest::TABLES_READ, size, |name| read_one(name));
        for (name, t) in ingest::TABLES_READ.iter().zip(tables) {
            match t? {
                Some(t) => state.tables.insert(name, t),
                None => return Ok(None),
            };
        }
        Ok(Some(state))
    }

    /// Removes the states of runs before `run`, and any half-written one.
    pub fn prune(data_dir: &Path, run: u64) -> Result<()> {
        let root = states_dir(data_dir);
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = name.parse::<u64>().is_ok_and(|n| n < run) || name.ends_with(".partiel");
            if old {
                std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        Ok(())
    }
}

/// The batch of a state file, its columns backed by the file's pages mapped in memory:
/// the page cache holds them already (the previous run wrote them), where reading them
/// copied 600 MB (a national state) into fresh memory, which the kernel must zero first.
fn read_mapped(path: &Path) -> Result<RecordBatch> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    // SAFETY: a state file is written once, in a folder renamed into place when whole,
    // and never changed afterwards: a later run writes a new folder and removes this one
    // (removing a mapped file keeps its pages until they are unmapped), under the ingest
    // lock, which keeps two runs from writing, reading or pruning states at once.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io(path))?;
    if map.is_empty() {
        return decode_file(&Buffer::from_vec(Vec::<u8>::new()), path);
    }
    let (ptr, len) = (map.as_ptr(), map.len());
    let ptr = std::ptr::NonNull::new(ptr.cast_mut()).expect("a mapping is never at address 0");
    // SAFETY: `ptr` points to `len` readable bytes for as long as the mapping lives, and
    // the buffer holds the mapping (its `Arc`) until its last slice is dropped.
    let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(map)) };
    decode_file(&buffer, path)
}

/// Decodes an Arrow IPC file held whole in `buffer` (one batch, or their concatenation),
/// the columns slices of it. A truncated or damaged file is an error naming it.
fn decode_file(buffer: &Buffer, path: &Path) -> Result<RecordBatch> {
    use arrow::ipc::reader::{FileDecoder, read_footer_length};
    let damaged = |what: &str| Error::State(format!("{} : {what}", path.display()));
    let len = buffer.len();
    let trailer = <[u8; 10]>::try_from(&buffer[len.saturating_sub(10)..])
        .map_err(|_| damaged("fichier tronqué"))?;
    let footer_len = read_footer_length(trailer).map_err(|e| damaged(&e.to_string()))?;
    let footer_start = (len - 10)
        .checked_sub(footer_len)
        .ok_or_else(|| damaged("pied de fichier hors du fichier"))?;
    let footer = arrow::ipc::root_as_footer(&buffer[footer_start..len - 10])
        .map_err(|e| damaged(&e.to_string()))?;
    let schema = Arc::new(arrow::ipc::convert::fb_to_schema(
        footer.schema().ok_or_else(|| damaged("schéma absent"))?,
    ));
    let block_data = |block: &arrow::ipc::Block| -> Result<Buffer> {
        let start = usize::try_from(block.offset()).ok();
        let size = usize::try_from(block.metaDataLength())
            .ok()
            .zip(usize::try_from(block.bodyLength()).ok())
            .and_then(|(m, b)| m.checked_add(b));
        match (start, size) {
            (Some(start), Some(size)) if start.checked_add(size).is_some_and(|e| e <= len) => {
                Ok(buffer.slice_with_length(start, size))
            }
            _ => Err(damaged("bloc hors du fichier")),
        }
    };
    let mut decoder = FileDecoder::new(schema.clone(), footer.version());
    for block in footer.dictionaries().iter().flatten() {
        decoder
            .read_dictionary(block, &block_data(block)?)
            .map_err(|e| damaged(&e.to_string()))?;
    }
    let mut batches = Vec::new();
    for block in footer.recordBatches().iter().flatten() {
        if let Some(batch) = decoder
            .read_record_batch(block, &block_data(block)?)
            .map_err(|e| damaged(&e.to_string()))?
        {
            batches.push(batch);
        }
    }
    // A state is written as one batch; its columns are taken as they are read.
    match batches.as_slice() {
        [one] => Ok(one.clone()),
        _ => arrow::compute::concat_batches(&schema, &batches).map_err(|e| damaged(&e.to_string())),
    }
}

/// One table's state from the batch of its file.
fn table_of(
    name: &str,
    batch: &RecordBatch,
    places: &mut ingest::quality::Places,
) -> Result<TableState> {
    let unreadable = |c: &str| Error::State(format!("{name}.{c} illisible"));
    let ints = |c: &str| -> Result<Int64Array> {
        batch
            .column_by_name(c)
            .and_then(|a| a.as_primitive_opt::<Int64Type>())
            .cloned()
            .ok_or_else(|| unreadable(c))
    };
    let texts = |c: &str| -> Result<StringArray> {
        batch
            .column_by_name(c)
            .and_then(|a| a.as_string_opt::<i32>())
            .cloned()
            .ok_or_else(|| unreadable(c))
    };
    let mut t = TableState {
        ids: ints("id")?.values().clone(),
        ..Default::default()
    };
    for c in refs_of(name) {
        t.refs.push(ints(c)?);
    }
    let column = |c: &str| batch.column_by_name(c).ok_or_else(|| unreadable(c));
    let (siao, mois) = (column("siao")?, column("mois")?);
    t.places = match (
        siao.as_dictionary_opt::<UInt32Type>(),
        mois.as_dictionary_opt::<UInt32Type>(),
    ) {
        // Numbers into the distinct places (a state of this version).
        (Some(s), Some(m)) => {
            let (sv, mv) = (
                s.values()
                    .as_string_opt::<i32>()
                    .ok_or_else(|| unreadable("siao"))?,
                m.values()
                    .as_string_opt::<i32>()
                    .ok_or_else(|| unreadable("mois"))?,
            );
            let text = |v: &StringArray, k: u32| -> Result<String> {
                let k = k as usize;
                if k >= v.len() {
                    return Err(unreadable("lieu"));
                }
                Ok(v.value(k).to_owned())
            };
            // As written: one number per row for both (the distinct places' own).
            if s.keys().values() == m.keys().values() && sv.len() == mv.len() {
                let distinct: Vec<Place> = (0..sv.len())
                    .map(|k| places.get(sv.value(k), mv.value(k)))
                    .collect();
                if let Some(k) = s
                    .keys()
                    .values()
                    .iter()
                    .find(|k| **k as usize >= distinct.len())
                {
                    return Err(unreadable(&format!("lieu {k}")));
                }
                s.keys()
                    .values()
                    .iter()
                    .map(|k| distinct[*k as usize].clone())
                    .collect()
            } else {
                let mut shared: HashMap<(u32, u32), Place> = HashMap::default();
                let mut out = Vec::with_capacity(batch.num_rows());
                for (ks, km) in s.keys().values().iter().zip(m.keys().values().iter()) {
                    let place = match shared.get(&(*ks, *km)) {
                        Some(p) => p.clone(),
                        None => {
                            let p = places.get(&text(sv, *ks)?, &text(mv, *km)?);
                            shared.insert((*ks, *km), p.clone());
                            p
                        }
                    };
                    out.push(place);
                }
                out
            }
        }
        // Texts on every row (states written before the places were numbered).
        _ => texts("siao")?
            .iter()
            .zip(texts("mois")?.iter())
            .map(|(s, m)| places.get(s.unwrap_or(""), m.unwrap_or("")))
            .collect(),
    };
    let facts = batch
        .column_by_name("faits")
        .and_then(|a| a.as_binary_opt::<i32>())
        .ok_or_else(|| unreadable("faits"))?;
    t.facts = ingest::quality::Facts::with_capacity(facts.len());
    for v in facts.iter() {
        t.facts.push(v.unwrap_or_default());
    }
    if name == "personne" {
        let keys = batch
            .column_by_name("cle_liaison")
            .and_then(|a| a.as_fixed_size_binary_opt())
            .ok_or_else(|| unreadable("cle_liaison"))?;
        t.link_key = (0..keys.len())
            .map(|i| {
                keys.is_valid(i)
                    .then(|| keys.value(i).try_into().expect("32 bytes"))
            })
            .collect();
        t.link_siao = texts("siao_liaison")?
            .iter()
            .map(|v| v.unwrap_or("").to_owned())
            .collect();
    }
    Ok(t)
}

/// Each row's number among the distinct places of `places` (in order of first
/// appearance), and those places. Clones of one shared place are found by address;
/// equal texts held apart are merged by text (a state read back shares them again).
fn place_numbers(places: &[Place]) -> (UInt32Array, Vec<Place>) {
    let mut by_address: HashMap<usize, u32> = HashMap::default();
    let mut by_text: HashMap<(&str, &str), u32> = HashMap::default();
    let mut distinct: Vec<Place> = Vec::new();
    let keys: Vec<u32> = places
        .iter()
        .map(|p| {
            *by_address.entry(p.shared_key()).or_insert_with(|| {
                *by_text.entry((p.siao(), p.mois())).or_insert_with(|| {
                    distinct.push(p.clone());
                    (distinct.len() - 1) as u32
                })
            })
        })
        .collect();
    (UInt32Array::from(keys), distinct)
}

/// The ids and references of a table as read (before the quality rules), rows in the
/// batch's order; places and facts are filled from the quality report afterwards.
pub fn ids_and_refs(table: &str, batch: &RecordBatch) -> Result<TableState> {
    let mut t = ids_only(table, batch)?;
    let n = t.ids.len();
    t.places = vec![ingest::quality::Place::new("", ""); n];
    t.facts = ingest::quality::Facts::with_rows(n);
    Ok(t)
}

/// The ids, references and (for persons) empty linkage columns of a table as read;
/// no places or facts yet ([`take_facts`] moves them in).
pub fn ids_only(table: &str, batch: &RecordBatch) -> Result<TableState> {
    let ints = |c: &str| -> Result<Int64Array> {
        batch
            .column_by_name(c)
            .and_then(|a| a.as_primitive_opt::<Int64Type>())
            .cloned()
            .ok_or_else(|| Error::State(format!("colonne {table}.{c} absente de la lecture")))
    };
    let ids = ints("id")?;
    if ids.null_count() > 0 {
        return Err(Error::State(format!("identifiant nul dans {table}")));
    }
    // The read's own columns, shared: the rules' filtered copies replace the rows
    // read, these buffers stay with the state.
    let mut t = TableState {
        ids: ids.values().clone(),
        ..Default::default()
    };
    for c in refs_of(table) {
        t.refs.push(match DAYS.iter().find(|(name, _)| name == c) {
            Some((_, date)) => days(table, batch, date)?,
            None => ints(c)?,
        });
    }
    let n = t.ids.len();
    if table == "personne" {
        t.link_key = vec![None; n];
        t.link_siao = vec![String::new(); n];
    }
    Ok(t)
}

/// The day numbers of a date column (a timestamp: its Paris date).
fn days(table: &str, batch: &RecordBatch, column: &str) -> Result<Int64Array> {
    let missing = || Error::State(format!("colonne {table}.{column} absente de la lecture"));
    let values = batch.column_by_name(column).ok_or_else(missing)?;
    if let Some(dates) = values.as_primitive_opt::<Date32Type>() {
        return Ok(dates.iter().map(|d| d.map(i64::from)).collect());
    }
    let instants = values
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(missing)?;
    let mut nights = ingest::quality::ParisNights::default();
    Ok(instants
        .iter()
        .map(|t| nights.of(t?).map(i64::from))
        .collect())
}

/// Moves a table's places and facts from the quality report into its state (rows in
/// the same order: the report of a full read, made on the batch the state was read
/// from). A table the report does not know keeps empty places and no facts.
pub fn take_facts(t: &mut TableState, facts: Option<ingest::quality::RowFacts>) -> Result<()> {
    let n = t.len();
    match facts {
        Some(f) if f.places.len() == n && f.facts.len() == n => {
            t.places = f.places;
            t.facts = f.facts;
        }
        Some(f) => {
            return Err(Error::State(format!(
                "rapport de qualité de {} lignes pour un état de {n} lignes",
                f.places.len()
            )));
        }
        None => {
            t.places = vec![ingest::quality::Place::new("", ""); n];
            t.facts = ingest::quality::Facts::with_rows(n);
        }
    }
    Ok(())
}

/// Fills the persons' linkage keys and SIAO.
pub fn fill_links(t: &mut TableState, links: &anonymize::linkage::Links) {
    for i in 0..t.len() {
        if let Some(l) = links.get(&t.ids[i]) {
            t.link_key[i] = l.key;
            t.link_siao[i] = l.siao.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        std::env::temp_dir().join(format!("obs-state-{name}-{}-{nanos}", std::process::id()))
    }

    /// A state whose places are shared values, as a run makes them, plus one place
    /// made apart with the same texts as another (it must come back as that place).
    fn sample() -> State {
        let mut places = ingest::quality::Places::default();
        let (a, b) = (places.get("075", "2025-03"), places.get("093", "INCONNU"));
        let mut tables = BTreeMap::new();
        for name in ingest::TABLES_READ {
            tables.insert(
                *name,
                TableState {
                    refs: vec![Int64Array::from(Vec::<Option<i64>>::new()); refs_of(name).len()],
                    ..Default::default()
                },
            );
        }
        let mut facts = ingest::quality::Facts::with_capacity(3);
        for codes in [&[][..], &[3, 9], &[1, 2, 3, 4, 5, 6, 7, 8]] {
            facts.push(codes);
        }
        tables.insert(
            "demande",
            TableState {
                ids: vec![4, 7, 12].into(),
                refs: vec![
                    Int64Array::from(vec![Some(40), None, Some(40)]),
                    Int64Array::from(vec![Some(20_148), Some(20_149), None]),
                ],
                places: vec![a.clone(), b, Place::new("075", "2025-03")],
                facts,
                ..Default::default()
            },
        );
        let mut facts = ingest::quality::Facts::with_capacity(2);
        facts.push(&[]);
        facts.push(&[]);
        tables.insert(
            "personne",
            TableState {
                ids: vec![1, 2].into(),
                places: vec![a.clone(), a],
                facts,
                link_key: vec![Some([7; 32]), None],
                link_siao: vec!["075".to_owned(), String::new()],
                ..Default::default()
            },
        );
        State { run: 3, tables }
    }

    #[test]
    fn a_state_reads_back_as_written_with_its_places_numbered() {
        let dir = scratch("aller-retour");
        let state = sample();
        state.write(&dir).unwrap();
        let back = State::read(&dir, 3).unwrap().expect("the state written");
        assert_eq!(back, state);
        // Three rows, two distinct places: the file numbers them.
        let path = state_dir(&dir, 3).join("demande.arrow");
        let file = std::fs::File::open(path).unwrap();
        let batch = arrow::ipc::reader::FileReader::try_new(file, None)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let siao = batch["siao"].as_dictionary::<UInt32Type>();
        assert_eq!(siao.keys().values().to_vec(), vec![0, 1, 0]);
        assert_eq!(siao.values().len(), 2);
        // The places read back are shared again: one value for equal texts.
        let d = &back.tables["demande"];
        assert_eq!(d.places[0].shared_key(), d.places[2].shared_key());
        assert_ne!(d.places[0].shared_key(), d.places[1].shared_key());
        assert_eq!(d.reference("demande", "menage_id", 1), None);
        assert_eq!(d.reference("demande", "menage_id", 2), Some(40));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_without_a_column_this_version_keeps_is_not_used() {
        let dir = scratch("ancien");
        let state = sample();
        state.write(&dir).unwrap();
        // The requests' file as an earlier version wrote it: without their nights.
        let path = state_dir(&dir, 3).join("demande.arrow");
        let batch = state.batch("demande", &state.tables["demande"]).unwrap();
        let index = batch.schema().index_of("jour_demande").unwrap();
        let mut older = batch.clone();
        older.remove_column(index);
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = arrow::ipc::writer::FileWriter::try_new(file, &older.schema()).unwrap();
        writer.write(&older).unwrap();
        writer.finish().unwrap();
        assert_eq!(State::read(&dir, 3).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_requests_night_is_its_paris_date_and_a_stays_days_its_dates() {
        use arrow::array::{Date32Array, TimestampMicrosecondArray};
        // 2025-03-01 22:30 and 23:30 UTC: Paris (UTC+1) is still on the 1st, then on the
        // 2nd; 2025-07-14 21:59 UTC is 23:59 in Paris (UTC+2). 2025-03-01 is day 20 148.
        let micros = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros()
        };
        let requests = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
            (
                "menage_id",
                Arc::new(Int64Array::from(vec![Some(9), Some(9), None, Some(9)])),
            ),
            (
                "date_demande",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(micros("2025-03-01T22:30:00Z")),
                        Some(micros("2025-03-01T23:30:00Z")),
                        Some(micros("2025-07-14T21:59:00Z")),
                        None,
                    ])
                    .with_timezone("UTC"),
                ),
            ),
        ])
        .unwrap();
        let t = ids_only("demande", &requests).unwrap();
        assert_eq!(
            t.column("demande", "jour_demande")
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(20_148), Some(20_149), Some(20_283), None]
        );
        let stays = RecordBatch::try_from_iter(
            std::iter::once(("id", Arc::new(Int64Array::from(vec![5])) as ArrayRef))
                .chain(
                    ["menage_id", "demande_id", "orientation_id", "dispositif_id"]
                        .into_iter()
                        .chain(["groupe_places_id"])
                        .map(|c| (c, Arc::new(Int64Array::from(vec![Some(1)])) as ArrayRef)),
                )
                .chain([
                    (
                        "date_entree",
                        Arc::new(Date32Array::from(vec![Some(20_148)])) as ArrayRef,
                    ),
                    (
                        "date_sortie",
                        Arc::new(Date32Array::from(vec![None::<i32>])),
                    ),
                ]),
        )
        .unwrap();
        let t = ids_only("prise_en_charge", &stays).unwrap();
        assert_eq!(
            t.reference("prise_en_charge", "jour_entree", 0),
            Some(20_148)
        );
        assert_eq!(t.reference("prise_en_charge", "jour_sortie", 0), None);
    }

    #[test]
    fn a_damaged_state_file_is_an_error_that_names_it() {
        let dir = scratch("abime");
        let state = sample();
        state.write(&dir).unwrap();
        let path = state_dir(&dir, 3).join("demande.arrow");
        let whole = std::fs::read(&path).unwrap();
        // Cut short, then emptied, then its footer pointing past the file.
        let mut past = whole.clone();
        let n = past.len();
        past[n - 10..n - 6].copy_from_slice(&(n as i32).to_le_bytes());
        for bytes in [&whole[..whole.len() / 2], &[][..], &past[..]] {
            std::fs::write(&path, bytes).unwrap();
            let e = State::read(&dir, 3).unwrap_err().to_string();
            assert!(e.contains("demande.arrow"), "{e}");
        }
        std::fs::write(&path, &whole).unwrap();
        assert_eq!(State::read(&dir, 3).unwrap().unwrap(), state);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_with_places_as_texts_on_every_row_is_still_read() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("menage_id", DataType::Int64, true),
            Field::new("siao", DataType::Utf8, false),
            Field::new("mois", DataType::Utf8, false),
            Field::new("faits", DataType::Binary, false),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![5, 6])),
                Arc::new(Int64Array::from(vec![None, Some(2)])),
                Arc::new(StringArray::from(vec!["075", "075"])),
                Arc::new(StringArray::from(vec!["2025-01", "2025-01"])),
                Arc::new(BinaryArray::from_iter_values([&[][..], &[4][..]])),
            ],
        )
        .unwrap();
        let t = table_of("evaluation", &batch, &mut Default::default()).unwrap();
        assert_eq!(t.ids.to_vec(), vec![5, 6]);
        assert_eq!(t.reference("evaluation", "menage_id", 1), Some(2));
        assert_eq!(t.places[1], Place::new("075", "2025-01"));
        assert_eq!(t.places[0].shared_key(), t.places[1].shared_key());
        assert_eq!(t.facts.get(1), &[4]);
        // A state file without its places is refused with the column's name.
        let without = batch.project(&[0, 1, 4]).unwrap();
        let e = table_of("evaluation", &without, &mut Default::default()).unwrap_err();
        assert!(e.to_string().contains("evaluation.siao"), "{e}");
    }
}
