//! Outputs that appear whole or not at all, and never interleave.
//!
//! Everything is written under a unique hidden temporary name beside the
//! target (made by the `tempfile` crate, so two writers of the same target —
//! two processes, or two threads of one — never share a temporary) and
//! renamed into place only when complete. If the writer is dropped before
//! [`AtomicDir::commit`] / [`AtomicFile::commit`] (an error, a panic, an
//! interrupt handled by the caller) the temporary is removed; a hard kill
//! leaves at most a `.<name>.tmp-XXXXXX` entry, never a half-written target.
//!
//! [`OutputLock`] adds an advisory lock on a target, so that a second
//! command writing the same `--out` stops at once instead of racing the
//! first.

use crate::error::CheckpointError;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The directory a target lives in (`.` for a bare name).
fn parent_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.<name>.<what>-` for a target, the prefix of its temporaries.
fn hidden_prefix(target: &Path, what: &str) -> Result<String, CheckpointError> {
    let name = target.file_name().ok_or_else(|| CheckpointError::Io {
        path: target.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
    })?;
    Ok(format!(".{}.{what}-", name.to_string_lossy()))
}

/// A builder for temporaries beside `target`, with the permissions an
/// ordinary `create` would give (the umask applies), not tempfile's 0600.
fn builder(prefix: &str, dir: bool) -> tempfile::Builder<'_, '_> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(fs::Permissions::from_mode(if dir { 0o777 } else { 0o666 }));
    }
    #[cfg(not(unix))]
    let _ = dir;
    b
}

/// A directory built under a temporary name and renamed into place on commit.
#[derive(Debug)]
pub struct AtomicDir {
    target: PathBuf,
    temp: Option<tempfile::TempDir>,
    overwrite: bool,
}

impl AtomicDir {
    /// Start building `target`. Fails if `target` exists and `overwrite` is false.
    pub fn create(target: impl AsRef<Path>, overwrite: bool) -> Result<AtomicDir, CheckpointError> {
        let target = target.as_ref().to_path_buf();
        if target.exists() && !overwrite {
            return Err(CheckpointError::OutputExists { path: target });
        }
        let parent = parent_of(&target);
        // The library creates missing parents, as it always has (the study
        // writes into fresh work directories); the CLI refuses a missing
        // parent itself (`require_parent`), where it signals a typo.
        fs::create_dir_all(&parent).map_err(CheckpointError::io(&parent))?;
        let temp = builder(&hidden_prefix(&target, "tmp")?, true)
            .tempdir_in(&parent)
            .map_err(CheckpointError::io(&parent))?;
        Ok(AtomicDir {
            target,
            temp: Some(temp),
            overwrite,
        })
    }

    /// Where files go until commit.
    pub fn path(&self) -> &Path {
        self.temp
            .as_ref()
            .expect("temp present until commit")
            .path()
    }

    /// The final path, where the directory appears on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Rename the finished directory into place (replacing an existing one only
    /// if `overwrite` was given: the old one is moved aside first, then removed).
    pub fn commit(mut self) -> Result<PathBuf, CheckpointError> {
        let temp = self.temp.take().expect("temp present until commit");
        if self.target.exists() {
            if !self.overwrite {
                return Err(CheckpointError::OutputExists {
                    path: self.target.clone(),
                });
            }
            // The old output goes into a fresh temporary directory of its
            // own, which removes it (or, on failure, nothing) when dropped.
            let parent = parent_of(&self.target);
            let aside = builder(&hidden_prefix(&self.target, "old")?, true)
                .tempdir_in(&parent)
                .map_err(CheckpointError::io(&parent))?;
            let old = aside.path().join("previous");
            fs::rename(&self.target, &old).map_err(CheckpointError::io(&self.target))?;
            if let Err(e) = fs::rename(temp.path(), &self.target) {
                // Put the previous output back: a failed commit changes nothing.
                let _ = fs::rename(&old, &self.target);
                return Err(CheckpointError::io(&self.target)(e));
            }
            aside.close().map_err(CheckpointError::io(&old))?;
        } else {
            fs::rename(temp.path(), &self.target).map_err(CheckpointError::io(&self.target))?;
        }
        // Renamed away: nothing is left at the temporary path to clean up.
        let _ = temp.keep();
        Ok(self.target.clone())
    }
}

/// A file written under a temporary name and renamed into place on commit.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    writer: Option<BufWriter<tempfile::NamedTempFile>>,
}

impl AtomicFile {
    /// Start writing `target` (an existing file is replaced on commit).
    pub fn create(target: impl AsRef<Path>) -> Result<AtomicFile, CheckpointError> {
        let target = target.as_ref().to_path_buf();
        let parent = parent_of(&target);
        fs::create_dir_all(&parent).map_err(CheckpointError::io(&parent))?;
        let file = builder(&hidden_prefix(&target, "tmp")?, false)
            .tempfile_in(&parent)
            .map_err(CheckpointError::io(&parent))?;
        Ok(AtomicFile {
            target,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The final path, where the file appears on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flush, sync and rename into place. On failure the temporary file is
    /// removed and the target is left as it was.
    pub fn commit(mut self) -> Result<PathBuf, CheckpointError> {
        let writer = self.writer.take().expect("writer present until commit");
        let file = writer.into_inner().map_err(|e| CheckpointError::Io {
            path: self.target.clone(),
            source: e.into_error(),
        })?;
        file.as_file()
            .sync_all()
            .map_err(CheckpointError::io(file.path()))?;
        // On error the NamedTempFile inside is dropped, which removes it.
        file.persist(&self.target)
            .map_err(|e| CheckpointError::io(&self.target)(e.error))?;
        Ok(self.target.clone())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .flush()
    }
}

/// Write `bytes` to `target` atomically.
pub fn write_file_atomic(target: impl AsRef<Path>, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut f = AtomicFile::create(target)?;
    f.write_all(bytes)
        .map_err(CheckpointError::io(f.target().to_path_buf()))?;
    f.commit()?;
    Ok(())
}

/// An advisory lock on an output path, held until dropped: a lock file
/// `.<name>.lock` beside the target, locked exclusively with the operating
/// system's file lock (`flock(2)` on Unix). A second writer of the same target gets
/// [`CheckpointError::OutputLocked`] at once. The lock file is removed on drop.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    /// Holds the lock while open.
    _file: File,
}

impl OutputLock {
    /// Lock `target` for writing (it need not exist yet; its parent must).
    pub fn acquire(target: impl AsRef<Path>) -> Result<OutputLock, CheckpointError> {
        let target = target.as_ref();
        let name = hidden_prefix(target, "lock")?;
        let path = parent_of(target).join(name.trim_end_matches('-'));
        loop {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(CheckpointError::io(&path))?;
            match try_lock(&file) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(CheckpointError::OutputLocked {
                        path: target.to_path_buf(),
                        lock: path,
                    })
                }
                Err(e) => return Err(CheckpointError::io(&path)(e)),
            }
            // The holder before us may have removed the lock file between our
            // open and our lock: then we hold a lock on an unlinked file, and
            // must start again on the file now at the path.
            if same_file(&file, &path) {
                recover_stale(target);
                return Ok(OutputLock { path, _file: file });
            }
        }
    }
}

/// Characters of the random part of a `tempfile` name (its default).
const RANDOM_CHARS: usize = 6;

/// What a hard-killed writer of `target` left beside it, cleaned up by the
/// next writer once it holds the lock (every writer of a locked target
/// takes it, so no living writer owns these). A previous output that a
/// killed `--overwrite` had moved aside (`.<name>.old-XXXXXX/previous`,
/// between the two renames of [`AtomicDir::commit`]) is put back when the
/// target is missing; stale `.<name>.tmp-XXXXXX`, `.<name>.old-XXXXXX`
/// and delta-file temporaries (`.<name>.XXXXXX[.data].tmp`) are removed. Only names with exactly tempfile's random suffix
/// match, so `.a.tmp-x.tmp-XXXXXX` (a temporary of `a.tmp-x`) is not
/// taken for one of `a`'s. Best effort: a failure leaves the entry as it was.
fn recover_stale(target: &Path) {
    let parent = parent_of(target);
    let (Ok(tmp), Ok(old)) = (hidden_prefix(target, "tmp"), hidden_prefix(target, "old")) else {
        return;
    };
    let Ok(entries) = fs::read_dir(&parent) else {
        return;
    };
    let is_temp = |name: &str, prefix: &str| {
        name.strip_prefix(prefix).is_some_and(|rest| {
            rest.len() == RANDOM_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    };
    // delta-quant's delta-file writer names its temporaries
    // `.<name>.XXXXXX.data.tmp` and `.<name>.XXXXXX.tmp`.
    let dotted = format!(
        ".{}.",
        target.file_name().unwrap_or_default().to_string_lossy()
    );
    let is_delta_temp = |name: &str| {
        name.strip_prefix(&dotted).is_some_and(|rest| {
            [".data.tmp", ".tmp"].iter().any(|suffix| {
                rest.strip_suffix(suffix).is_some_and(|r| {
                    r.len() == RANDOM_CHARS && r.bytes().all(|b| b.is_ascii_alphanumeric())
                })
            })
        })
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let path = entry.path();
        if is_temp(&name, &old) {
            let previous = path.join("previous");
            if !target.exists() && previous.exists() {
                let _ = fs::rename(&previous, target);
            }
            let _ = fs::remove_dir_all(&path);
        } else if is_temp(&name, &tmp) || is_delta_temp(&name) {
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

/// An exclusive, non-blocking `flock(2)`: `Ok(false)` when another open file
/// holds it. Released when the file is closed.
#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a valid, open descriptor owned by `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// No advisory lock off Unix: the unique temporaries still keep writers apart.
#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Remove while still holding the lock, so a waiter that opened the
        // old file notices (see `acquire`) and a new one creates a fresh file.
        // Closing `file` (dropped with `self`) releases the lock.
        let _ = fs::remove_file(&self.path);
    }
}
