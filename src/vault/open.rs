//! Creating and opening a vault: the header, the first (or `open`) log entry, and the
//! assembly of a [`Vault`] from its storage and unlocked keys.

use std::path::Path;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use super::commit::{Flush, noted};
use super::{Vault, VaultOptions};
use crate::audit::{Action, AuditLog, PendingEntry};
use crate::commit::{CommitKeys, Committer, Parts};
use crate::crypto::{KdfParams, KeySource, MacKey, derive_key};
use crate::error::{Error, Existing, Result, Structure};
use crate::header::{Header, Unlocked};
use crate::keyring::Keyring;
use crate::keyspace;
use crate::storage::{DirLock, SledStorage, Storage, WriteBatch};

impl Vault {
    /// Creates a vault in directory `path` (created if missing; must not hold a vault)
    /// with the default options but for `kdf`. See [`Vault::create_with`].
    pub fn create(path: impl AsRef<Path>, key: KeySource, kdf: KdfParams) -> Result<Vault> {
        Vault::create_with(
            path,
            key,
            VaultOptions {
                kdf,
                ..VaultOptions::default()
            },
        )
    }

    /// Creates a vault on sled in directory `path`: a random 128-bit vault_id, the header
    /// (docs/FORMAT.md "Header") and a first access-log entry. Fails with
    /// [`Error::AlreadyExists`] ([`Existing::Vault`]) when `path` holds a vault, [`Error::ExcessiveWork`] or
    /// [`Error::InvalidInput`] for bad KDF parameters.
    pub fn create_with(
        path: impl AsRef<Path>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        let path = path.as_ref();
        refuse_url(path)?;
        crate::storage::private_fs::create_private_dir(path)?;
        if SledStorage::read_header_at(path)?.is_some() {
            return Err(Error::AlreadyExists(Existing::Vault));
        }
        let storage = SledStorage::open(path, &options.sled)?;
        let mut v = Vault::create_in(Box::new(storage), key, options)?;
        v.path = Some(path.to_path_buf());
        Ok(v)
    }

    /// Creates a vault in any [`Storage`] (e.g. [`crate::storage::MemoryStorage`]).
    /// What a create interrupted before writing its header left behind is cleared; a
    /// store without a header but with records or keys (a vault whose header was lost)
    /// fails with [`Error::AlreadyExists`] ([`Existing::Vault`]) and is left as it is.
    pub fn create_in(
        storage: Box<dyn Storage>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        if storage.read_header()?.is_some() {
            return Err(Error::AlreadyExists(Existing::Vault));
        }
        options.opener.validate()?;
        clear_interrupted_create(storage.as_ref())?;
        let (header, unlocked) = Header::create(&key, options.kdf)?;
        let bytes = header.encode(&unlocked.root);
        let create = noted(
            &options.opener,
            Action::Create,
            format!("format {}", crate::header::HEADER_VERSION),
        );
        // The first log entry, the applied marker and the anchor are durable before the
        // header: a header without them means the log or the record store was deleted.
        let v = Vault::assemble(Arc::from(storage), header, unlocked, options, Some(create))?;
        // With `VaultOptions::policy`, the policy and its change entry are committed
        // before the header too.
        if let Some(p) = v.options.policy.clone() {
            let opener = v.options.opener.clone();
            v.set_policy(&opener, p)?;
            v.sync()?;
        }
        v.storage.write_header(&bytes)?;
        Ok(v)
    }

    /// Opens the vault in directory `path` with default options.
    /// See [`Vault::open_with`].
    pub fn open(path: impl AsRef<Path>, key: KeySource) -> Result<Vault> {
        Vault::open_with(path, key, VaultOptions::default())
    }

    /// Opens the vault in directory `path`. The header is read and the key checked
    /// before the database is opened, so a wrong key changes no file. Fails with
    /// [`Error::NotFound`] (no vault there), [`Error::WrongKey`], [`Error::Integrity`]
    /// (corrupted header, missing access log; also a directory an interrupted restore
    /// left, docs/BACKUP.md), [`Error::ExcessiveWork`].
    pub fn open_with(
        path: impl AsRef<Path>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        let path = path.as_ref();
        if path.join(super::backup::RESTORE_INCOMPLETE_FILE).exists() {
            return Err(Error::integrity(
                Structure::Backup,
                "this directory is an interrupted restore (its erasures may not be \
                 re-applied yet): never usable; run the restore again",
            ));
        }
        Vault::open_restoring(path, key, options)
    }

    /// [`Vault::open_with`] without the interrupted-restore check: the restore itself
    /// opens the directory it is building.
    pub(super) fn open_restoring(
        path: &Path,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        refuse_url(path)?;
        if SledStorage::read_header_at(path)?.is_none() {
            return Err(Error::NotFound);
        }
        // Lock first, then read the header: a root-key rotation in another handle holds
        // the lock until its final header is written.
        let lock = DirLock::acquire(path)?;
        let bytes = SledStorage::read_header_at(path)?.ok_or(Error::NotFound)?;
        let (header, unlocked) = Header::unlock_within(&bytes, &key, options.max_kdf_work)?;
        let warnings = exposure_warnings(path)?;
        let storage = SledStorage::open_locked(path, lock, &options.sled)?;
        let mut v = Vault::finish_open(Box::new(storage), header, unlocked, options)?;
        v.path = Some(path.to_path_buf());
        v.warnings.splice(0..0, warnings);
        if v.options.prune_on_open {
            let opener = v.options.opener.clone();
            if let Err(e) = v.prune_log(&opener, None) {
                v.warnings
                    .push(format!("the automatic access-log prune failed: {e}"));
            }
        }
        Ok(v)
    }

    /// What an interrupted rotation left to finish (a `rotate all`, `rotate kek` or
    /// `rotate data` killed or failed part way), as [`Vault::warnings`] says at open: the
    /// vault is consistent and serves everything meanwhile, but the protection the
    /// rotation was run for is not in place until it is resumed.
    fn pending_rotation_warnings(&self) -> Result<Vec<String>> {
        let mut w = Vec::new();
        match self.rotate_all_pending()? {
            Some(super::RotateAllPhase::RootDone) => w.push(
                "a compromise response (`rotate all`) was interrupted after its new root key \
                 was in place: the vault key-encryption key and the data keys are not all \
                 rotated yet; run `medvault rotate all VAULT --resume` to finish it"
                    .to_owned(),
            ),
            Some(super::RotateAllPhase::RootNotDone) => w.push(
                "a compromise response (`rotate all`) was interrupted before its new root key \
                 was in place: nothing it protects against is in place; run `medvault rotate \
                 all VAULT` again"
                    .to_owned(),
            ),
            None => {}
        }
        if self.vault_kek_rotation_pending() {
            w.push(
                "a vault key-encryption-key rotation (`rotate kek` or `rotate all`) was \
                 interrupted: subject keys are wrapped under the old and the new KEK until it \
                 finishes; run `medvault rotate kek VAULT` to resume it"
                    .to_owned(),
            );
        }
        if self.data_key_rotation_pending()? {
            w.push(
                "a data-key rotation (`rotate data` or `rotate all`) was interrupted: some \
                 records are still sealed under the old data keys; run `medvault rotate data \
                 VAULT --resume` to finish it"
                    .to_owned(),
            );
        }
        Ok(w)
    }

    /// Opens a vault held in any [`Storage`].
    pub fn open_in(
        storage: Box<dyn Storage>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        let bytes = storage.read_header()?.ok_or(Error::NotFound)?;
        let (header, unlocked) = Header::unlock_within(&bytes, &key, options.max_kdf_work)?;
        Vault::finish_open(storage, header, unlocked, options)
    }

    fn finish_open(
        storage: Box<dyn Storage>,
        header: Header,
        unlocked: crate::header::Unlocked,
        options: VaultOptions,
    ) -> Result<Vault> {
        options.opener.validate()?;
        let opener = options.opener.clone();
        let mut v = Vault::assemble(Arc::from(storage), header, unlocked, options, None)?;
        v.record_header_generations(&opener)?;
        v.warnings = v.pending_rotation_warnings()?;
        // After a prune the log starts at the prune point (docs/BACKUP.md "Retention").
        v.load_log_start()?;
        // A policy rolled back to an older sealed version, or deleted, is caught before
        // anything is served (docs/FORMAT.md "Access policy").
        v.check_policy_version()?;
        v.log_only(&opener, Action::Open, "", Flush::Read)?;
        // An erasure whose purge did not complete (crash, kill): finish it now, so the
        // erased subject's bytes do not outlive the interruption.
        if v.storage.get(keyspace::PURGE_PENDING)?.is_some() && v.options.purge_after_erase {
            v.purge(&opener)?;
        }
        Ok(v)
    }

    /// Builds a vault over `storage`. With `create`, a new vault: its log is started with
    /// that entry (docs/DESIGN-storage.md); otherwise the log is opened and recovered
    /// ("Open": a record store behind or ahead of the log is an integrity error), and a
    /// header older than the last finished key rotation the vault records (anchor, applied
    /// marker, `zkeygen`) is refused
    /// with [`Error::Integrity`] (docs/FORMAT.md "Anchor file").
    fn assemble(
        storage: Arc<dyn Storage>,
        header: Header,
        unlocked: Unlocked,
        options: VaultOptions,
        create: Option<PendingEntry>,
    ) -> Result<Vault> {
        let Unlocked {
            root,
            kek,
            next_kek,
            vault_secret,
        } = unlocked;
        let keyring = Keyring::new(
            header.vault_id,
            &kek,
            next_kek.as_ref(),
            options.key_cache_bytes,
        );
        drop((kek, next_kek));
        let log = Arc::new(AuditLog::new(header.vault_id, &vault_secret));
        let parts = Parts {
            vault_id: header.vault_id,
            keys: CommitKeys::derive(&header.vault_id, &vault_secret),
            sealer: log.clone(),
            records: storage.clone(),
            log: storage.log_store(header.vault_id, create.is_some())?,
            excluded: keyspace::outside_digest,
        };
        let committer = Arc::new(match create {
            Some(e) => {
                let bodies: Vec<Zeroizing<Vec<u8>>> = vec![e.body()];
                Committer::create(parts, bodies)?
            }
            None => Committer::open(parts)?.0,
        });
        // A header copied before a rotation finished and put back (with the passphrase
        // that rotation revoked) is older than what the vault records: refused, even with
        // the anchor of its time put back beside it (the marker and `zkeygen` remember).
        let (mut root_gen, mut kek_gen) = committer.key_generations();
        // The generations the record store keeps under the state digest (an anchor and
        // a marker can both be older when a rotation's "finished" commit was the last).
        if let Some(b) = storage.get(keyspace::KEY_GENERATIONS)? {
            let (r, k) = keyspace::decode_key_generations(&b).ok_or_else(|| {
                Error::integrity(
                    Structure::RecordStore,
                    "the key generations value is not 8 bytes",
                )
            })?;
            root_gen = root_gen.max(r);
            kek_gen = kek_gen.max(k);
        }
        if header.root.generation < root_gen || header.kek.generation < kek_gen {
            return Err(Error::integrity(
                Structure::Header,
                format!(
                    "older than the last finished key rotation (header: root generation {}, \
                     key-encryption-key generation {}; the vault records {root_gen} and \
                     {kek_gen}): a header copied earlier and put back",
                    header.root.generation, header.kek.generation
                ),
            ));
        }
        committer.raise_key_generations((header.root.generation, header.kek.generation));
        let flusher = match options.sled.flush_every_ms {
            Some(ms) => Some(Committer::spawn_flusher(
                &committer,
                std::time::Duration::from_millis(ms.max(1)),
            )?),
            None => None,
        };
        let pseudonyms = MacKey::new(&derive_key(&vault_secret, &[b"medvault/v1/pseudonym"]));
        let indexes =
            crate::index::Registry::load(storage.as_ref(), &vault_secret, header.vault_id)?;
        let policy = crate::policy::load_policy(
            storage.as_ref(),
            &vault_secret,
            header.vault_id.as_bytes(),
        )?;
        Ok(Vault {
            vault_id: header.vault_id,
            storage,
            header: Mutex::new(header),
            root: Mutex::new(root),
            vault_secret,
            pseudonyms,
            keyring,
            log,
            committer,
            _flusher: flusher,
            options,
            commit_lock: Mutex::new(()),
            key_op_lock: Mutex::new(()),
            index_op_lock: Mutex::new(()),
            maintenance_lock: Mutex::new(()),
            indexes,
            policy: crate::policy::PolicyCell::new(policy),
            path: None,
            warnings: Vec::new(),
        })
    }
}

/// A `postgres://` (or `postgresql://`) URL given where a directory is expected: an
/// [`Error::Storage`] naming the crate that opens it (medvault-postgres, whose
/// `create_with` / `open_with` take the URL), rather than a directory named `postgres:`.
fn refuse_url(path: &Path) -> Result<()> {
    if path
        .to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
    {
        return Err(Error::Storage(crate::StorageError::new(
            "a postgres:// URL is not a vault directory: open it with medvault_postgres::\
             create_with or open_with (crate medvault-postgres, docs/POSTGRES.md)",
        )));
    }
    Ok(())
}

/// One warning per entry of the vault directory `dir` that group or others may access
/// (`mode & 0o077 != 0`): the directory, the header, the lock file, `db/` itself, and
/// anything else at the top level. sled's own files under `db/` are not listed: they are
/// brought to owner-only modes on every open (sled creates them with the umask's).
fn exposure_warnings(dir: &Path) -> Result<Vec<String>> {
    let db = dir.join(crate::storage::DB_DIR);
    Ok(crate::storage::private_fs::exposed_entries(dir)?
        .into_iter()
        .filter(|(p, _)| !(p.starts_with(&db) && p != &db))
        .map(|(p, mode)| {
            format!(
                "{} is accessible by group or others (mode {mode:o}); \
                 a vault's directories should be 0700 and its files 0600 (chmod -R go-rwx)",
                p.display()
            )
        })
        .collect())
}

/// Clears what a create interrupted before its header was written left in a store that
/// has no header: at most the first applied marker, MACed under a vault secret that was
/// never stored, so no vault (the log store is replaced when the new log is created). A
/// headless store holding anything more is a vault whose header was lost:
/// [`Error::AlreadyExists`] ([`Existing::Vault`]), and nothing is changed.
fn clear_interrupted_create(storage: &dyn Storage) -> Result<()> {
    let mut leftovers = WriteBatch::new();
    for item in storage.scan(&[], None) {
        let (k, _) = item?;
        // With `VaultOptions::policy`, the policy precedes the header.
        if k != keyspace::APPLIED_MARKER && k != keyspace::POLICY {
            return Err(Error::AlreadyExists(Existing::Vault));
        }
        leftovers.delete(k);
    }
    if !leftovers.is_empty() {
        storage.apply(leftovers)?;
    }
    Ok(())
}
