//! Reading the files a configuration names, bounded.
//!
//! A config can name any path: a JWKS, a CA bundle, the admin token, the config itself on
//! reload. `std::fs::read` on `/dev/zero` never returns, on a FIFO it blocks until a writer
//! appears, and on a huge file it allocates all of it: `check-config`, start-up and every
//! reload would hang or run out of memory. So these files are read only when they are regular
//! files, and never beyond a limit that fits what they hold.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// A file a configuration names, as the config loader read it (with [`read_bounded`]).
///
/// The loader is the only code that reads such files; the subsystem owning the setting judges
/// the bytes, or reports the read error under its own key, in its own order of checks.
#[derive(Debug)]
pub struct NamedFile {
    /// The path, resolved against the config file's directory.
    pub path: PathBuf,
    /// Its bytes, or why they could not be read.
    pub bytes: io::Result<Vec<u8>>,
}

impl NamedFile {
    /// Reads `path` whole, within `limit` bytes (see [`read_bounded`]).
    pub fn read(path: PathBuf, limit: u64) -> NamedFile {
        let bytes = read_bounded(&path, limit);
        NamedFile { path, bytes }
    }
}

/// Reads `path` whole, refusing anything but a regular file (after symlinks, so Kubernetes'
/// ConfigMap and Secret mounts work) and anything over `limit` bytes. The error says which.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if metadata.len() > limit {
        return Err(too_large(limit));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // The file may grow between the look and the read: read one byte past the limit to know.
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

/// [`read_bounded`], as UTF-8 text.
pub fn read_bounded_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_fifos_are_refused_without_reading_them() {
        let error = read_bounded(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(error.to_string(), "not a regular file");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|status| status.success()) {
            // Opening a FIFO for reading would block until a writer appears.
            assert_eq!(
                read_bounded(&fifo, 1024).unwrap_err().to_string(),
                "not a regular file"
            );
        }
        assert!(read_bounded(dir.path(), 1024).is_err(), "a directory");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_one_within_it_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, vec![b'a'; 100]).unwrap();
        assert_eq!(read_bounded(&file, 100).unwrap().len(), 100);
        assert_eq!(
            read_bounded(&file, 99).unwrap_err().to_string(),
            "larger than 99 bytes"
        );
        assert_eq!(read_bounded_text(&file, 100).unwrap(), "a".repeat(100));
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(read_bounded_text(&file, 100).is_err());
    }
}
