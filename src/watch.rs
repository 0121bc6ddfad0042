//! Watching a file for changes the way Kubernetes changes mounted files.
//!
//! A ConfigMap or Secret volume never writes a file in place: it writes a new timestamped
//! directory, then atomically renames a `..data` symlink to point at it; the visible file is a
//! symlink through `..data`. A watch on the file itself would follow the old inode and miss the
//! swap, so the *parent directory* is watched, and any event naming the file or a `..`-prefixed
//! entry counts. Editors that save through a temporary file and a rename are caught the same way.
//! Bursts of events are debounced into one notification; consumers re-read the file and compare,
//! so a spurious notification costs one read.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// Quiet time after the last event before consumers are told: a ConfigMap swap is a handful of
/// events within microseconds, an editor's save a few within milliseconds.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// A running watch; dropping it stops watching.
pub struct FileWatcher {
    _watcher: RecommendedWatcher,
    /// The debouncing task; aborted on drop so it cannot outlive the watch.
    debouncer: tokio::task::JoinHandle<()>,
}

impl FileWatcher {
    /// Watches `file` (through its parent directory) and calls `changed.notify_one()` after each
    /// debounced burst of changes. Must be called within a tokio runtime.
    pub fn new(file: &Path, changed: Arc<Notify>) -> notify::Result<FileWatcher> {
        let directory = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let name: OsString = file.file_name().map(OsString::from).unwrap_or_default();
        let raw = Arc::new(Notify::new());
        let on_event = Arc::clone(&raw);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match event {
                    Ok(event) => {
                        !matches!(event.kind, EventKind::Access(_))
                            && event.paths.iter().any(|path| {
                                path.file_name().is_some_and(|entry| {
                                    entry == name || entry.as_encoded_bytes().starts_with(b"..")
                                })
                            })
                    }
                    // A lost event (queue overflow) may have been ours: look again.
                    Err(_) => true,
                };
                if relevant {
                    on_event.notify_one();
                }
            })?;
        watcher.watch(&directory, RecursiveMode::NonRecursive)?;
        let debouncer = tokio::spawn(async move {
            loop {
                raw.notified().await;
                tokio::time::sleep(DEBOUNCE).await;
                changed.notify_one();
            }
        });
        Ok(FileWatcher {
            _watcher: watcher,
            debouncer,
        })
    }
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        self.debouncer.abort();
    }
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatcher").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn changed_within(notify: &Notify, limit: Duration) -> bool {
        tokio::time::timeout(limit, notify.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn an_in_place_write_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "a").unwrap();
        let changed = Arc::new(Notify::new());
        let _watch = FileWatcher::new(&file, Arc::clone(&changed)).unwrap();
        std::fs::write(&file, "b").unwrap();
        assert!(changed_within(&changed, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_configmap_symlink_swap_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("..2024_01")).unwrap();
        std::fs::write(root.join("..2024_01/config.yaml"), "a").unwrap();
        std::os::unix::fs::symlink("..2024_01", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/config.yaml", root.join("config.yaml")).unwrap();
        let changed = Arc::new(Notify::new());
        let _watch = FileWatcher::new(&root.join("config.yaml"), Arc::clone(&changed)).unwrap();

        std::fs::create_dir(root.join("..2024_02")).unwrap();
        std::fs::write(root.join("..2024_02/config.yaml"), "b").unwrap();
        std::os::unix::fs::symlink("..2024_02", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        assert!(changed_within(&changed, Duration::from_secs(5)).await);
        assert_eq!(
            std::fs::read_to_string(root.join("config.yaml")).unwrap(),
            "b"
        );
    }

    #[tokio::test]
    async fn other_files_in_the_directory_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "a").unwrap();
        let changed = Arc::new(Notify::new());
        let _watch = FileWatcher::new(&file, Arc::clone(&changed)).unwrap();
        std::fs::write(dir.path().join("unrelated.txt"), "x").unwrap();
        assert!(!changed_within(&changed, Duration::from_millis(500)).await);
    }
}
