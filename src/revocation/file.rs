//! The embedded, durable revocation store: an append-only log on local disk.
//!
//! # Format
//!
//! The file starts with the 8-byte [`MAGIC`]; then one record per revocation:
//!
//! ```text
//! [body length: u32 LE][CRC32 of the length bytes: u32 LE][CRC32 of the body: u32 LE][body]
//! ```
//!
//! The body is the revocation as JSON. The length has its own checksum so that a damaged length
//! in the middle of the log is reported as corruption instead of being mistaken for the end of
//! the file (which would silently drop every acknowledged record after it).
//!
//! # Durability
//!
//! [`FileStore::append`] writes the whole record with one `write` and `fsync`s the file before it
//! returns, so an acknowledged revocation survives `kill -9` (and power loss) right after the
//! acknowledgement. Creating the file also `fsync`s its directory, so the file itself survives.
//! An append that fails (a full disk, an I/O error) is cut back off the log before the error is
//! returned, so "not recorded" is true and the next append never follows a partial record.
//!
//! # Damage
//!
//! - A **torn tail** (an incomplete last record, or a zero-filled tail) is what a crash in the
//!   middle of an append leaves. That append was never acknowledged, so dropping it loses
//!   nothing that was promised: the tail is copied aside to `<path>.torn-<unix ms>`, the log is
//!   truncated to its last whole record, and a warning names the file and byte offset.
//! - A **corrupt record** (a checksum mismatch or an impossible length anywhere) means the disk
//!   or someone's editor damaged acknowledged data. Loading fails with [`StoreError::Corrupt`]
//!   naming file and offset, and the server refuses to start: a revocation silently lost would
//!   re-admit a session an operator was promised is dead.
//!
//! # One writer
//!
//! An exclusive lock on `<path>.lock` (a separate file, because compaction replaces the log's
//! inode) stops a second sessiongate from interleaving records in the same log.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fs4::fs_std::FileExt;

use super::Revocation;
use super::store::{RevocationStore, StoreError, StoreFuture};
use sessiongate_core::time::UnixTime;

/// First bytes of every log: names the format and its version.
pub const MAGIC: &[u8; 8] = b"SGREVL\x00\x01";

/// Length prefix + length checksum + body checksum.
pub const HEADER_LEN: usize = 12;

/// Largest body accepted. A revocation is a few hundred bytes; a checksummed length beyond this
/// is damage, not data, and must not make the loader allocate gigabytes.
pub const MAX_BODY_LEN: u32 = 64 * 1024;

/// The open log and where its last whole record ends.
struct Log {
    file: File,
    /// The length of the log's whole records: a failed append (disk full, I/O error) is cut
    /// back to it, so the next append never lands after a partial record, which would read as
    /// corruption in the middle of the log and stop the next start-up.
    whole_len: u64,
    /// A failed append whose partial record could not be cut off yet: retried before the next
    /// append, which is refused while it fails.
    tail_pending: bool,
}

/// The embedded store: an append-only, checksummed log (see the module docs).
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The log opened for appending; replaced when compaction swaps the file. A std `Mutex`
    /// because it is only held inside blocking tasks, never across an `.await`.
    log: Mutex<Log>,
    /// Held (and locked) for the store's lifetime; dropping it releases the lock.
    _lock: File,
}

impl FileStore {
    /// Opens (creating it and its folders if needed) the log at `path` and locks it against a
    /// second writer. Does not read it: [`RevocationStore::load`] does.
    pub fn open(path: &Path) -> Result<FileStore, StoreError> {
        let unavailable = |what: &str, e: std::io::Error| {
            StoreError::Unavailable(format!("{}: {what}: {e}", path.display()))
        };
        let dir = parent_dir(path);
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| unavailable("creating its folder", e))?;
            sync_dir(&parent_dir(&dir)).map_err(|e| unavailable("syncing its folder", e))?;
        }
        let lock_path = sibling(path, ".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| unavailable("opening the lock file", e))?;
        match lock.try_lock_exclusive() {
            Ok(true) => {}
            Ok(false) => {
                return Err(StoreError::Unavailable(format!(
                    "{}: locked by another process (another sessiongate uses this revocation log)",
                    path.display()
                )));
            }
            Err(e) => return Err(unavailable("locking", e)),
        }
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| unavailable("opening", e))?;
        let len = log
            .metadata()
            .map_err(|e| unavailable("reading its size", e))?
            .len();
        if len == 0 {
            // New, or created by a process that died before writing the header.
            log.write_all(MAGIC)
                .and_then(|()| log.sync_all())
                .map_err(|e| unavailable("writing the header", e))?;
            sync_dir(&dir).map_err(|e| unavailable("syncing its folder", e))?;
        }
        Ok(FileStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                log: Mutex::new(Log {
                    file: log,
                    whole_len: len.max(MAGIC.len() as u64),
                    tail_pending: false,
                }),
                _lock: lock,
            }),
        })
    }

    /// Runs blocking file work off the async workers: an `fsync` can take milliseconds, and
    /// the same runtime answers Envoy's checks.
    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || work(&inner))
                .await
                .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
        })
    }
}

impl RevocationStore for FileStore {
    fn describe(&self) -> String {
        format!("file {}", self.inner.path.display())
    }

    fn load(&self) -> StoreFuture<'_, Vec<Revocation>> {
        self.blocking(|inner| inner.load())
    }

    fn append<'a>(&'a self, revocation: &'a Revocation) -> StoreFuture<'a, ()> {
        let record = encode(revocation);
        self.blocking(move |inner| inner.append(&record))
    }

    fn compact<'a>(&'a self, live: &'a [Revocation]) -> StoreFuture<'a, ()> {
        let mut contents = MAGIC.to_vec();
        for revocation in live {
            contents.extend_from_slice(&encode(revocation));
        }
        self.blocking(move |inner| inner.replace(&contents))
    }
}

impl Inner {
    fn unavailable(&self, what: &str, error: std::io::Error) -> StoreError {
        StoreError::Unavailable(format!("{}: {what}: {error}", self.path.display()))
    }

    /// Appends one record and syncs it. On failure (a full disk, an I/O error) the partial
    /// record is cut off again, so the log holds exactly the acknowledged records and the
    /// failure is truthfully "not recorded"; when even the cut fails, the error says the
    /// record may still be there, and the next append first retries the cut.
    fn append(&self, record: &[u8]) -> Result<(), StoreError> {
        let mut log = self.log.lock().expect("revocation log lock poisoned");
        if log.tail_pending {
            self.cut_back(&mut log).map_err(|e| {
                self.unavailable(
                    "removing the partial record a failed append left (appends wait for it)",
                    e,
                )
            })?;
        }
        let written = log.file.write_all(record).map_err(|e| ("appending", e));
        let synced = written.and_then(|()| log.file.sync_data().map_err(|e| ("syncing", e)));
        match synced {
            Ok(()) => {
                log.whole_len += record.len() as u64;
                Ok(())
            }
            Err((what, error)) => match self.cut_back(&mut log) {
                Ok(()) => Err(self.unavailable(what, error)),
                Err(cut) => {
                    log.tail_pending = true;
                    Err(StoreError::Unconfirmed(format!(
                        "{}: {what}: {error}; the partial record could not be removed ({cut}), \
                         so it may be loaded at the next start",
                        self.path.display()
                    )))
                }
            },
        }
    }

    /// Truncates the log to its whole records and syncs that.
    fn cut_back(&self, log: &mut Log) -> std::io::Result<()> {
        log.file.set_len(log.whole_len)?;
        log.file.sync_data()?;
        log.tail_pending = false;
        Ok(())
    }

    fn load(&self) -> Result<Vec<Revocation>, StoreError> {
        let mut log = self.log.lock().expect("revocation log lock poisoned");
        let mut bytes = Vec::new();
        let mut reader = File::open(&self.path).map_err(|e| self.unavailable("opening", e))?;
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| self.unavailable("reading", e))?;
        let parsed = parse(&bytes).map_err(|damage| {
            StoreError::Corrupt(format!(
                "{}: byte offset {}: {}; refusing to start rather than forget acknowledged \
                 revocations (restore the file, or move it aside to start with none)",
                self.path.display(),
                damage.offset,
                damage.problem
            ))
        })?;
        if let Some(torn_at) = parsed.torn_at {
            let aside = sibling(
                &self.path,
                &format!(".torn-{}", UnixTime::now().as_millis()),
            );
            let tail_len = bytes.len() - torn_at;
            tracing::warn!(
                file = %self.path.display(),
                offset = torn_at,
                bytes = tail_len,
                moved_to = %aside.display(),
                "revocation log has a torn tail (an append interrupted by a crash, never \
                 acknowledged); moving it aside and truncating"
            );
            write_synced(&aside, &bytes[torn_at..])
                .map_err(|e| self.unavailable("saving the torn tail", e))?;
            let keep = if torn_at < MAGIC.len() {
                // The header itself was torn: the file was being created.
                log.file
                    .set_len(0)
                    .and_then(|()| log.file.write_all(MAGIC))
                    .map_err(|e| self.unavailable("rewriting the header", e))?;
                MAGIC.len()
            } else {
                torn_at
            };
            log.file
                .set_len(keep as u64)
                .and_then(|()| log.file.sync_all())
                .map_err(|e| self.unavailable("truncating the torn tail", e))?;
            sync_dir(&parent_dir(&self.path)).map_err(|e| self.unavailable("syncing", e))?;
            log.whole_len = keep as u64;
        } else {
            log.whole_len = bytes.len() as u64;
        }
        log.tail_pending = false;
        Ok(parsed.revocations)
    }

    /// Atomically replaces the log with `contents`: write a temporary file, sync it, rename it
    /// over the log, sync the folder. A crash at any point leaves either the old or the new log.
    fn replace(&self, contents: &[u8]) -> Result<(), StoreError> {
        let mut log = self.log.lock().expect("revocation log lock poisoned");
        let temporary = sibling(&self.path, ".compacting");
        if let Err(error) = write_synced(&temporary, contents) {
            // On a full disk the partial copy would only take more of the space appends need.
            let _ = fs::remove_file(&temporary);
            return Err(self.unavailable("writing the compacted log", error));
        }
        fs::rename(&temporary, &self.path).map_err(|e| self.unavailable("replacing the log", e))?;
        sync_dir(&parent_dir(&self.path)).map_err(|e| self.unavailable("syncing", e))?;
        *log = Log {
            file: OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| self.unavailable("reopening", e))?,
            whole_len: contents.len() as u64,
            tail_pending: false,
        };
        Ok(())
    }
}

/// One revocation as a log record.
fn encode(revocation: &Revocation) -> Vec<u8> {
    let body = serde_json::to_vec(revocation).expect("a revocation always serialises");
    let length = u32::try_from(body.len())
        .ok()
        .filter(|len| *len <= MAX_BODY_LEN)
        .expect("a revocation record is far below the size limit")
        .to_le_bytes();
    let mut record = Vec::with_capacity(HEADER_LEN + body.len());
    record.extend_from_slice(&length);
    record.extend_from_slice(&crc32fast::hash(&length).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    record.extend_from_slice(&body);
    record
}

/// What a log holds: its whole records, and where a torn tail begins, if there is one.
#[derive(Debug)]
struct Parsed {
    revocations: Vec<Revocation>,
    torn_at: Option<usize>,
}

/// Damage that is not a torn tail.
#[derive(Debug)]
struct Damage {
    offset: usize,
    problem: String,
}

/// Reads a whole log (pure, so every damage pattern is unit-tested without a disk).
fn parse(bytes: &[u8]) -> Result<Parsed, Damage> {
    let damage = |offset: usize, problem: String| Damage { offset, problem };
    if bytes.len() < MAGIC.len() {
        return if MAGIC.starts_with(bytes) {
            Ok(Parsed {
                revocations: Vec::new(),
                torn_at: (!bytes.is_empty()).then_some(0),
            })
        } else {
            Err(damage(0, "not a sessiongate revocation log".into()))
        };
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(damage(
            0,
            "not a sessiongate revocation log (unknown header)".into(),
        ));
    }
    let mut revocations = Vec::new();
    let mut offset = MAGIC.len();
    while offset < bytes.len() {
        match next_record(&bytes[offset..]) {
            Ok(Some((revocation, length))) => {
                revocations.push(revocation);
                offset += length;
            }
            Ok(None) => {
                return Ok(Parsed {
                    revocations,
                    torn_at: Some(offset),
                });
            }
            Err(problem) => return Err(damage(offset, problem)),
        }
    }
    Ok(Parsed {
        revocations,
        torn_at: None,
    })
}

/// The record at the start of `rest` and its length; `None` when `rest` is a torn tail.
fn next_record(rest: &[u8]) -> Result<Option<(Revocation, usize)>, String> {
    if rest.len() < HEADER_LEN || rest.iter().all(|b| *b == 0) {
        // Too short for a header, or zeros where a record should start (the file grew but the
        // data never landed): an append cut short.
        return Ok(None);
    }
    let field = |at: usize| u32::from_le_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
    let (length, length_crc, body_crc) = (field(0), field(4), field(8));
    if crc32fast::hash(&rest[..4]) != length_crc {
        return Err("record length fails its checksum".into());
    }
    if length > MAX_BODY_LEN {
        return Err(format!("record length {length} exceeds {MAX_BODY_LEN}"));
    }
    let end = HEADER_LEN + length as usize;
    if rest.len() < end {
        return Ok(None);
    }
    let body = &rest[HEADER_LEN..end];
    if crc32fast::hash(body) != body_crc {
        return Err("record fails its checksum".into());
    }
    let revocation = serde_json::from_slice(body)
        .map_err(|e| format!("record checksum is right but it does not parse: {e}"))?;
    Ok(Some((revocation, end)))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes a folder's entries (a created or renamed file) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes a new file and syncs it before returning.
fn write_synced(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::{Effect, Selector};

    fn revocation(sub: &str) -> Revocation {
        Revocation {
            selector: Selector::Subject {
                issuer: "https://idp".into(),
                sub: sub.into(),
            },
            issued_before: UnixTime::from_secs(1_000),
            effect: Effect::Revoke,
            recorded_at: UnixTime::from_secs(1_000),
            origin: "test".into(),
            reason: "leaked laptop".into(),
            issuers: None,
            retain_until: None,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Appends `subs` through a store, then releases it (as a crash would).
    fn log_with(path: &Path, subs: &[&str]) {
        let store = FileStore::open(path).unwrap();
        runtime().block_on(async {
            for sub in subs {
                store.append(&revocation(sub)).await.unwrap();
            }
        });
    }

    fn load(path: &Path) -> Result<Vec<Revocation>, StoreError> {
        let store = FileStore::open(path)?;
        runtime().block_on(store.load())
    }

    fn torn_files(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".torn-"))
            .collect()
    }

    #[test]
    fn appended_revocations_load_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/nested/revocations");
        log_with(&path, &["alice", "bob"]);
        log_with(&path, &["carol"]);
        assert_eq!(
            load(&path).unwrap(),
            vec![revocation("alice"), revocation("bob"), revocation("carol")]
        );
    }

    #[test]
    fn a_record_written_before_issuer_scopes_existed_loads_unscoped() {
        // Byte for byte what the previous version wrote for an SSF email revocation.
        let body = br#"{"selector":{"kind":"email","email":"alice@example.com"},"issued_before":1000000,"effect":"revoke","recorded_at":1000000,"origin":"ssf:https://idp","reason":"https://schemas.openid.net/secevent/caep/event-type/session-revoked"}"#;
        let length = u32::try_from(body.len()).unwrap().to_le_bytes();
        let mut log = MAGIC.to_vec();
        log.extend_from_slice(&length);
        log.extend_from_slice(&crc32fast::hash(&length).to_le_bytes());
        log.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        log.extend_from_slice(body);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations");
        fs::write(&path, &log).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            loaded[0].selector,
            Selector::Email {
                email: "alice@example.com".into()
            }
        );
        assert_eq!(loaded[0].issuers, None, "no scope: any issuer, as before");
        // And an unscoped revocation is still written without the member.
        assert_eq!(&encode(&loaded[0])[HEADER_LEN..], body);
    }

    #[test]
    fn a_scoped_revocation_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations");
        let mut scoped = revocation("alice");
        scoped.issuers = Some(vec![Arc::from("https://idp"), Arc::from("https://b")].into());
        let store = FileStore::open(&path).unwrap();
        runtime().block_on(store.append(&scoped)).unwrap();
        drop(store);
        assert_eq!(load(&path).unwrap(), vec![scoped]);
    }

    #[test]
    fn a_new_log_loads_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join("revocations")).unwrap(), vec![]);
    }

    #[test]
    fn a_torn_tail_is_moved_aside_and_truncated_at_every_offset() {
        let dir = tempfile::tempdir().unwrap();
        let whole = dir.path().join("whole");
        log_with(&whole, &["alice", "bob"]);
        let full = fs::read(&whole).unwrap();
        let last_record_len = encode(&revocation("bob")).len();
        let last_start = full.len() - last_record_len;
        for cut in last_start..full.len() {
            let case = tempfile::tempdir().unwrap();
            let path = case.path().join("revocations");
            fs::write(&path, &full[..cut]).unwrap();
            assert_eq!(
                load(&path).unwrap(),
                vec![revocation("alice")],
                "cut at {cut}"
            );
            assert_eq!(
                fs::read(&path).unwrap(),
                &full[..last_start],
                "truncated, cut at {cut}"
            );
            let aside = torn_files(case.path());
            if cut > last_start {
                assert_eq!(aside.len(), 1, "cut at {cut}");
                assert_eq!(fs::read(&aside[0]).unwrap(), &full[last_start..cut]);
            }
            // The truncated log takes appends again.
            log_with(&path, &["carol"]);
            assert_eq!(
                load(&path).unwrap(),
                vec![revocation("alice"), revocation("carol")]
            );
        }
    }

    #[test]
    fn a_zero_filled_tail_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations");
        log_with(&path, &["alice"]);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0; 40]);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(load(&path).unwrap(), vec![revocation("alice")]);
        assert_eq!(torn_files(dir.path()).len(), 1);
    }

    #[test]
    fn a_torn_header_restarts_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations");
        fs::write(&path, &MAGIC[..3]).unwrap();
        assert_eq!(load(&path).unwrap(), vec![]);
        assert_eq!(fs::read(&path).unwrap(), MAGIC);
    }

    #[test]
    fn a_flipped_bit_anywhere_is_corruption_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let whole = dir.path().join("whole");
        // Equal-length records, so the damaged record's offset is easy to compute.
        log_with(&whole, &["ann", "bob", "cat"]);
        let full = fs::read(&whole).unwrap();
        let record_len = encode(&revocation("bob")).len();
        for at in MAGIC.len()..full.len() {
            let case = tempfile::tempdir().unwrap();
            let path = case.path().join("revocations");
            let mut bytes = full.clone();
            bytes[at] ^= 0x10;
            fs::write(&path, &bytes).unwrap();
            match load(&path) {
                Err(StoreError::Corrupt(message)) => {
                    let record_start = MAGIC.len() + (at - MAGIC.len()) / record_len * record_len;
                    assert!(
                        message.contains(&path.display().to_string())
                            && message.contains(&format!("byte offset {record_start}")),
                        "flip at {at}: {message}"
                    );
                }
                other => panic!("flip at {at}: expected Corrupt, got {other:?}"),
            }
            assert_eq!(
                fs::read(&path).unwrap(),
                bytes,
                "corrupt data is left alone"
            );
        }
    }

    #[test]
    fn a_foreign_file_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations");
        fs::write(&path, b"{\"kind\":\"subject\"}\n").unwrap();
        assert!(matches!(load(&path), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn compaction_keeps_exactly_the_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations");
        let store = FileStore::open(&path).unwrap();
        runtime().block_on(async {
            for sub in ["alice", "bob", "carol"] {
                store.append(&revocation(sub)).await.unwrap();
            }
            store.compact(&[revocation("carol")]).await.unwrap();
            store.append(&revocation("dave")).await.unwrap();
        });
        drop(store);
        assert_eq!(
            load(&path).unwrap(),
            vec![revocation("carol"), revocation("dave")]
        );
        assert!(!sibling(&path, ".compacting").exists());
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations");
        let _first = FileStore::open(&path).unwrap();
        match FileStore::open(&path) {
            Err(StoreError::Unavailable(message)) => assert!(message.contains("locked")),
            other => panic!("expected a lock error, got {:?}", other.map(|_| ())),
        }
    }
}
