//! Owner-only files and directories for file-backed storage, whatever the process's
//! umask: directories `0700`, files `0600` (on Unix; elsewhere these are plain
//! `create_dir_all` / `File::create` and the checks find nothing). Every file a backend
//! creates inside a vault directory goes through [`create_private_dir`] and
//! [`create_private_file`]; what a third-party engine creates on its own (sled's files
//! under `db/`) is brought to the same modes by [`restrict_tree`]. A vault opened with
//! entries that group or others may access is reported by [`exposed_entries`] (and so by
//! `Vault::warnings`), not silently changed: the operator decides.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Mode of every directory of a vault (owner only: `rwx------`).
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of every file of a vault (owner only: `rw-------`).
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `path` and any missing parents, then sets `path` itself to
/// [`PRIVATE_DIR_MODE`] (also when it already existed: a vault directory is the
/// owner's). Parents that had to be created get the same mode.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR_MODE)
            .create(path)?;
        set_mode(path, PRIVATE_DIR_MODE)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(path)
    }
}

/// Creates (or truncates) the file at `path` for writing, with mode
/// [`PRIVATE_FILE_MODE`] whatever the umask (an existing file is set to it too).
pub fn create_private_file(path: &Path) -> io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    open_private(&o, path)
}

/// Opens `path` with `options`, creating it with mode [`PRIVATE_FILE_MODE`] when
/// `options` create it, and setting that mode on the file opened.
pub fn open_private(options: &fs::OpenOptions, path: &Path) -> io::Result<fs::File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut o = options.clone();
        o.mode(PRIVATE_FILE_MODE);
        let f = o.open(path)?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
            PRIVATE_FILE_MODE,
        ))?;
        Ok(f)
    }
    #[cfg(not(unix))]
    {
        options.open(path)
    }
}

/// Sets every directory under `root` (included) to [`PRIVATE_DIR_MODE`] and every
/// regular file to [`PRIVATE_FILE_MODE`]; symlinks are not followed. For files another
/// engine created with the umask's modes.
pub fn restrict_tree(root: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let m = fs::symlink_metadata(root)?;
        if m.is_dir() {
            set_mode(root, PRIVATE_DIR_MODE)?;
            for entry in fs::read_dir(root)? {
                restrict_tree(&entry?.path())?;
            }
        } else if m.is_file() {
            set_mode(root, PRIVATE_FILE_MODE)?;
        }
    }
    #[cfg(not(unix))]
    let _ = root;
    Ok(())
}

/// The entries under `root` (included; symlinks not followed) that group or others may
/// read, write or enter (`mode & 0o077 != 0`), with their modes; empty on non-Unix.
pub fn exposed_entries(root: &Path) -> io::Result<Vec<(PathBuf, u32)>> {
    let mut out = Vec::new();
    #[cfg(unix)]
    walk_exposed(root, &mut out)?;
    #[cfg(not(unix))]
    let _ = root;
    Ok(out)
}

#[cfg(unix)]
fn walk_exposed(path: &Path, out: &mut Vec<(PathBuf, u32)>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let m = fs::symlink_metadata(path)?;
    let mode = m.permissions().mode() & 0o7777;
    if (m.is_dir() || m.is_file()) && mode & 0o077 != 0 {
        out.push((path.to_path_buf(), mode));
    }
    if m.is_dir() {
        for entry in fs::read_dir(path)? {
            walk_exposed(&entry?.path(), out)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}
