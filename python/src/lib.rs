//! # medvault-py
//!
//! The native half of the Python package `medvault`: the extension module
//! `medvault._native`, a thin layer over the Rust API with JSON text in and out. The
//! package (`python/medvault/__init__.py`) turns that text into dicts with exact
//! numbers, and the one native exception into the package's exception classes, by the
//! stable error kind names of `medvault::Error::kind_name`.
//!
//! Every call releases the GIL while the vault works, so Python threads can share one
//! vault (the vault is `Send + Sync` and orders its own commits).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use medvault::{
    AccessContext, KdfParams, KeySource, RecordKey, RotationScope, Vault, VaultOptions,
};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use zeroize::Zeroizing;
// The JSON text boundary, shared with the C binding.
use medvault_bindings_text as text;

create_exception!(
    _native,
    NativeError,
    PyException,
    "A medvault failure: args are (kind, message, rule); the package re-raises it as the \
     exception class of its kind."
);

/// A failure on its way to Python: a stable kind name and a message free of plaintext.
#[derive(Debug)]
pub struct BindError {
    kind: String,
    message: String,
    rule: Option<String>,
}

impl BindError {
    /// Malformed input found by the binding.
    fn invalid(message: impl Into<String>) -> Self {
        text::TextError::invalid(message).into()
    }

    fn closed() -> Self {
        BindError {
            kind: "closed".into(),
            message: "the vault is closed".into(),
            rule: None,
        }
    }
}

impl From<text::TextError> for BindError {
    fn from(e: text::TextError) -> Self {
        let (kind, message, rule) = e.into_parts();
        BindError {
            kind: kind.to_owned(),
            message,
            rule,
        }
    }
}

impl From<medvault::Error> for BindError {
    fn from(e: medvault::Error) -> Self {
        text::TextError::from(e).into()
    }
}

impl From<BindError> for PyErr {
    fn from(e: BindError) -> PyErr {
        NativeError::new_err((e.kind, e.message, e.rule))
    }
}

/// `(actor, purpose, reason, roles, purpose_code)` as the package passes an `Access`.
type Ctx = (String, String, Option<String>, Vec<String>, Option<String>);

fn context((actor, purpose, reason, roles, code): Ctx) -> Result<AccessContext, BindError> {
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    Ok(text::access_context(
        &actor,
        &purpose,
        reason.as_deref(),
        &roles,
        code.as_deref(),
    )?)
}

fn key_source(passphrase: Option<String>, key: Option<&[u8]>) -> Result<KeySource, BindError> {
    match (passphrase, key) {
        (Some(p), None) => Ok(KeySource::passphrase(p)),
        (None, Some(k)) => {
            let arr: Zeroizing<[u8; 32]> = Zeroizing::new(
                k.try_into()
                    .map_err(|_| BindError::invalid("a raw root key is 32 bytes"))?,
            );
            Ok(KeySource::raw(*arr))
        }
        _ => Err(BindError::invalid(
            "give exactly one of passphrase= and key=",
        )),
    }
}

fn kdf_params(kdf: Option<(u32, u32, u32)>) -> KdfParams {
    kdf.map_or_else(KdfParams::default, |(memory_kib, iterations, lanes)| {
        KdfParams {
            memory_kib,
            iterations,
            lanes,
        }
    })
}

fn options(kdf: KdfParams, opener: Option<Ctx>) -> Result<VaultOptions, BindError> {
    let mut o = VaultOptions {
        kdf,
        ..VaultOptions::default()
    };
    if let Some(c) = opener {
        o.opener = context(c)?;
    }
    Ok(o)
}

/// An open vault (or a closed one: every call then raises kind `closed`).
#[pyclass(frozen, module = "medvault._native")]
pub struct NativeVault {
    vault: RwLock<Option<Arc<Vault>>>,
}

impl NativeVault {
    fn new(v: Vault) -> Self {
        NativeVault {
            vault: RwLock::new(Some(Arc::new(v))),
        }
    }

    fn vault(&self) -> Result<Arc<Vault>, BindError> {
        self.vault
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(BindError::closed)
    }

    /// Runs `f` on the vault with the GIL released.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        ctx: Ctx,
        f: impl FnOnce(&Vault, &AccessContext) -> Result<T, BindError> + Send,
    ) -> PyResult<T> {
        let v = self.vault()?;
        let ctx = context(ctx)?;
        Ok(py.detach(|| f(&v, &ctx))?)
    }
}

#[pymethods]
impl NativeVault {
    /// Creates a vault in directory `path` under a passphrase (Argon2id with `kdf` =
    /// (memory_kib, iterations, lanes), default RFC 9106's) or a raw 32-byte key.
    #[staticmethod]
    #[pyo3(signature = (path, passphrase=None, key=None, kdf=None, opener=None))]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        passphrase: Option<String>,
        key: Option<&[u8]>,
        kdf: Option<(u32, u32, u32)>,
        opener: Option<Ctx>,
    ) -> PyResult<NativeVault> {
        let key = key_source(passphrase, key)?;
        let opts = options(kdf_params(kdf), opener)?;
        let v = py.detach(|| Vault::create_with(path, key, opts).map_err(BindError::from))?;
        Ok(NativeVault::new(v))
    }

    /// Opens the vault in directory `path` with its passphrase or raw 32-byte key.
    #[staticmethod]
    #[pyo3(signature = (path, passphrase=None, key=None, opener=None))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        passphrase: Option<String>,
        key: Option<&[u8]>,
        opener: Option<Ctx>,
    ) -> PyResult<NativeVault> {
        let key = key_source(passphrase, key)?;
        let opts = options(KdfParams::default(), opener)?;
        let v = py.detach(|| Vault::open_with(path, key, opts).map_err(BindError::from))?;
        Ok(NativeVault::new(v))
    }

    /// Closes the vault (idempotent). Calls running on other threads finish first.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let v = self
            .vault
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(v) = v {
            py.detach(|| v.sync().map_err(BindError::from))?;
        }
        Ok(())
    }

    /// True once `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.vault
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Stores the JSON object text `json` as record (subject, collection, record_id).
    fn put(
        &self,
        py: Python<'_>,
        ctx: Ctx,
        subject: String,
        collection: String,
        record_id: String,
        json: &str,
    ) -> PyResult<()> {
        let key = RecordKey::new(subject, collection, record_id);
        self.run(py, ctx, |v, c| Ok(text::put_text(v, c, &key, json)?))
    }

    /// The record as JSON object text (only `fields` when given).
    #[pyo3(signature = (ctx, subject, collection, record_id, fields=None))]
    fn get(
        &self,
        py: Python<'_>,
        ctx: Ctx,
        subject: String,
        collection: String,
        record_id: String,
        fields: Option<Vec<String>>,
    ) -> PyResult<String> {
        let key = RecordKey::new(subject, collection, record_id);
        self.run(py, ctx, |v, c| {
            let f: Option<Vec<&str>> = fields
                .as_ref()
                .map(|f| f.iter().map(String::as_str).collect());
            Ok(text::get_text(v, c, &key, f.as_deref())?.to_string())
        })
    }

    /// Deletes a record.
    fn delete(
        &self,
        py: Python<'_>,
        ctx: Ctx,
        subject: String,
        collection: String,
        record_id: String,
    ) -> PyResult<()> {
        let key = RecordKey::new(subject, collection, record_id);
        self.run(py, ctx, |v, c| Ok(v.delete(c, &key)?))
    }

    /// Every record of `subject` (of `collection` when given) as a JSON array.
    #[pyo3(signature = (ctx, subject, collection=None))]
    fn records_of(
        &self,
        py: Python<'_>,
        ctx: Ctx,
        subject: String,
        collection: Option<String>,
    ) -> PyResult<String> {
        self.run(py, ctx, |v, c| {
            let list = v.records_of_json(c, &subject, collection.as_deref())?;
            Ok(text::list_text(&list)?.to_string())
        })
    }

    /// Records of `collection` matching blind index `index` for `values`, as a JSON array.
    fn find(
        &self,
        py: Python<'_>,
        ctx: Ctx,
        collection: String,
        index: String,
        values: Vec<String>,
    ) -> PyResult<String> {
        self.run(py, ctx, |v, c| {
            let vals: Vec<&str> = values.iter().map(String::as_str).collect();
            let list = v.find_json(c, &collection, &index, &vals)?;
            Ok(text::list_text(&list)?.to_string())
        })
    }

    /// Erases a subject (crypto-shredding); returns the number of records erased.
    fn erase_subject(&self, py: Python<'_>, ctx: Ctx, subject: String) -> PyResult<u64> {
        self.run(py, ctx, |v, c| Ok(v.erase_subject(c, &subject)?))
    }

    /// True when `subject` is remembered as erased (writes for it are refused until a
    /// re-admission).
    fn is_erased(&self, py: Python<'_>, ctx: Ctx, subject: String) -> PyResult<bool> {
        self.run(py, ctx, |v, c| Ok(v.is_erased(c, &subject)?))
    }

    /// Re-admits an erased subject; `reason` (required) is logged.
    fn readmit_subject(
        &self,
        py: Python<'_>,
        ctx: Ctx,
        subject: String,
        reason: String,
    ) -> PyResult<()> {
        self.run(py, ctx, |v, c| Ok(v.readmit_subject(c, &subject, &reason)?))
    }

    /// Installs the access policy given as JSON text; returns its new version.
    fn set_policy(&self, py: Python<'_>, ctx: Ctx, policy: String) -> PyResult<u32> {
        self.run(py, ctx, |v, c| Ok(text::set_policy(v, c, &policy)?))
    }

    /// Verifies the access log (against a checkpoint text when given); returns the
    /// number of entries verified.
    #[pyo3(signature = (ctx, checkpoint=None))]
    fn verify(&self, py: Python<'_>, ctx: Ctx, checkpoint: Option<String>) -> PyResult<u64> {
        self.run(py, ctx, |v, c| {
            let cp = text::checkpoint(checkpoint.as_deref())?;
            Ok(v.verify(c, cp.as_ref())?)
        })
    }

    /// Issues a checkpoint; returns its text form (`mvcp1:` + hex).
    fn checkpoint(&self, py: Python<'_>, ctx: Ctx) -> PyResult<String> {
        self.run(py, ctx, |v, c| Ok(v.checkpoint(c)?.to_text()))
    }

    /// Access-log entries matching the JSON query text (None: all), as a JSON array.
    #[pyo3(signature = (ctx, query=None))]
    fn audit_query(&self, py: Python<'_>, ctx: Ctx, query: Option<String>) -> PyResult<String> {
        self.run(py, ctx, |v, c| {
            let q = text::log_query(query.as_deref())?;
            let entries = v.audit_query(c, &q)?;
            Ok(text::entries_text(&entries)?.to_string())
        })
    }

    /// Rotates the root key to a new passphrase or raw key (one header write); returns
    /// the number of keys rewrapped (the vault secret and key-encryption key(s)).
    #[pyo3(signature = (ctx, passphrase=None, key=None, kdf=None))]
    fn rotate_root_key(
        &self,
        py: Python<'_>,
        ctx: Ctx,
        passphrase: Option<String>,
        key: Option<&[u8]>,
        kdf: Option<(u32, u32, u32)>,
    ) -> PyResult<u64> {
        let key = key_source(passphrase, key)?;
        let params = kdf_params(kdf);
        self.run(py, ctx, |v, c| {
            Ok(v.rotate_root_key(c, key, params, &mut |_| {})?)
        })
    }

    /// Rotates data keys (of `subjects`, or all); returns (subjects, records) rotated.
    #[pyo3(signature = (ctx, subjects=None))]
    fn rotate_data_keys(
        &self,
        py: Python<'_>,
        ctx: Ctx,
        subjects: Option<Vec<String>>,
    ) -> PyResult<(u64, u64)> {
        let scope = subjects.map_or(RotationScope::All, RotationScope::Subjects);
        self.run(py, ctx, |v, c| {
            let r = v.rotate_data_keys(c, &scope, &mut |_| {})?;
            Ok((r.subjects, r.records))
        })
    }

    /// Imports FHIR R4 resources from a file or directory; returns a JSON report.
    fn import_fhir(&self, py: Python<'_>, ctx: Ctx, path: PathBuf) -> PyResult<String> {
        self.run(py, ctx, |v, c| Ok(text::import_fhir(v, c, path)?))
    }

    /// Number of access-log entries (not logged).
    fn log_len(&self) -> PyResult<u64> {
        Ok(self.vault()?.log_len())
    }
}

/// The JSON text of the default clinic policy (docs/POLICY.md).
#[pyfunction]
fn default_policy() -> String {
    text::default_policy_text()
}

/// The extension module `medvault._native`.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeVault>()?;
    m.add_function(wrap_pyfunction!(default_policy, m)?)?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
