//! The `dir:PATH` source: every `*.yaml`/`*.yml` in a directory, reloaded
//! when the files change.
//!
//! Changes are found by polling names, sizes and mtimes (metadata follows
//! symlinks, so ConfigMap volumes, which swap a symlinked directory, work
//! too). Polling is portable, needs no inotify limits, and costs a `stat` per
//! file per interval.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadbolt_api::protocol::ViewObject;
use jiff::Timestamp;

use super::manifest;
use crate::admin::{Metrics, Readiness};
use crate::shutdown::Shutdown;
use crate::view::{ViewKind, ViewStore, object_key};

/// How often the directory is checked, and how long a change must settle
/// before it is loaded (an editor's save can take several writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirOptions {
    /// Poll interval.
    pub poll_interval: Duration,
    /// Debounce after a change is seen.
    pub settle: Duration,
}

impl Default for DirOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            settle: Duration::from_millis(100),
        }
    }
}

/// Why the directory could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read manifest directory {}: {source}", dir.display())]
pub struct DirError {
    /// The directory.
    pub dir: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// What a file looked like when it was last read.
type Stamp = (Option<SystemTime>, u64);

/// One file's last good contents.
struct FileState {
    stamp: Stamp,
    objects: Vec<ViewObject>,
    /// Why the file's current contents could not be used, while they cannot.
    error: Option<String>,
}

/// What one load did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Manifest files found.
    pub files: usize,
    /// Files that failed to parse (their last good version, if any, was kept).
    pub failed: Vec<PathBuf>,
    /// Changes made to the view.
    pub changes: usize,
}

/// Loads a manifest directory into the view and keeps it in sync.
pub struct DirSource {
    dir: PathBuf,
    store: ViewStore,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    options: DirOptions,
    files: BTreeMap<PathBuf, FileState>,
    listing: Vec<(PathBuf, Stamp)>,
}

impl DirSource {
    /// A source for `dir` writing into `store`.
    pub fn new(
        dir: impl Into<PathBuf>,
        store: ViewStore,
        readiness: Readiness,
        metrics: Arc<Metrics>,
        options: DirOptions,
    ) -> Self {
        Self {
            dir: dir.into(),
            store,
            readiness,
            metrics,
            options,
            files: BTreeMap::new(),
            listing: Vec::new(),
        }
    }

    /// Reads the directory and brings the view in line with it, then marks the
    /// operator ready. A file that fails to parse keeps its last good objects,
    /// so a half-saved edit never drops a lock; other files are unaffected.
    pub fn load(&mut self) -> Result<LoadReport, DirError> {
        let listing = self.list()?;
        let mut report = LoadReport {
            files: listing.len(),
            ..LoadReport::default()
        };
        let mut files = BTreeMap::new();
        for (path, stamp) in &listing {
            let previous = self.files.remove(path);
            if let Some(previous) = previous.as_ref().filter(|p| p.stamp == *stamp) {
                // Unchanged; if it was broken it still is, and still counts.
                if previous.error.is_some() {
                    report.failed.push(path.clone());
                }
                files.insert(
                    path.clone(),
                    FileState {
                        stamp: *stamp,
                        objects: previous.objects.clone(),
                        error: previous.error.clone(),
                    },
                );
                continue;
            }
            let (objects, error) = match read_manifest(path, stamp.0) {
                Ok(objects) => (objects, None),
                Err(message) => {
                    self.metrics.source_errors.inc();
                    report.failed.push(path.clone());
                    let kept = previous.map(|p| p.objects).unwrap_or_default();
                    tracing::error!(
                        file = %path.display(),
                        error = %message,
                        kept_objects = kept.len(),
                        "invalid manifest file; keeping its last good version"
                    );
                    (kept, Some(message))
                }
            };
            files.insert(
                path.clone(),
                FileState {
                    stamp: *stamp,
                    objects,
                    error,
                },
            );
        }
        self.files = files;
        self.listing = listing;
        report.changes = self.store.replace(&ViewKind::ALL, self.merged());
        self.readiness.set_ready();
        Ok(report)
    }

    /// Polls for changes until shutdown. Errors reading the directory are
    /// logged and the current view is kept.
    pub async fn run(mut self, shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(self.options.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = ticker.tick() => {}
            }
            match self.changed() {
                Ok(false) => continue,
                Ok(true) => {}
                Err(error) => {
                    if !failing {
                        tracing::error!(%error, "keeping the current view");
                        self.metrics.source_errors.inc();
                    }
                    failing = true;
                    continue;
                }
            }
            // Debounce: wait until the listing stops changing (bounded).
            let mut seen = self.list().unwrap_or_default();
            for _ in 0..10 {
                tokio::time::sleep(self.options.settle).await;
                let now = self.list().unwrap_or_default();
                if now == seen {
                    break;
                }
                seen = now;
            }
            match self.load() {
                Ok(report) => {
                    failing = false;
                    tracing::info!(
                        dir = %self.dir.display(),
                        files = report.files,
                        failed = report.failed.len(),
                        failing = ?report.failed,
                        changes = report.changes,
                        "manifest directory reloaded"
                    );
                }
                Err(error) => {
                    if !failing {
                        tracing::error!(%error, "keeping the current view");
                        self.metrics.source_errors.inc();
                    }
                    failing = true;
                }
            }
        }
    }

    fn changed(&self) -> Result<bool, DirError> {
        Ok(self.list()? != self.listing)
    }

    /// The manifest files, sorted, with their stamps.
    fn list(&self) -> Result<Vec<(PathBuf, Stamp)>, DirError> {
        let error = |source| DirError {
            dir: self.dir.clone(),
            source,
        };
        let mut listing = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(error)? {
            let path = entry.map_err(error)?.path();
            if !is_manifest(&path) {
                continue;
            }
            // Follows symlinks; a dangling one or a directory is not a manifest.
            match std::fs::metadata(&path) {
                Ok(metadata) if metadata.is_file() => {
                    listing.push((path, (metadata.modified().ok(), metadata.len())));
                }
                _ => {}
            }
        }
        listing.sort();
        Ok(listing)
    }

    /// Every file's objects; when two files define the same object, the one
    /// sorting last wins, with a warning.
    fn merged(&self) -> Vec<ViewObject> {
        let mut owners: HashMap<(ViewKind, String), &Path> = HashMap::new();
        let mut merged: Vec<ViewObject> = Vec::new();
        let mut positions: HashMap<(ViewKind, String), usize> = HashMap::new();
        for (path, state) in &self.files {
            for object in &state.objects {
                let kind = ViewKind::of(object);
                let name = object_key(object)
                    .map(|key| format!("{key:?}"))
                    .unwrap_or_default();
                let id = (kind, name);
                if let Some(owner) = owners.insert(id.clone(), path) {
                    tracing::warn!(
                        object = %id.1,
                        kind = ?kind,
                        first = %owner.display(),
                        second = %path.display(),
                        "object defined in two files; using the second"
                    );
                }
                match positions.get(&id) {
                    Some(&position) => merged[position] = object.clone(),
                    None => {
                        positions.insert(id, merged.len());
                        merged.push(object.clone());
                    }
                }
            }
        }
        merged
    }
}

fn is_manifest(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|name| name.to_str())
        .is_none_or(|name| name.starts_with('.'));
    let yaml = path
        .extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml"));
    !hidden && yaml
}

/// Reads and parses one file; skipped documents are logged here.
fn read_manifest(path: &Path, modified: Option<SystemTime>) -> Result<Vec<ViewObject>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    let created = modified
        .and_then(|time| Timestamp::try_from(time).ok())
        .unwrap_or_else(Timestamp::now);
    let manifest = manifest::parse(&text, created).map_err(|error| error.to_string())?;
    for skipped in &manifest.skipped {
        tracing::warn!(file = %path.display(), "{skipped}");
    }
    Ok(manifest.objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::protocol::ViewEvent;

    fn lock_yaml(name: &str, user: &str) -> String {
        format!(
            "apiVersion: deadbolt.dev/v1\nkind: Lock\nmetadata: {{name: {name}}}\nspec: {{target: {{user: {user}}}}}\n"
        )
    }

    fn source(dir: &Path) -> (DirSource, ViewStore, Readiness) {
        let store = ViewStore::default();
        let readiness = Readiness::new();
        let source = DirSource::new(
            dir,
            store.clone(),
            readiness.clone(),
            Arc::new(Metrics::new()),
            DirOptions::default(),
        );
        (source, store, readiness)
    }

    fn lock_users(store: &ViewStore) -> Vec<(String, String)> {
        store
            .snapshot()
            .locks
            .into_iter()
            .map(|lock| (lock.name, lock.target.user.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn loads_yaml_files_and_ignores_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), lock_yaml("a", "alice")).unwrap();
        std::fs::write(dir.path().join("b.YML"), lock_yaml("b", "bob")).unwrap();
        std::fs::write(dir.path().join("c.json"), "{}").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), lock_yaml("h", "eve")).unwrap();
        let (mut source, store, readiness) = source(dir.path());
        assert!(!readiness.is_ready());
        let report = source.load().unwrap();
        assert_eq!(report.files, 2);
        assert!(readiness.is_ready());
        assert_eq!(
            lock_users(&store),
            vec![("a".into(), "alice".into()), ("b".into(), "bob".into())]
        );
    }

    #[test]
    fn a_broken_file_keeps_its_last_good_version_and_spares_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, lock_yaml("a", "alice")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), lock_yaml("b", "bob")).unwrap();
        let (mut source, store, _) = source(dir.path());
        source.load().unwrap();

        std::fs::write(&a, "apiVersion: deadbolt.dev/v1\nkind: Lock\nspec: [").unwrap();
        let report = source.load().unwrap();
        assert_eq!(report.failed, vec![a.clone()]);
        assert_eq!(report.changes, 0);
        assert_eq!(lock_users(&store).len(), 2);

        // A never-good file contributes nothing, and nothing else is lost.
        let c = dir.path().join("c.yaml");
        std::fs::write(&c, "kind: [").unwrap();
        let report = source.load().unwrap();
        assert_eq!(lock_users(&store).len(), 2);
        assert_eq!(report.failed, vec![a.clone(), c.clone()]);
        // Files still broken still count, though they were not read again.
        let report = source.load().unwrap();
        assert_eq!(report.failed, vec![a.clone(), c.clone()]);

        std::fs::remove_file(&a).unwrap();
        source.load().unwrap();
        assert_eq!(lock_users(&store), vec![("b".into(), "bob".into())]);
    }

    #[test]
    fn the_later_file_wins_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1.yaml"), lock_yaml("same", "alice")).unwrap();
        std::fs::write(dir.path().join("2.yaml"), lock_yaml("same", "bob")).unwrap();
        let (mut source, store, _) = source(dir.path());
        source.load().unwrap();
        assert_eq!(lock_users(&store), vec![("same".into(), "bob".into())]);
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut source, _, readiness) = source(&dir.path().join("nope"));
        let error = source.load().unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
        assert!(!readiness.is_ready());
    }

    #[tokio::test]
    async fn polling_reloads_an_edited_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lock.yaml");
        std::fs::write(&file, lock_yaml("l", "alice")).unwrap();
        let store = ViewStore::default();
        let mut source = DirSource::new(
            dir.path(),
            store.clone(),
            Readiness::new(),
            Arc::new(Metrics::new()),
            DirOptions {
                poll_interval: Duration::from_millis(20),
                settle: Duration::from_millis(10),
            },
        );
        source.load().unwrap();
        let (_, mut events) = store.subscribe();
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(source.run(shutdown));

        std::fs::write(&file, lock_yaml("l", "bob-the-longer-name")).unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("no reload within 10 s")
            .unwrap();
        let ViewEvent::Upsert {
            object: ViewObject::Lock(lock),
            ..
        } = event
        else {
            panic!("expected a lock upsert, got {event:?}");
        };
        assert_eq!(lock.target.user.as_deref(), Some("bob-the-longer-name"));
        trigger.trigger();
        task.await.unwrap();
    }
}
