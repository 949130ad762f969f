//! Outputs that appear whole or not at all.
//!
//! Everything is written under a hidden temporary name beside the target and
//! renamed into place only when complete. If the writer is dropped before
//! [`AtomicDir::commit`] / [`AtomicFile::commit`] (an error, a panic, an
//! interrupt handled by the caller) the temporary is removed; a hard kill
//! leaves at most a `.<name>.tmp-<pid>` entry, never a half-written target.

use crate::error::CheckpointError;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

fn temp_sibling(target: &Path) -> Result<PathBuf, CheckpointError> {
    let name = target
        .file_name()
        .ok_or_else(|| CheckpointError::Io {
            path: target.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
        })?
        .to_string_lossy();
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(".{name}.tmp-{}", std::process::id())))
}

/// A directory built under a temporary name and renamed into place on commit.
#[derive(Debug)]
pub struct AtomicDir {
    target: PathBuf,
    temp: PathBuf,
    overwrite: bool,
    committed: bool,
}

impl AtomicDir {
    /// Start building `target`. Fails if `target` exists and `overwrite` is false.
    pub fn create(target: impl AsRef<Path>, overwrite: bool) -> Result<AtomicDir, CheckpointError> {
        let target = target.as_ref().to_path_buf();
        if target.exists() && !overwrite {
            return Err(CheckpointError::OutputExists { path: target });
        }
        let temp = temp_sibling(&target)?;
        if temp.exists() {
            fs::remove_dir_all(&temp).map_err(CheckpointError::io(&temp))?;
        }
        fs::create_dir_all(&temp).map_err(CheckpointError::io(&temp))?;
        Ok(AtomicDir {
            target,
            temp,
            overwrite,
            committed: false,
        })
    }

    /// Where files go until commit.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// The final path, where the directory appears on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Rename the finished directory into place (replacing an existing one only
    /// if `overwrite` was given: the old one is moved aside first, then removed).
    pub fn commit(mut self) -> Result<PathBuf, CheckpointError> {
        if self.target.exists() {
            if !self.overwrite {
                return Err(CheckpointError::OutputExists {
                    path: self.target.clone(),
                });
            }
            let old = temp_sibling(&self.target)?.with_extension("old");
            fs::rename(&self.target, &old).map_err(CheckpointError::io(&self.target))?;
            if let Err(e) = fs::rename(&self.temp, &self.target) {
                // Put the previous output back: a failed commit changes nothing.
                let _ = fs::rename(&old, &self.target);
                return Err(CheckpointError::io(&self.target)(e));
            }
            if old.is_dir() {
                fs::remove_dir_all(&old).map_err(CheckpointError::io(&old))?;
            } else {
                fs::remove_file(&old).map_err(CheckpointError::io(&old))?;
            }
        } else {
            fs::rename(&self.temp, &self.target).map_err(CheckpointError::io(&self.target))?;
        }
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.temp);
        }
    }
}

/// A file written under a temporary name and renamed into place on commit.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Start writing `target` (an existing file is replaced on commit).
    pub fn create(target: impl AsRef<Path>) -> Result<AtomicFile, CheckpointError> {
        let target = target.as_ref().to_path_buf();
        let temp = temp_sibling(&target)?;
        let file = File::create(&temp).map_err(CheckpointError::io(&temp))?;
        Ok(AtomicFile {
            target,
            temp,
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
        let result = writer
            .into_inner()
            .map_err(|e| CheckpointError::Io {
                path: self.temp.clone(),
                source: e.into_error(),
            })
            .and_then(|file| file.sync_all().map_err(CheckpointError::io(&self.temp)))
            .and_then(|()| {
                fs::rename(&self.temp, &self.target).map_err(CheckpointError::io(&self.target))
            });
        match result {
            Ok(()) => Ok(self.target.clone()),
            Err(e) => {
                let _ = fs::remove_file(&self.temp);
                Err(e)
            }
        }
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

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.writer = None;
            let _ = fs::remove_file(&self.temp);
        }
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
