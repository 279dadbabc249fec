//! C2SP `signed-note` (v1.0.0) with Ed25519 signatures (signature type 0x01), the format of
//! Go's `golang.org/x/mod/sumdb/note`: a text, a blank line, then lines
//! `— <key name> <base64(key ID || signature)>`. The key ID is the first 4 bytes of
//! SHA-256(key name || 0x0A || 0x01 || public key). Signatures are Ed25519 (RFC 8032) over
//! the text bytes; verification is strict (ed25519-dalek `verify_strict`).

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::hash::Hash;

/// Signature type byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;
/// U+2014 EM DASH and a space: the start of every signature line.
const SIG_PREFIX: &str = "\u{2014} ";
/// Largest note accepted, in bytes (a checkpoint is about 200).
pub(crate) const MAX_NOTE: usize = 64 * 1024;
/// Most signature lines accepted, as Go's note package.
const MAX_SIGNATURES: usize = 100;

pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

/// Canonical standard base64 (RFC 4648 section "Base 64 Encoding") of exactly 32 bytes.
pub(crate) fn b64_decode_hash(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    match Base64::decode(s, &mut out) {
        Ok(d) if d.len() == 32 => Some(out),
        _ => None,
    }
}

/// ASCII decimal without sign, spaces or leading zeros ("0" alone is fine), fitting u64.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// A key name per signed-note: non-empty, no Unicode white space, no '+'.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// An Ed25519 note verifier key: a key name (for medvault the checkpoint origin,
/// `medvault/<vault id>`) and the public key. Its text form is Go's verifier key string
/// `<name>+<key ID, 8 lowercase hex>+<base64(0x01 || 32-byte public key)>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl VerifierKey {
    /// The verifier key for `name` and an Ed25519 public key. Fails with
    /// [`Error::Malformed`] if `name` is not a valid note key name.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, Error> {
        if !valid_name(name) {
            return Err(Error::malformed("verifier key", 0, "invalid key name"));
        }
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, key.as_bytes()),
            key,
        })
    }

    /// Parses `<name>+<hex key ID>+<base64 key>` (surrounding white space ignored). Fails
    /// with [`Error::Malformed`] on a bad name, a key ID that is not 8 lowercase hex digits
    /// or does not match the key, a key type other than Ed25519, or an invalid point.
    pub fn parse(text: &str) -> Result<Self, Error> {
        const W: &str = "verifier key";
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::malformed(W, 0, "expected name+keyid+key"));
        };
        if hex.len() != 8 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::malformed(
                W,
                0,
                "key ID is not 8 lowercase hex digits",
            ));
        }
        let mut raw = [0u8; 33];
        let raw = Base64::decode(b64, &mut raw)
            .map_err(|_| Error::malformed(W, 0, "key is not base64"))?;
        let (alg, public) = raw
            .split_first()
            .ok_or(Error::malformed(W, 0, "empty key"))?;
        if *alg != ALG_ED25519 {
            return Err(Error::malformed(W, 0, "not an Ed25519 key"));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| Error::malformed(W, 0, "Ed25519 key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| Error::malformed(W, 0, "not a valid Ed25519 point"))?;
        let vk = Self::new(name, key)?;
        let expected: String = vk.id.iter().map(|b| format!("{b:02x}")).collect();
        if expected != hex {
            return Err(Error::malformed(W, 0, "key ID does not match name and key"));
        }
        Ok(vk)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = [0u8; 33];
        raw[0] = ALG_ED25519;
        raw[1..].copy_from_slice(self.key.as_bytes());
        write!(f, "{}+", self.name)?;
        for b in self.id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "+{}", b64_encode(&raw))
    }
}

/// Signs `text` as a signed note under `key` with key name `name`; returns the note (text,
/// blank line, one signature line). `text` must be non-empty UTF-8 ending in a newline with
/// no blank line and no control character other than newline; `name` a valid key name.
/// Fails with [`Error::Malformed`] otherwise. The key is only borrowed, never kept.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> Result<String, Error> {
    check_text(text)?;
    let vk = VerifierKey::new(name, key.verifying_key())?;
    let sig: Signature = key.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(68);
    blob.extend_from_slice(&vk.id);
    blob.extend_from_slice(&sig.to_bytes());
    Ok(format!(
        "{text}\n{SIG_PREFIX}{name} {}\n",
        b64_encode(&blob)
    ))
}

fn check_text(text: &str) -> Result<(), Error> {
    const W: &str = "note";
    if text.is_empty() || !text.ends_with('\n') {
        return Err(Error::malformed(W, 0, "text does not end with a newline"));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(Error::malformed(W, 0, "text holds an empty line"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::malformed(W, 0, "control character in text"));
    }
    Ok(())
}

/// Opens a signed note: checks its shape (signed-note, "Format"), finds a signature line
/// whose name and key ID are those of `key`, verifies its Ed25519 signature over the text,
/// and returns the text (every line newline-terminated). Lines of other keys (witness
/// cosignatures, a rotated key) are ignored, as the specification requires.
///
/// Fails with [`Error::Malformed`] if the note exceeds 64 KiB or 100 signatures or is not
/// a well-formed note, and with [`Error::Signature`] if no line of `key` verifies.
pub fn open_note<'a>(note: &'a str, key: &VerifierKey) -> Result<&'a str, Error> {
    const W: &str = "note";
    if note.len() > MAX_NOTE {
        return Err(Error::malformed(W, 0, "larger than 64 KiB"));
    }
    let split = note.rfind("\n\n").ok_or(Error::malformed(
        W,
        0,
        "no blank line before the signatures",
    ))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    check_text(text)?;
    let sigs = sigs.strip_suffix('\n').ok_or(Error::malformed(
        W,
        0,
        "signatures do not end with a newline",
    ))?;
    let first_sig_line = text.matches('\n').count() + 2;
    let mut found_key = false;
    for (i, line) in sigs.split('\n').enumerate() {
        let n = first_sig_line + i;
        if i >= MAX_SIGNATURES {
            return Err(Error::malformed(W, n, "more than 100 signatures"));
        }
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(Error::malformed(
            W,
            n,
            "signature line does not start with an em dash",
        ))?;
        let (name, b64) =
            rest.split_once(' ')
                .ok_or(Error::malformed(W, n, "signature line lacks a space"))?;
        if !valid_name(name) {
            return Err(Error::malformed(W, n, "invalid key name"));
        }
        let blob = Base64::decode_vec(b64)
            .map_err(|_| Error::malformed(W, n, "signature is not base64"))?;
        if blob.len() < 5 {
            return Err(Error::malformed(W, n, "signature too short"));
        }
        if name != key.name || blob[..4] != key.id {
            continue; // Another key's signature: ignored (signed-note, "Verifying").
        }
        found_key = true;
        // A line of this key that is not a valid signature fails like a wrong one; another
        // line of the same key may still verify.
        if let Ok(sig) = Signature::from_slice(&blob[4..])
            && key.key.verify_strict(text.as_bytes(), &sig).is_ok()
        {
            return Ok(text);
        }
    }
    Err(Error::Signature(if found_key {
        "the Ed25519 signature does not verify"
    } else {
        "no signature by the given key"
    }))
}
