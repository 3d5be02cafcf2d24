//! The pseudonymisation key: 256 bits kept outside the lake, per-purpose subkeys.
//!
//! The master key K lives in `<data>/secrets/pseudonymisation.key` (hex, mode 0600,
//! created on first run) or in the environment variable `OBSERVATOIRE_PSEUDO_KEY`
//! (hex). Subkeys are derived with HKDF-SHA256 per purpose (`detail`, `linkage`,
//! `analyst/<release>`), so that pseudonyms of one purpose cannot be linked to another
//! without K. The lake records only the key's fingerprint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::{Array, Int64Array, StringArray};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The environment variable that may hold the master key, in hex.
pub const KEY_ENV: &str = "OBSERVATOIRE_PSEUDO_KEY";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "la clé de pseudonymisation de {0} n'est pas une valeur hexadécimale de 64 caractères (256 bits)"
    )]
    Malformed(String),
    #[error("lecture de la clé de pseudonymisation {path} impossible : {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("création de la clé de pseudonymisation {path} impossible : {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("le générateur aléatoire du système est indisponible : {0}")]
    Random(String),
    #[error(
        "clé de pseudonymisation absente ({0}) : lancez d'abord une ingestion, qui la crée, ou donnez-la par OBSERVATOIRE_PSEUDO_KEY"
    )]
    Missing(PathBuf),
}

/// The 256-bit master key.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(empreinte {})", self.fingerprint())
    }
}

impl MasterKey {
    pub fn from_hex(hex_text: &str, origin: &str) -> Result<Self, KeyError> {
        let bytes =
            hex::decode(hex_text.trim()).map_err(|_| KeyError::Malformed(origin.to_owned()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Malformed(origin.to_owned()))?;
        Ok(Self(bytes))
    }

    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// The key of `OBSERVATOIRE_PSEUDO_KEY` if set, else the key file, which must exist.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        if let Ok(hex_text) = std::env::var(KEY_ENV) {
            return Self::from_hex(&hex_text, KEY_ENV);
        }
        if !path.exists() {
            return Err(KeyError::Missing(path.to_owned()));
        }
        Self::read(path)
    }

    /// The key of a key file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_hex(&text, &path.display().to_string())
    }

    /// Writes the key to a new file, mode 0600 (its folder 0700); fails if it exists.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let create = |source| KeyError::Create {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(create)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(create)?;
            }
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(create)?;
        writeln!(file, "{}", hex::encode(self.0)).map_err(create)?;
        file.sync_all().map_err(create)
    }

    /// The key of `OBSERVATOIRE_PSEUDO_KEY` if set, else the key file, created (mode 0600)
    /// on first use. Returns the key and whether it was just created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        if let Ok(hex_text) = std::env::var(KEY_ENV) {
            return Ok((Self::from_hex(&hex_text, KEY_ENV)?, false));
        }
        if path.exists() {
            return Ok((Self::read(path)?, false));
        }
        let key = Self::generate()?;
        key.write_new(path)?;
        Ok((key, true))
    }

    /// A public fingerprint of the key: it identifies the key without revealing it.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"observatoire/empreinte-cle/v1:");
        hasher.update(self.0);
        hex::encode(&hasher.finalize()[..16])
    }

    /// The subkey for one purpose (HKDF-SHA256, info = purpose).
    pub fn subkey(&self, purpose: &str) -> Pseudonymizer {
        let key = self.derive(purpose);
        Pseudonymizer {
            keyed: Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts any key length"),
        }
    }

    /// The subkey of the duplicate-linkage key (purpose `linkage`), used in memory only.
    pub(crate) fn linkage_subkey(&self) -> [u8; 32] {
        self.derive("linkage")
    }

    fn derive(&self, purpose: &str) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let mut okm = [0u8; 32];
        hk.expand(purpose.as_bytes(), &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        okm
    }
}

/// Makes the pseudonyms of one purpose.
#[derive(Clone)]
pub struct Pseudonymizer {
    /// HMAC-SHA256 already keyed with the subkey (its inner and outer pads hashed once),
    /// cloned for each pseudonym.
    keyed: Hmac<Sha256>,
}

/// A pseudonym's length in hex characters (128 bits).
pub const PSEUDONYM_LEN: usize = 32;

impl Pseudonymizer {
    /// `HMAC-SHA256(subkey, entity ':' id)` truncated to 128 bits, lower-case hex.
    pub fn pseudonym(&self, entity: &str, id: i64) -> String {
        let mut out = [0u8; PSEUDONYM_LEN];
        self.pseudonym_into(entity, id, &mut out).to_owned()
    }

    /// The same as [`Self::pseudonym`], written into `out` without allocating (the
    /// ingest makes millions of them).
    pub fn pseudonym_into<'a>(
        &self,
        entity: &str,
        id: i64,
        out: &'a mut [u8; PSEUDONYM_LEN],
    ) -> &'a str {
        let mut digits = itoa::Buffer::new();
        self.pseudonym_of_bytes(entity, digits.format(id).as_bytes(), out)
    }

    /// The same over an identifier that is already text: the analyst zone keys the
    /// detail zone's pseudonyms of persons and households this way, per release.
    pub fn pseudonym_of_text(&self, entity: &str, id: &str) -> String {
        let mut out = [0u8; PSEUDONYM_LEN];
        self.pseudonym_of_bytes(entity, id.as_bytes(), &mut out)
            .to_owned()
    }

    /// The pseudonyms of a column of ids (nulls stay null), built in place on every core
    /// (`fill_column`): a national ingest makes about ten million of them.
    pub fn pseudonymise(
        &self,
        entity: &str,
        ids: &Int64Array,
    ) -> Result<StringArray, arrow::error::ArrowError> {
        self.pseudonymise_with(entity, ids, None)
    }

    /// [`Self::pseudonymise`], copying the pseudonyms already made for the same entity
    /// (`made`, whose row for an id `rows` gives) instead of computing them again: a
    /// household is referenced from four tables, a person from two.
    pub fn pseudonymise_known(
        &self,
        entity: &str,
        ids: &Int64Array,
        rows: &crate::FastMap<i64, u32>,
        made: &StringArray,
    ) -> Result<StringArray, arrow::error::ArrowError> {
        self.pseudonymise_with(entity, ids, Some((rows, made)))
    }

    /// The pseudonyms of a column of identifiers that are already text (nulls stay
    /// null), built in place on every core (`fill_column`): the analyst
    /// zone keys the detail zone's pseudonyms this way, millions per release.
    pub fn pseudonymise_texts(
        &self,
        entity: &str,
        ids: &StringArray,
    ) -> Result<StringArray, arrow::error::ArrowError> {
        fill_column(ids.len(), ids.nulls(), |i, slot| {
            self.pseudonym_of_bytes(entity, ids.value(i).as_bytes(), slot);
        })
    }

    fn pseudonymise_with(
        &self,
        entity: &str,
        ids: &Int64Array,
        known: Option<(&crate::FastMap<i64, u32>, &StringArray)>,
    ) -> Result<StringArray, arrow::error::ArrowError> {
        fill_column(ids.len(), ids.nulls(), |i, slot| {
            let id = ids.value(i);
            match known.and_then(|(rows, made)| Some(made.value(*rows.get(&id)? as usize))) {
                Some(copy) => slot.copy_from_slice(copy.as_bytes()),
                None => {
                    self.pseudonym_into(entity, id, slot);
                }
            }
        })
    }

    fn pseudonym_of_bytes<'a>(
        &self,
        entity: &str,
        id: &[u8],
        out: &'a mut [u8; PSEUDONYM_LEN],
    ) -> &'a str {
        let mut mac = self.keyed.clone();
        mac.update(entity.as_bytes());
        mac.update(b":");
        mac.update(id);
        let digest = mac.finalize().into_bytes();
        hex::encode_to_slice(&digest[..PSEUDONYM_LEN / 2], out).expect("32 hex digits");
        std::str::from_utf8(out).expect("hex is ASCII")
    }
}

/// A column of `n` pseudonyms whose valid rows `fill(row, slot)` writes, with the nulls
/// given, computed on every core.
///
/// Every pseudonym is [`PSEUDONYM_LEN`] bytes, so the column is built in place: one
/// values buffer of `32 × rows` bytes whose disjoint parts the threads fill, offsets in
/// steps of 32 (a null slot keeps 32 zero bytes that no reader sees), and the ids' own
/// validity. No builder grows, and no parts are concatenated afterwards.
fn fill_column(
    n: usize,
    nulls: Option<&arrow::buffer::NullBuffer>,
    fill: impl Fn(usize, &mut [u8; PSEUDONYM_LEN]) + Sync,
) -> Result<StringArray, arrow::error::ArrowError> {
    const CHUNK: usize = 1 << 16;
    let end = n
        .checked_mul(PSEUDONYM_LEN)
        .and_then(|b| i32::try_from(b).ok())
        .ok_or_else(|| {
            arrow::error::ArrowError::ComputeError(format!(
                "{n} pseudonymes dans une seule colonne : plus que ce qu'une colonne de texte peut tenir"
            ))
        })?;
    let mut values = vec![0u8; n * PSEUDONYM_LEN];
    // Rows `start..` into `out` (32 bytes per row).
    let fill_part = |start: usize, out: &mut [u8]| {
        for (k, slot) in out.chunks_exact_mut(PSEUDONYM_LEN).enumerate() {
            let i = start + k;
            if nulls.is_none_or(|b| b.is_valid(i)) {
                fill(i, slot.try_into().expect("32 bytes"));
            }
        }
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n <= CHUNK || workers < 2 {
        fill_part(0, &mut values);
    } else {
        let per = n.div_ceil(workers);
        std::thread::scope(|scope| {
            for (w, part) in values.chunks_mut(per * PSEUDONYM_LEN).enumerate() {
                let fill_part = &fill_part;
                scope.spawn(move || fill_part(w * per, part));
            }
        });
    }
    let offsets: Vec<i32> = (0..=end).step_by(PSEUDONYM_LEN).collect();
    debug_assert_eq!(offsets.len(), n + 1);
    // SAFETY: the offsets start at 0, grow by 32 and end at the buffer's length; every
    // byte is a lower-case hex digit or a zero byte, both ASCII, so valid UTF-8.
    Ok(unsafe {
        StringArray::new_unchecked(
            arrow::buffer::OffsetBuffer::new_unchecked(offsets.into()),
            arrow::buffer::Buffer::from_vec(values),
            nulls.cloned(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pseudonyms of `purpose` under a fixed test key.
    fn test_pseudonymizer(purpose: &str) -> Pseudonymizer {
        MasterKey::from_hex(&"ab".repeat(32), "test")
            .expect("a key")
            .subkey(purpose)
    }

    #[test]
    fn pseudonyms_copied_from_those_made_equal_those_computed() {
        let p = test_pseudonymizer("detail");
        // The entity's own ids, pseudonymised once.
        let own: Int64Array = (0..100_000i64).map(|i| Some(i * 3)).collect();
        let made = p.pseudonymise("menage", &own).expect("pseudonyms");
        let rows: crate::FastMap<i64, u32> = own
            .iter()
            .enumerate()
            .map(|(i, id)| (id.expect("an id"), i as u32))
            .collect();
        // References: known ids, ids the entity does not have, nulls; more rows than
        // one thread takes.
        let refs: Int64Array = (0..150_001i64)
            .map(|i| (i % 11 != 5).then_some(if i % 4 == 0 { i * 3 + 1 } else { i * 3 }))
            .collect();
        let copied = p
            .pseudonymise_known("menage", &refs, &rows, &made)
            .expect("pseudonyms");
        assert_eq!(copied, p.pseudonymise("menage", &refs).expect("pseudonyms"));
        assert_eq!(copied.null_count(), refs.null_count());
    }

    #[test]
    fn a_column_of_text_ids_gets_each_row_its_own_pseudonym() {
        let p = test_pseudonymizer("analyst/3");
        // More rows than one thread takes, with nulls and repeated ids.
        let ids: StringArray = (0..150_001i64)
            .map(|i| (i % 13 != 7).then(|| format!("{:032x}", i % 40_000)))
            .collect();
        let made = p.pseudonymise_texts("menage", &ids).expect("pseudonyms");
        assert_eq!(made.len(), ids.len());
        assert_eq!(made.nulls(), ids.nulls());
        for i in 0..ids.len() {
            if ids.is_valid(i) {
                assert_eq!(made.value(i), p.pseudonym_of_text("menage", ids.value(i)));
            }
        }
        // Another entity, another pseudonym for the same text.
        assert_ne!(
            made.value(0),
            p.pseudonymise_texts("personne", &ids)
                .expect("pseudonyms")
                .value(0)
        );
    }

    #[test]
    fn a_column_of_ids_gets_each_ids_pseudonym_and_keeps_its_nulls() {
        let p = test_pseudonymizer("detail");
        // More rows than one thread takes, a null every seventh row, and a slice that
        // starts mid-way (its validity has an offset).
        let ids: Int64Array = (0..200_003i64)
            .map(|i| (i % 7 != 3).then_some(i * 31 - 1_000))
            .collect();
        for column in [ids.clone(), ids.slice(5, 150_000)] {
            let out = p.pseudonymise("personne", &column).expect("pseudonyms");
            assert_eq!(out.len(), column.len());
            for i in 0..column.len() {
                if column.is_null(i) {
                    assert!(out.is_null(i), "row {i} should stay null");
                } else {
                    assert_eq!(out.value(i), p.pseudonym("personne", column.value(i)));
                }
            }
        }
        assert_eq!(
            p.pseudonymise("personne", &Int64Array::from(Vec::<i64>::new()))
                .expect("none")
                .len(),
            0
        );
    }

    #[test]
    fn pseudonyms_depend_on_key_entity_and_id() {
        let k1 = MasterKey::from_hex(&"11".repeat(32), "test").unwrap();
        let k2 = MasterKey::from_hex(&"22".repeat(32), "test").unwrap();
        let p = k1.subkey("detail");
        let a = p.pseudonym("personne", 42);
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(a, k1.subkey("detail").pseudonym("personne", 42));
        assert_ne!(a, p.pseudonym("menage", 42));
        assert_ne!(a, p.pseudonym("personne", 43));
        assert_ne!(a, k2.subkey("detail").pseudonym("personne", 42));
        assert_ne!(a, k1.subkey("linkage").pseudonym("personne", 42));
        assert_ne!(k1.fingerprint(), k2.fingerprint());
    }

    #[test]
    fn hmac_matches_a_known_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile_dir();
        let path = dir.join("secrets/pseudonymisation.key");
        // SAFETY-free: the test only reads the variable's absence.
        if std::env::var(KEY_ENV).is_ok() {
            return;
        }
        let (k1, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (k2, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.fingerprint(), k2.fingerprint());
        fs::write(&path, "pas une clé").unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(KeyError::Malformed(_))
        ));
        fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("obs-key-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
