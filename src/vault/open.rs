//! Creating and opening a vault: the header, the first (or `open`) log entry, and the
//! assembly of a [`Vault`] from its storage and unlocked keys.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use super::commit::Flush;
use super::{Vault, VaultOptions};
use crate::audit::{Action, AuditLog};
use crate::crypto::{KdfParams, KeySource, MacKey, RootKey, SecretKey, derive_key};
use crate::error::{Error, Result, Structure};
use crate::header::Header;
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
    /// [`Error::AlreadyExists`] when `path` holds a vault, [`Error::ExcessiveWork`] or
    /// [`Error::InvalidInput`] for bad KDF parameters.
    pub fn create_with(
        path: impl AsRef<Path>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        let path = path.as_ref();
        std::fs::create_dir_all(path)?;
        if SledStorage::read_header_at(path)?.is_some() {
            return Err(Error::AlreadyExists);
        }
        let storage = SledStorage::open(path, &options.sled)?;
        let mut v = Vault::create_in(Box::new(storage), key, options)?;
        v.path = Some(path.to_path_buf());
        Ok(v)
    }

    /// Creates a vault in any [`Storage`] (e.g. [`crate::storage::MemoryStorage`]).
    /// What a create interrupted before writing its header left behind is cleared; a
    /// store without a header but with records or keys (a vault whose header was lost)
    /// fails with [`Error::AlreadyExists`] and is left as it is.
    pub fn create_in(
        storage: Box<dyn Storage>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        if storage.read_header()?.is_some() {
            return Err(Error::AlreadyExists);
        }
        options.opener.validate()?;
        clear_interrupted_create(storage.as_ref())?;
        let (header, unlocked) = Header::create(&key, options.kdf)?;
        let bytes = header.encode(&unlocked.root);
        let opener = options.opener.clone();
        let v = Vault::assemble(
            storage,
            header,
            unlocked.root,
            None,
            unlocked.vault_secret,
            options,
        )?;
        // The first log entry (and so the head) exists before the header: a header
        // without a head means the log was deleted.
        v.log_only(
            &opener,
            Action::Create,
            format!("format {}", crate::header::HEADER_VERSION),
            Flush::Write,
        )?;
        v.storage.flush()?;
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
    /// (corrupted header, missing access log), [`Error::ExcessiveWork`].
    pub fn open_with(
        path: impl AsRef<Path>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        let path = path.as_ref();
        if SledStorage::read_header_at(path)?.is_none() {
            return Err(Error::NotFound);
        }
        // Lock first, then read the header: a root-key rotation in another handle holds
        // the lock until its final header is written.
        let lock = DirLock::acquire(path)?;
        let bytes = SledStorage::read_header_at(path)?.ok_or(Error::NotFound)?;
        let (header, unlocked) = Header::unlock(&bytes, &key)?;
        let storage = SledStorage::open_locked(path, lock, &options.sled)?;
        let mut v = Vault::finish_open(Box::new(storage), header, unlocked, options)?;
        v.path = Some(path.to_path_buf());
        Ok(v)
    }

    /// Opens a vault held in any [`Storage`].
    pub fn open_in(
        storage: Box<dyn Storage>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        let bytes = storage.read_header()?.ok_or(Error::NotFound)?;
        let (header, unlocked) = Header::unlock(&bytes, &key)?;
        Vault::finish_open(storage, header, unlocked, options)
    }

    fn finish_open(
        storage: Box<dyn Storage>,
        header: Header,
        unlocked: crate::header::Unlocked,
        options: VaultOptions,
    ) -> Result<Vault> {
        options.opener.validate()?;
        if storage.get(keyspace::LOG_HEAD)?.is_none() {
            return Err(Error::integrity(
                Structure::LogHead,
                "missing: the log was deleted",
            ));
        }
        let opener = options.opener.clone();
        let v = Vault::assemble(
            storage,
            header,
            unlocked.root,
            unlocked.next_root,
            unlocked.vault_secret,
            options,
        )?;
        v.log_only(&opener, Action::Open, "", Flush::Read)?;
        // An erasure whose purge did not complete (crash, kill): finish it now, so the
        // erased subject's bytes do not outlive the interruption.
        if v.storage.get(keyspace::PURGE_PENDING)?.is_some() && v.options.purge_after_erase {
            v.purge(&opener)?;
        }
        Ok(v)
    }

    fn assemble(
        storage: Box<dyn Storage>,
        header: Header,
        root: RootKey,
        next_root: Option<RootKey>,
        vault_secret: SecretKey,
        options: VaultOptions,
    ) -> Result<Vault> {
        let next = match (&next_root, &header.pending) {
            (Some(k), Some(p)) => Some((k, p.next.generation)),
            _ => None,
        };
        let keyring = Keyring::new(
            header.vault_id,
            &root,
            header.root.generation,
            next,
            options.key_cache_subjects,
        );
        let log = AuditLog::open(header.vault_id, &vault_secret, storage.as_ref())?;
        let pseudonyms = MacKey::new(&derive_key(&vault_secret, &[b"medvault/v1/pseudonym"]));
        let indexes =
            crate::index::Registry::load(storage.as_ref(), &vault_secret, header.vault_id)?;
        Ok(Vault {
            vault_id: header.vault_id,
            storage,
            header: Mutex::new(header),
            root: Mutex::new(root),
            vault_secret,
            pseudonyms,
            keyring,
            log,
            options,
            commit_lock: Mutex::new(()),
            key_op_lock: Mutex::new(()),
            index_op_lock: Mutex::new(()),
            indexes,
            applied: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            flush_lock: Mutex::new(()),
            path: None,
        })
    }
}

/// Clears what a create interrupted before its header was written left in a store that
/// has no header: at most the first log entry and the head, sealed under a vault secret
/// that was never stored, so no vault. A headless store holding anything more is a vault
/// whose header was lost: [`Error::AlreadyExists`], and nothing is changed.
fn clear_interrupted_create(storage: &dyn Storage) -> Result<()> {
    let first_entry = keyspace::log_entry(0);
    let mut leftovers = WriteBatch::new();
    for item in storage.scan(&[], None) {
        let (k, _) = item?;
        if k != keyspace::LOG_HEAD && k != first_entry {
            return Err(Error::AlreadyExists);
        }
        leftovers.delete(k);
    }
    if !leftovers.is_empty() {
        storage.apply(leftovers)?;
    }
    Ok(())
}
