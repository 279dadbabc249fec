//! A vault's directories are 0700 and its files 0600 whatever the umask, and open warns
//! about entries that group or others may access (issue 21). The umask is set in a child
//! process (`sh -c 'umask N; exec ...'` around this test binary), so no unsafe code and
//! no umask change in the test process; the modes are read back with `std::fs` metadata.
#![cfg(unix)]
// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use medvault::{AccessContext, KeySource, Purpose, RecordKey, Vault};
use serde_json::json;

/// Set by the parent: the child creates its vault here.
const CHILD_DIR: &str = "MEDVAULT_FILE_MODES_DIR";

fn key() -> KeySource {
    KeySource::raw([7; 32])
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every directory and file under `root` (included) with its mode.
fn tree(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    let m = std::fs::symlink_metadata(root).unwrap();
    out.push((root.to_path_buf(), m.is_dir(), mode(root)));
    if m.is_dir() {
        for e in std::fs::read_dir(root).unwrap() {
            out.extend(tree(&e.unwrap().path()));
        }
    }
    out
}

fn assert_private(vault: &Path) {
    let entries = tree(vault);
    assert!(entries.len() >= 4, "{entries:?}"); // dir, header, lock, db/...
    for (p, is_dir, m) in entries {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{} has mode {m:o}", p.display());
    }
}

/// Creates a vault (in `$MEDVAULT_FILE_MODES_DIR/v` when the parent set it, else in a
/// temporary directory under this process's umask), writes, erases (a purge rewrites
/// sled's files) and checks that every entry is owner-only.
#[test]
fn a_new_vault_is_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::env::var_os(CHILD_DIR).map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    let path = base.join("v");
    let v = Vault::create(&path, key(), medvault::danger::insecure_kdf_params()).unwrap();
    let ctx = AccessContext::new("nurse-1", Purpose::Care);
    v.put(
        &ctx,
        &RecordKey::new("p1", "Observation", "o1"),
        &json!({"v": 1}),
    )
    .unwrap();
    v.put(
        &ctx,
        &RecordKey::new("p2", "Observation", "o1"),
        &json!({"v": 2}),
    )
    .unwrap();
    v.erase_subject(&AccessContext::new("dpo", Purpose::PatientRequest), "p2")
        .unwrap();
    drop(v);
    assert_private(&path);
}

#[test]
fn modes_do_not_follow_the_umask() {
    let exe = std::env::current_exe().unwrap();
    for umask in ["022", "000", "077"] {
        let tmp = tempfile::tempdir().unwrap();
        let out = Command::new("sh")
            .arg("-c")
            // `control` shows the umask took effect in the child.
            .arg(format!("umask {umask} && : > \"$0/control\" && exec \"$1\" --exact a_new_vault_is_owner_only --test-threads=1"))
            .arg(tmp.path())
            .arg(&exe)
            .env(CHILD_DIR, tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "umask {umask}: child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "umask {umask}: the child test did not run"
        );
        let umask_bits = u32::from_str_radix(umask, 8).unwrap();
        assert_eq!(mode(&tmp.path().join("control")), 0o666 & !umask_bits);
        assert_private(&tmp.path().join("v"));
    }
}

#[test]
fn open_warns_about_entries_others_can_read_and_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("v");
    drop(Vault::create(&path, key(), medvault::danger::insecure_kdf_params()).unwrap());
    let v = Vault::open(&path, key()).unwrap();
    assert!(v.warnings().is_empty(), "{:?}", v.warnings());
    drop(v);
    let set =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    set(&path, 0o755);
    set(&path.join("header"), 0o644);
    let v = Vault::open(&path, key()).unwrap();
    let w = v.warnings().to_vec();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter()
            .any(|s| s.contains(&format!("{} is", path.display())) && s.contains("755")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|s| s.contains("header") && s.contains("644")),
        "{w:?}"
    );
    // Open reports; it does not change what the operator set.
    assert_eq!(mode(&path.join("header")), 0o644);
}
