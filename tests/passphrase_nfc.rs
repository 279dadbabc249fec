//! Passphrases are normalized to Unicode NFC before Argon2id (issue "exact fidelity"):
//! a vault created with a passphrase typed in composed form opens with the same
//! passphrase typed in decomposed form, and the other way round; a different passphrase
//! still fails; raw keys are used as given.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

use medvault::{Error, KeySource, Passphrase, Vault};
use unicode_normalization::UnicodeNormalization;

/// "Ångström café Ǆ 한국" in NFC, and its NFD built by an independent normalizer pass.
const COMPOSED: &str = "\u{c5}ngstr\u{f6}m caf\u{e9} \u{1c4} \u{d55c}\u{ad6d}";

#[test]
fn nfc_and_nfd_forms_open_the_same_vault() {
    let decomposed: String = COMPOSED.nfd().collect();
    assert_ne!(decomposed.as_bytes(), COMPOSED.as_bytes());
    assert!(decomposed.contains('\u{301}') || decomposed.contains('\u{30a}'));
    for (create_with, open_with) in [
        (COMPOSED, decomposed.as_str()),
        (decomposed.as_str(), COMPOSED),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        let v = Vault::create(
            &path,
            KeySource::passphrase(create_with),
            medvault::danger::insecure_kdf_params(),
        )
        .unwrap();
        drop(v);
        Vault::open(&path, KeySource::passphrase(open_with)).unwrap();
        // Compatibility forms are not folded: NFKC would change the passphrase.
        let nfkc: String = COMPOSED.nfkc().collect();
        assert!(matches!(
            Vault::open(&path, KeySource::passphrase(nfkc)),
            Err(Error::WrongKey)
        ));
    }
}

#[test]
fn the_passphrase_is_held_in_nfc() {
    let decomposed: String = COMPOSED.nfd().collect();
    assert_eq!(
        Passphrase::new(decomposed).expose_secret(),
        COMPOSED.as_bytes()
    );
    assert_eq!(
        Passphrase::new(COMPOSED).expose_secret(),
        COMPOSED.as_bytes()
    );
}
