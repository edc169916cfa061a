//! Keeping the cached site current: a watcher thread notices changes under
//! the root and loads the site again; each core picks the new one up
//! between events.
//!
//! The watcher compares a fingerprint of the tree (`Site::fingerprint`: a
//! stat of every file, nothing read) every interval, and loads only once a
//! change has held still for one interval, so a file caught half-written
//! is not served as the new version (copying a site in takes a moment;
//! `rsync` and editors that rename into place are atomic anyway); a tree
//! that changed during the load is loaded again. A failed load (the root
//! gone) keeps the old site and says so.
//!
//! Cores never lock for it: a core compares one atomic generation number
//! per pass of its loop, and takes the mutex only on the rare pass after a
//! reload, to clone the new `Arc<Site>`. Responses already under way keep
//! the old files alive (they hold the bodies' `Arc`s) until they finish.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::site::Site;

/// A value the control threads replace and the cores pick up between
/// events: the site, and the settings a SIGHUP reloads.
pub struct Published<T> {
    current: Mutex<Arc<T>>,
    /// Bumped after each new value is stored.
    generation: AtomicU64,
}

/// The current site, shared by the watcher and the cores.
pub type SharedSite = Published<Site>;
/// A core's view of the site.
pub type SiteHandle = Snapshot<Site>;

impl<T> Published<T> {
    pub fn new(value: T) -> Arc<Published<T>> {
        Arc::new(Published {
            current: Mutex::new(Arc::new(value)),
            generation: AtomicU64::new(0),
        })
    }

    /// Replaces the value; cores switch on their next pass.
    pub fn publish(&self, value: T) {
        let value = Arc::new(value);
        // A poisoned lock only means a core panicked mid-clone; the Arc
        // inside is whole.
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = value;
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<T> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A core's view: the value it works with, and which generation that is.
pub struct Snapshot<T> {
    shared: Arc<Published<T>>,
    value: Arc<T>,
    seen: u64,
}

impl<T> Snapshot<T> {
    pub fn new(shared: Arc<Published<T>>) -> Snapshot<T> {
        let seen = shared.generation();
        let value = shared.current();
        Snapshot {
            shared,
            value,
            seen,
        }
    }

    /// The value to work with.
    pub fn get(&self) -> &Arc<T> {
        &self.value
    }

    /// Switches to a newer value if one was published: one atomic load
    /// when there is none. True when it switched.
    pub fn refresh(&mut self) -> bool {
        let generation = self.shared.generation();
        if generation == self.seen {
            return false;
        }
        self.value = self.shared.current();
        self.seen = generation;
        true
    }
}

/// Decides when to load the site again, one `check` per interval.
pub struct Watcher {
    root: PathBuf,
    limits: crate::site::CacheLimits,
    /// The fingerprint of what is being served.
    loaded: u64,
    /// The fingerprint seen by the previous check.
    previous: u64,
    /// Loads in a row that could not read some entry.
    retries: u32,
}

/// Loads of an unchanged tree tried again while some entry fails to read
/// (EIO, EMFILE): a lasting failure (a file nobody may read) then waits for
/// the next change instead of costing a load every interval.
const READ_RETRIES: u32 = 3;

impl Watcher {
    /// `loaded`: what the served site's load saw (`Site::seen`).
    pub fn new(root: PathBuf, limits: impl Into<crate::site::CacheLimits>, loaded: u64) -> Watcher {
        Watcher {
            root,
            limits: limits.into(),
            loaded,
            previous: loaded,
            retries: 0,
        }
    }

    /// One look at the tree: a new site when it changed and has held still
    /// since the previous look, sharing `serving`'s unchanged files.
    pub fn check(&mut self, serving: &Arc<Site>) -> Option<Site> {
        let now = match Site::fingerprint(&self.root) {
            Ok(now) => now,
            Err(e) => {
                if self.previous != 0 {
                    tracing::warn!("site reload: {e:#}; still serving the last good site");
                }
                self.previous = 0;
                return None;
            }
        };
        let stable = now == self.previous;
        self.previous = now;
        if now == self.loaded || !stable {
            return None;
        }
        match Site::reload(&self.root, self.limits, serving) {
            Ok(site) => {
                // The load saw what was fingerprinted only if nothing moved
                // meanwhile; otherwise the new site is still served (it is
                // newer) and what the load saw counts as loaded, so the
                // next look finds the rest. Entries that failed to read are
                // retried a few times.
                let complete = site.read_errors() == 0 || self.retries >= READ_RETRIES;
                if site.seen() != now || complete {
                    self.loaded = site.seen();
                    self.retries = 0;
                } else {
                    self.retries += 1;
                }
                Some(site)
            }
            Err(e) => {
                tracing::warn!("site reload: {e:#}; still serving the last good site");
                None
            }
        }
    }
}

/// Runs `watcher` every `interval` on its own thread until `stop`, handing
/// each new site to `shared`.
pub fn spawn(
    mut watcher: Watcher,
    interval: Duration,
    shared: Arc<SharedSite>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("bypass-reload".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(interval));
                if Instant::now() < next {
                    continue;
                }
                next = Instant::now() + interval;
                if let Some(site) = watcher.check(&shared.current()) {
                    let (files, bytes) = site.stats();
                    shared.publish(site);
                    tracing::info!(
                        "site {} reloaded: {files} file(s), {bytes} bytes cached",
                        watcher.root.display()
                    );
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::{testdir::TempDir, Lookup};

    fn body(site: &Site, target: &str) -> Option<Vec<u8>> {
        match site.lookup(target) {
            Lookup::File(entry) => Some(entry.body.to_vec()),
            _ => None,
        }
    }

    #[test]
    fn a_change_is_loaded_once_it_holds_still() {
        let dir = TempDir::new();
        dir.write("index.html", b"one");
        let fingerprint = Site::fingerprint(&dir.0).unwrap();
        let shared = SharedSite::new(Site::load(&dir.0, 1 << 20).unwrap());
        let mut core = SiteHandle::new(shared.clone());
        let mut watcher = Watcher::new(dir.0.clone(), 1 << 20, fingerprint);

        assert!(
            watcher.check(&shared.current()).is_none(),
            "nothing changed"
        );
        dir.write("index.html", b"two, longer");
        dir.write("new/page.html", b"new");
        assert!(
            watcher.check(&shared.current()).is_none(),
            "just changed: not yet"
        );
        let site = watcher
            .check(&shared.current())
            .expect("held still: loaded");
        shared.publish(site);
        assert!(
            watcher.check(&shared.current()).is_none(),
            "loaded: nothing more to do"
        );

        assert_eq!(body(core.get(), "/").as_deref(), Some(&b"one"[..]));
        assert!(core.refresh());
        assert!(!core.refresh(), "one switch per publish");
        assert_eq!(body(core.get(), "/").as_deref(), Some(&b"two, longer"[..]));
        assert_eq!(
            body(core.get(), "/new/page.html").as_deref(),
            Some(&b"new"[..])
        );

        std::fs::remove_file(dir.0.join("new/page.html")).unwrap();
        assert!(watcher.check(&shared.current()).is_none());
        shared.publish(
            watcher
                .check(&shared.current())
                .expect("a removal is a change"),
        );
        core.refresh();
        assert!(body(core.get(), "/new/page.html").is_none());
        assert!(
            matches!(core.get().lookup("/new"), Lookup::Redirect(_)),
            "the directory stays"
        );
    }

    #[test]
    fn a_file_that_keeps_changing_waits() {
        let dir = TempDir::new();
        dir.write("log.txt", b"a");
        let fingerprint = Site::fingerprint(&dir.0).unwrap();
        let serving = Arc::new(Site::load(&dir.0, 1 << 20).unwrap());
        let mut watcher = Watcher::new(dir.0.clone(), 1 << 20, fingerprint);
        let mut contents = Vec::from(&b"a"[..]);
        for _ in 0..5 {
            contents.push(b'a');
            dir.write("log.txt", &contents);
            assert!(watcher.check(&serving).is_none(), "still being written");
        }
        assert!(watcher.check(&serving).is_some());
    }

    #[test]
    fn a_vanished_root_keeps_the_last_site() {
        let dir = TempDir::new();
        dir.write("index.html", b"one");
        let fingerprint = Site::fingerprint(&dir.0).unwrap();
        let serving = Arc::new(Site::load(&dir.0, 1 << 20).unwrap());
        let mut watcher = Watcher::new(dir.0.clone(), 1 << 20, fingerprint);
        std::fs::remove_dir_all(&dir.0).unwrap();
        assert!(watcher.check(&serving).is_none());
        assert!(watcher.check(&serving).is_none());
        // Back, with other contents: loaded once it holds still.
        dir.write("index.html", b"back again");
        assert!(watcher.check(&serving).is_none());
        assert!(watcher.check(&serving).is_some());
    }

    /// A reload reads only what changed: unchanged files keep their bytes
    /// (the same allocation), siblings are attached afresh.
    #[test]
    fn a_reload_shares_unchanged_files() {
        let dir = TempDir::new();
        dir.write("same.css", b"body {}");
        dir.write("same.css.gz", b"gzipped");
        dir.write("big.bin", &[7u8; 100]);
        dir.write("edited.html", b"before");
        let first = Arc::new(Site::load(&dir.0, 64).unwrap());
        dir.write("edited.html", b"after, longer");
        std::fs::remove_file(dir.0.join("same.css.gz")).unwrap();
        let second = Site::reload(&dir.0, 64, &first).unwrap();
        let entry = |site: &Site, target: &str| match site.lookup(target) {
            Lookup::File(entry) => entry.clone(),
            other => panic!("{target}: {other:?}"),
        };
        let (old, new) = (entry(&first, "/same.css"), entry(&second, "/same.css"));
        assert!(Arc::ptr_eq(&old.body, &new.body), "unchanged: shared");
        assert!(
            old.gzip.is_some() && new.gzip.is_none(),
            "the removed sibling is gone"
        );
        let (old, new) = (entry(&first, "/big.bin"), entry(&second, "/big.bin"));
        assert!(Arc::ptr_eq(
            old.disk.as_ref().unwrap(),
            new.disk.as_ref().unwrap()
        ));
        assert_eq!(&*entry(&second, "/edited.html").body, b"after, longer");
        assert_eq!(second.stats(), Site::load(&dir.0, 64).unwrap().stats());
    }

    #[test]
    fn fingerprints_see_renames_and_new_directories() {
        let dir = TempDir::new();
        dir.write("a.html", b"x");
        let before = Site::fingerprint(&dir.0).unwrap();
        let loaded = Site::load(&dir.0, 1 << 20).unwrap();
        assert_eq!(loaded.seen(), before, "a load sees what a fingerprint does");
        assert_eq!(before, Site::fingerprint(&dir.0).unwrap(), "stable");
        std::fs::rename(dir.0.join("a.html"), dir.0.join("b.html")).unwrap();
        let renamed = Site::fingerprint(&dir.0).unwrap();
        assert_ne!(before, renamed);
        std::fs::create_dir(dir.0.join("empty")).unwrap();
        assert_ne!(renamed, Site::fingerprint(&dir.0).unwrap());
    }
}
