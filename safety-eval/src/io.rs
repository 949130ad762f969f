//! Atomic file writes, through delta-core's writer (the workspace's one
//! implementation): a uniquely named temporary file next to the target,
//! synced, then renamed over the target; removed if anything fails.

use std::io::Write;
use std::path::Path;

/// Write `path` atomically with `f` filling a buffered writer.
pub fn write_atomic(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut file = delta_core::AtomicFile::create(path).map_err(into_io)?;
    f(&mut file)?;
    file.commit().map_err(into_io)?;
    Ok(())
}

/// The underlying I/O error (callers add the target's path themselves).
fn into_io(e: delta_core::CheckpointError) -> std::io::Error {
    match e {
        delta_core::CheckpointError::Io { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    }
}
