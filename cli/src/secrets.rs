//! Where the root key comes from: MEDVAULT_KEY_FILE (a raw 256-bit key from a KMS: 32
//! raw bytes or 64 hex characters), MEDVAULT_PASSPHRASE, or a no-echo prompt on the
//! terminal. Never from the command line, where `ps` and shell history would show it.
//! A new key for `init` and `rotate root` comes from MEDVAULT_NEW_KEY_FILE,
//! MEDVAULT_NEW_PASSPHRASE or a prompt asked twice (`init` also reads the unprefixed
//! variables, since the key it sets is the vault's only one).

use std::io::IsTerminal;
use std::path::Path;

use medvault::{KdfParams, KeySource};
use zeroize::Zeroizing;

use crate::exit::{CliResult, Failure};

const KEY_FILE: &str = "MEDVAULT_KEY_FILE";
const PASSPHRASE: &str = "MEDVAULT_PASSPHRASE";
const NEW_KEY_FILE: &str = "MEDVAULT_NEW_KEY_FILE";
const NEW_PASSPHRASE: &str = "MEDVAULT_NEW_PASSPHRASE";
/// A key file larger than this is not a key.
const MAX_KEY_FILE: u64 = 1024;

/// The key that opens an existing vault.
pub fn root_key(vault: &Path) -> CliResult<KeySource> {
    if let Some(k) = key_file(KEY_FILE)? {
        return Ok(k);
    }
    if let Some(p) = env_secret(PASSPHRASE) {
        return Ok(KeySource::passphrase(p.as_str()));
    }
    let p = prompt(
        &format!("Passphrase for {}: ", vault.display()),
        false,
        "MEDVAULT_PASSPHRASE or MEDVAULT_KEY_FILE",
    )?;
    Ok(KeySource::passphrase(p.as_str()))
}

/// The key of a new vault (`init`).
pub fn initial_key() -> CliResult<KeySource> {
    for var in [NEW_KEY_FILE, KEY_FILE] {
        if let Some(k) = key_file(var)? {
            return Ok(k);
        }
    }
    if let Some(p) = env_secret(NEW_PASSPHRASE).or_else(|| env_secret(PASSPHRASE)) {
        return Ok(KeySource::passphrase(p.as_str()));
    }
    let p = prompt(
        "New passphrase: ",
        true,
        "MEDVAULT_PASSPHRASE or MEDVAULT_KEY_FILE",
    )?;
    Ok(KeySource::passphrase(p.as_str()))
}

/// The next root key (`rotate root`).
pub fn next_root_key() -> CliResult<KeySource> {
    if let Some(k) = key_file(NEW_KEY_FILE)? {
        return Ok(k);
    }
    if let Some(p) = env_secret(NEW_PASSPHRASE) {
        return Ok(KeySource::passphrase(p.as_str()));
    }
    let p = prompt(
        "New passphrase: ",
        true,
        "MEDVAULT_NEW_PASSPHRASE or MEDVAULT_NEW_KEY_FILE",
    )?;
    Ok(KeySource::passphrase(p.as_str()))
}

fn env_secret(name: &str) -> Option<Zeroizing<String>> {
    std::env::var(name)
        .ok()
        .map(Zeroizing::new)
        .filter(|p| !p.is_empty())
}

/// Reads a raw key from the file named by the variable `var`, if set.
fn key_file(var: &str) -> CliResult<Option<KeySource>> {
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let bad = |why: &str| Failure::usage(format!("{var}: {why}"));
    // Bounded read: metadata says 0 bytes for /dev/zero or a pipe, which never end.
    let mut bytes = Zeroizing::new(Vec::new());
    std::fs::File::open(&path)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_KEY_FILE + 1), &mut bytes)
        })
        .map_err(|e| bad(&format!("cannot read the key file: {e}")))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(bad(
            "not a key file (expected 32 raw bytes or 64 hex characters)",
        ));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() == 32 {
        key.copy_from_slice(&bytes);
    } else {
        let text = bytes.trim_ascii();
        if text.len() != 64 {
            return Err(bad("expected 32 raw bytes or 64 hex characters"));
        }
        for (i, pair) in text.chunks(2).enumerate() {
            key[i] = (hex_digit(pair[0]).ok_or_else(|| bad("not hexadecimal"))? << 4)
                | hex_digit(pair[1]).ok_or_else(|| bad("not hexadecimal"))?;
        }
    }
    Ok(Some(KeySource::raw(*key)))
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Asks on the terminal without echo; twice when `confirm`.
fn prompt(question: &str, confirm: bool, variables: &str) -> CliResult<Zeroizing<String>> {
    if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
        return Err(Failure::usage(format!(
            "no passphrase: set {variables} (there is no terminal to ask on)"
        )));
    }
    let read = |q: &str| {
        rpassword::prompt_password(q)
            .map(Zeroizing::new)
            .map_err(|e| Failure::usage(format!("cannot read the passphrase: {e}")))
    };
    let first = read(question)?;
    if first.is_empty() {
        return Err(Failure::usage("empty passphrase"));
    }
    if confirm {
        let again = read("Repeat the passphrase: ")?;
        if *again != *first {
            return Err(Failure::usage("the two passphrases differ"));
        }
    }
    Ok(first)
}

/// Argon2id parameters from MiB/passes/lanes; warns on stderr when they are weaker than
/// both recommendations of RFC 9106 §4 (2 GiB with 1 pass, or 64 MiB with 3 passes).
pub fn kdf_params(memory_mib: u32, iterations: u32, lanes: u32) -> CliResult<KdfParams> {
    let memory_kib = memory_mib
        .checked_mul(1024)
        .ok_or_else(|| Failure::usage("--kdf-memory is too large"))?;
    let p = KdfParams {
        memory_kib,
        iterations,
        lanes,
    };
    p.check().map_err(|e| Failure::usage(e.to_string()))?;
    let strong = (memory_mib >= 2048 && iterations >= 1) || (memory_mib >= 64 && iterations >= 3);
    if !strong {
        eprintln!(
            "medvault: warning: Argon2id m={memory_mib} MiB, t={iterations} is below the RFC 9106 \
             recommendations (m=64 MiB t=3, or m=2 GiB t=1); a stolen vault is cheaper to attack"
        );
    }
    Ok(p)
}
