//! `init` and `stats`: creating a vault and describing one.

use std::path::Path;

use medvault::{KeySource, VaultOptions};

use crate::access;
use crate::args::{AccessArgs, KdfArgs};
use crate::exit::{CliResult, Code, Failure};
use crate::secrets;

/// `medvault init VAULT`: a new vault under a passphrase (Argon2id) or a raw key.
pub fn init(path: &Path, kdf: KdfArgs, args: &AccessArgs) -> CliResult {
    let ctx = access::context_for(args, secrets::KeyNeed::Create)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = secrets::initial_key(kdf.allow_weak_passphrase, &[&name, &ctx.actor, "medvault"])?;
    let kdf_params = match key {
        KeySource::Passphrase(_) => {
            secrets::kdf_params(kdf.kdf_memory, kdf.kdf_iterations, kdf.kdf_lanes)?
        }
        // No KDF runs for a raw key; the parameters are not used.
        _ => medvault::KdfParams::default(),
    };
    let raw = matches!(key, KeySource::Raw(_));
    let options = VaultOptions {
        kdf: kdf_params,
        opener: ctx,
        ..VaultOptions::default()
    };
    let shown = crate::backend::shown(path);
    let vault = crate::backend::create(path, key, options)?.map_err(|e| {
        let mut f = Failure::from(e);
        if f.code == Code::InUse && crate::backend::url(path).is_none() {
            f.message.push_str(&access::lock_holder_hint(path));
        }
        f.context(format!("init {shown}"))
    })?;
    let how = if raw {
        "a raw root key".to_owned()
    } else {
        format!(
            "a passphrase (Argon2id m={} MiB, t={}, p={})",
            kdf.kdf_memory, kdf.kdf_iterations, kdf.kdf_lanes
        )
    };
    crate::outln!(
        "created vault {} (id {}) protected by {how}",
        shown,
        hex(vault.vault_id().as_bytes())
    )?;
    Ok(())
}

/// `medvault stats VAULT`: counts and sizes, no patient data.
pub fn stats(path: &Path, json: bool, args: &AccessArgs) -> CliResult {
    let (_, vault) = access::open(path, args)?;
    let s = vault.stats()?;
    if json {
        let text = serde_json::to_string(&s).map_err(|e| Failure::other(e.to_string()))?;
        crate::outln!("{text}")?;
    } else {
        let rows = [
            ("subjects", s.subjects.to_string()),
            ("records", s.records.to_string()),
            ("access-log entries", s.log_entries.to_string()),
            (
                "size on disk",
                format!(
                    "{} ({} bytes)",
                    crate::human::bytes(s.disk_bytes),
                    s.disk_bytes
                ),
            ),
            ("root-key generation", s.root_generation.to_string()),
        ]
        .map(|(k, v)| vec![k.to_owned(), v]);
        crate::human::table(&mut crate::output::stdout(), &["FIGURE", "VALUE"], &rows)?;
    }
    Ok(())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
