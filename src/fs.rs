//! A file-system check shared by the store and the file sink at startup.

use std::path::Path;

/// Whether files can be made in `dir`, or, when it does not exist yet, in the nearest
/// existing directory above it (where it would be created): that directory, and the
/// error if a probe file cannot be written and removed there.
pub(crate) fn writable(dir: &Path) -> (&Path, std::io::Result<()>) {
    let existing = dir
        .ancestors()
        .find(|d| d.is_dir())
        .unwrap_or(Path::new("."));
    let probe = existing.join(format!(".innohook-check-{}", std::process::id()));
    let result = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe));
    (existing, result)
}
