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

use crate::exit::{CliResult, Code, Failure};

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

/// Which key sources a command needs (see [`missing_keys`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyNeed {
    /// The key of an existing vault.
    Open,
    /// The key of a new vault (`init`).
    Create,
    /// The key of an existing vault and its next one (`rotate root`).
    OpenAndNext,
}

/// The key sources `need` asks for that are neither set nor promptable (no terminal),
/// each described with the variables that provide it; empty when all can be had.
pub fn missing_keys(need: KeyNeed) -> Vec<String> {
    let can_prompt = std::io::stdin().is_terminal() || std::io::stderr().is_terminal();
    let set = |vars: &[&str]| {
        vars.iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    };
    let mut missing = Vec::new();
    if can_prompt {
        return missing;
    }
    let current = [KEY_FILE, PASSPHRASE];
    match need {
        KeyNeed::Open | KeyNeed::OpenAndNext if !set(&current) => missing.push(
            "a passphrase source (MEDVAULT_PASSPHRASE or MEDVAULT_KEY_FILE; there is no \
             terminal to ask on)"
                .to_owned(),
        ),
        KeyNeed::Create if !set(&[NEW_KEY_FILE, KEY_FILE, NEW_PASSPHRASE, PASSPHRASE]) => missing
            .push(
                "a passphrase source for the new vault (MEDVAULT_PASSPHRASE or \
                 MEDVAULT_KEY_FILE; there is no terminal to ask on)"
                    .to_owned(),
            ),
        _ => {}
    }
    if need == KeyNeed::OpenAndNext && !set(&[NEW_KEY_FILE, NEW_PASSPHRASE]) {
        missing.push(
            "a new passphrase source (MEDVAULT_NEW_PASSPHRASE or MEDVAULT_NEW_KEY_FILE; there \
             is no terminal to ask on)"
                .to_owned(),
        );
    }
    missing
}

/// The key of a new vault (`init`). A passphrase is checked by [`check_strength`]
/// against `context` (words a guesser would try first: the vault's name, the actor).
pub fn initial_key(allow_weak: bool, context: &[&str]) -> CliResult<KeySource> {
    for var in [NEW_KEY_FILE, KEY_FILE] {
        if let Some(k) = key_file(var)? {
            return Ok(k);
        }
    }
    let p = match env_secret(NEW_PASSPHRASE).or_else(|| env_secret(PASSPHRASE)) {
        Some(p) => p,
        None => prompt(
            "New passphrase: ",
            true,
            "MEDVAULT_PASSPHRASE or MEDVAULT_KEY_FILE",
        )?,
    };
    check_strength(&p, allow_weak, context)?;
    Ok(KeySource::passphrase(p.as_str()))
}

/// The next root key (`rotate root`), a passphrase checked like [`initial_key`]'s.
pub fn next_root_key(allow_weak: bool, context: &[&str]) -> CliResult<KeySource> {
    if let Some(k) = key_file(NEW_KEY_FILE)? {
        return Ok(k);
    }
    let p = match env_secret(NEW_PASSPHRASE) {
        Some(p) => p,
        None => prompt(
            "New passphrase: ",
            true,
            "MEDVAULT_NEW_PASSPHRASE or MEDVAULT_NEW_KEY_FILE",
        )?,
    };
    check_strength(&p, allow_weak, context)?;
    Ok(KeySource::passphrase(p.as_str()))
}

/// zxcvbn score (0 to 4) at or below which a new passphrase is refused: score 1 means
/// about a million guesses or fewer, a few days of one core even at the default Argon2id
/// cost, and far less on a cluster.
const REFUSED_AT_OR_BELOW: u8 = 1;
/// zxcvbn score at or below which a new passphrase draws a warning (about 10^8 guesses).
const WARNED_AT_OR_BELOW: u8 = 2;

/// Estimates the strength of a new passphrase with zxcvbn (Dropbox's estimator: the
/// guesses a cracker needs, from dictionaries, keyboard patterns, dates, repeats and the
/// `context` words) and refuses a very weak one with [`Code::WeakPassphrase`] unless
/// `allow_weak`; warns on stderr about a weak one. The messages name the score and
/// zxcvbn's feedback, never the passphrase.
pub fn check_strength(passphrase: &str, allow_weak: bool, context: &[&str]) -> CliResult {
    let estimate = zxcvbn::zxcvbn(passphrase, context);
    let score = u8::from(estimate.score());
    if score > WARNED_AT_OR_BELOW {
        return Ok(());
    }
    let mut why = format!(
        "zxcvbn score {score} of 4, about 10^{:.1} guesses",
        estimate.guesses_log10()
    );
    if let Some(w) = estimate.feedback().and_then(|f| f.warning()) {
        why.push_str(&format!(": {}", w.to_string().trim_end_matches('.')));
    }
    if score <= REFUSED_AT_OR_BELOW && !allow_weak {
        return Err(Failure::new(
            Code::WeakPassphrase,
            format!(
                "the new passphrase is too weak to protect a vault ({why}); choose a longer one \
                 (e.g. four or more unrelated words), or pass --allow-weak-passphrase to insist"
            ),
        ));
    }
    eprintln!(
        "medvault: warning: the new passphrase is weak ({why}); a stolen vault is cheaper to attack"
    );
    Ok(())
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
