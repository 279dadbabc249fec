//! Where a vault lives: a directory (sled) or, with the `postgres` feature, a
//! `postgres://` URL (medvault-postgres, docs/POSTGRES.md). Every command takes either
//! where it takes a vault; this module is the one place that tells them apart.

use std::path::Path;

use medvault::{KeySource, Vault, VaultOptions};

use crate::exit::{CliResult, Failure};

/// The URL when `path` is a `postgres://` or `postgresql://` URL.
pub fn url(path: &Path) -> Option<&str> {
    path.to_str()
        .filter(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// How `path` is shown in messages: a URL without its password (`user:***@`).
pub fn shown(path: &Path) -> String {
    match url(path) {
        Some(u) => redact(u),
        None => path.display().to_string(),
    }
}

/// `u` with the password of its user info replaced by `***`.
fn redact(u: &str) -> String {
    let Some((scheme, rest)) = u.split_once("://") else {
        return u.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}{}", &rest[at..])
        }
        None => u.to_owned(),
    }
}

/// Creates the vault at `path` (directory or URL).
pub fn create(
    path: &Path,
    key: KeySource,
    options: VaultOptions,
) -> CliResult<medvault::Result<Vault>> {
    match url(path) {
        None => Ok(Vault::create_with(path, key, options)),
        Some(u) => pg_create(u, key, options),
    }
}

/// Opens the vault at `path` (directory or URL).
pub fn open(
    path: &Path,
    key: KeySource,
    options: VaultOptions,
) -> CliResult<medvault::Result<Vault>> {
    match url(path) {
        None => Ok(Vault::open_with(path, key, options)),
        Some(u) => pg_open(u, key, options),
    }
}

#[cfg(feature = "postgres")]
fn pg_create(u: &str, key: KeySource, options: VaultOptions) -> CliResult<medvault::Result<Vault>> {
    Ok(medvault_postgres::create_with(u, key, options))
}

#[cfg(feature = "postgres")]
fn pg_open(u: &str, key: KeySource, options: VaultOptions) -> CliResult<medvault::Result<Vault>> {
    Ok(medvault_postgres::open_with(u, key, options))
}

#[cfg(not(feature = "postgres"))]
fn pg_create(_: &str, _: KeySource, _: VaultOptions) -> CliResult<medvault::Result<Vault>> {
    Err(no_postgres())
}

#[cfg(not(feature = "postgres"))]
fn pg_open(_: &str, _: KeySource, _: VaultOptions) -> CliResult<medvault::Result<Vault>> {
    Err(no_postgres())
}

#[cfg(not(feature = "postgres"))]
fn no_postgres() -> Failure {
    Failure::usage("this medvault was built without PostgreSQL support (cargo feature `postgres`)")
}

/// Every byte the vault's tables at `u` hold, one row after another (the server's view,
/// for the demo's plaintext scan), written to `out`.
#[cfg(feature = "postgres")]
pub fn server_view(u: &str, out: &Path) -> CliResult {
    let bytes = medvault_postgres::server_view(u).map_err(|e| Failure::other(e.to_string()))?;
    std::fs::write(out, bytes)?;
    Ok(())
}

/// Without the `postgres` feature: a usage error.
#[cfg(not(feature = "postgres"))]
pub fn server_view(_: &str, _: &Path) -> CliResult {
    Err(no_postgres())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths_and_shown_without_password() {
        assert_eq!(url(Path::new("/var/v")), None);
        assert!(url(Path::new("postgres://h/db")).is_some());
        assert_eq!(
            redact("postgres://me:secret@h:5432/db?vault=a"),
            "postgres://me:***@h:5432/db?vault=a"
        );
        assert_eq!(redact("postgresql://me@h/db"), "postgresql://me@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
