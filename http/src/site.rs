//! The website being served: every file under `--root`, read into memory
//! once, and the mapping from a request target to what to answer.
//!
//! Safety rests on one rule: `lookup` never touches the filesystem. It only
//! consults maps built by `load`, and `load` only admits files whose canonical
//! path lies inside the canonical root. So no spelling of a target (dot
//! segments, escapes, symlinks swapped in later) can reach outside the root;
//! the target checks below reject ambiguous spellings early on top of that.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

/// How deep `load` descends; stops runaway trees made of symlinked directories.
const MAX_DEPTH: usize = 64;

/// The cached site. Keys are normalized paths without the leading '/'
/// ("a/b.html"); the root directory is "".
pub struct Site {
    files: HashMap<String, Entry>,
    dirs: HashSet<String>,
    /// Each directory's key to its index.html's key, so answering "/dir/"
    /// builds no string.
    indexes: HashMap<String, String>,
    total_bytes: u64,
    /// Entries skipped because reading them failed (not those refused by
    /// rule, like symlinks out of the root): a reload retries them.
    read_errors: usize,
    /// See `seen`.
    seen: u64,
}

/// One file, ready to serve: its bytes in memory, or, above the cache
/// limit, an open handle to stream it from (the page cache keeps it warm).
/// Cloning shares the bytes.
#[derive(Clone)]
pub struct Entry {
    /// The bytes, for a cached file (empty for a streamed one).
    pub body: Arc<[u8]>,
    /// The file to stream from, for a file too big to cache.
    pub disk: Option<Arc<Streamed>>,
    /// e.g. "text/html; charset=utf-8"
    pub content_type: &'static str,
    /// A strong validator, quoted, e.g. "\"1f4-18c2a3b4c5d-9e3779b9\"":
    /// length in hex, mtime in nanoseconds since the epoch in hex, then the
    /// low 32 bits of `stamp` (which covers inode and ctime), so a file
    /// replaced with the same size and mtime (`cp -p`, `rsync -t`, `tar x`)
    /// still gets a new tag; RFC 9110 §8.8.3.
    /// It names the identity representation only: a server sending `gzip` or
    /// `brotli` must derive a different tag for those (§8.8.3 requires strong
    /// tags to differ across content codings).
    pub etag: String,
    /// The file's mtime, truncated to whole seconds (the precision of
    /// HTTP-date, so it compares directly with a parsed If-Modified-Since,
    /// RFC 9110 §13.1.3) and clamped to [epoch, load time] (§8.8.2.1: never
    /// in the future).
    pub last_modified: SystemTime,
    /// `last_modified` as an IMF-fixdate (httpdate::fmt_http_date), preformatted.
    pub last_modified_http: String,
    /// Pre-compressed siblings found beside the file (`name.gz`, `name.br`), if any.
    pub gzip: Option<Arc<[u8]>>,
    pub brotli: Option<Arc<[u8]>>,
    /// A digest of the file's metadata when it was read (`file_stamp`): a
    /// reload reuses the entry, bytes and all, while it is unchanged.
    pub stamp: u64,
}

impl Entry {
    /// The representation's length (cached or streamed).
    pub fn len(&self) -> u64 {
        self.disk
            .as_ref()
            .map_or(self.body.len() as u64, |disk| disk.len)
    }
}

/// A file served from disk as the response goes out, kept open from load
/// (so a rename or delete of its name does not affect it), with what its
/// validators were built from.
#[derive(Debug)]
pub struct Streamed {
    pub file: fs::File,
    /// The length at load: the Content-Length promised.
    pub len: u64,
    modified: Option<SystemTime>,
}

impl Streamed {
    /// Whether the open file still has the length and mtime it had at
    /// load. A file rewritten in place (truncated, grown, overwritten)
    /// would break the promised length or the validators, until the next
    /// reload replaces the entry. One fstat.
    pub fn unchanged(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|m| m.len() == self.len && m.modified().ok() == self.modified)
    }
}

impl fmt::Debug for Entry {
    // Bodies can be megabytes: show sizes, not bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("len", &self.len())
            .field("streamed", &self.disk.is_some())
            .field("content_type", &self.content_type)
            .field("etag", &self.etag)
            .field("last_modified_http", &self.last_modified_http)
            .field("gzip_len", &self.gzip.as_ref().map(|b| b.len()))
            .field("brotli_len", &self.brotli.as_ref().map(|b| b.len()))
            .finish()
    }
}

#[derive(Debug)]
pub enum Lookup<'a> {
    File(&'a Entry),
    /// The target names a directory without its trailing slash: redirect here
    /// (the path with '/' appended, query kept), RFC 9110 §15.4.2 (301).
    Redirect(String),
    NotFound,
    /// Not a valid origin-form target, or one that tries to leave the root.
    BadRequest,
}

/// What the cache may hold: files up to `max_file` bytes each, and
/// `max_total` bytes in all; files past either are kept open and streamed
/// from disk instead, so a large tree cannot take the machine's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub max_file: u64,
    pub max_total: u64,
}

impl From<u64> for CacheLimits {
    /// A per-file limit and no total one.
    fn from(max_file: u64) -> Self {
        CacheLimits {
            max_file,
            max_total: u64::MAX,
        }
    }
}

impl Site {
    /// Loads every regular file under `root` recursively. Symlinks are
    /// followed only when their canonical target stays inside the canonical
    /// root (otherwise skipped, with a tracing::warn). Files larger than
    /// `max_file` bytes are not read into memory but kept open, to be
    /// streamed.
    /// Hidden files are served like any other. Errors: root missing / not a
    /// directory → Err with a clear message naming the path. Unreadable
    /// entries below the root are skipped with a warning rather than failing
    /// the whole start-up.
    pub fn load(root: &Path, limits: impl Into<CacheLimits>) -> anyhow::Result<Site> {
        Site::load_reusing(root, limits.into(), None)
    }

    /// `load`, taking from `previous` every file whose metadata has not
    /// changed instead of reading it again: a reload costs what changed,
    /// and unchanged bytes are shared with the site being served rather
    /// than held twice.
    pub fn reload(
        root: &Path,
        limits: impl Into<CacheLimits>,
        previous: &Arc<Site>,
    ) -> anyhow::Result<Site> {
        Site::load_reusing(root, limits.into(), Some(previous.clone()))
    }

    fn load_reusing(
        root: &Path,
        limits: CacheLimits,
        previous: Option<Arc<Site>>,
    ) -> anyhow::Result<Site> {
        let canonical_root = fs::canonicalize(root)
            .with_context(|| format!("site root {}: cannot open", root.display()))?;
        if !canonical_root.is_dir() {
            bail!("site root {} is not a directory", root.display());
        }
        // Read the root eagerly so an unreadable root fails start-up instead
        // of yielding an empty site.
        fs::read_dir(&canonical_root)
            .with_context(|| format!("site root {}: cannot list", root.display()))?;

        let mut loader = Loader::new(canonical_root.clone(), limits, false)
            .with_context(|| format!("site root {}: cannot open", root.display()))?;
        loader.previous = previous;
        loader.walk(canonical_root);
        let seen = loader.fingerprint();
        let mut site = loader.site;
        site.seen = seen;
        site.attach_precompressed();
        site.indexes = site
            .dirs
            .iter()
            .filter_map(|dir| {
                let index = if dir.is_empty() {
                    "index.html".to_owned()
                } else {
                    format!("{dir}/index.html")
                };
                site.files
                    .contains_key(&index)
                    .then(|| (dir.clone(), index))
            })
            .collect();
        Ok(site)
    }

    /// A digest of what `load` would see under `root`, without reading any
    /// file: every directory's key, every file's key, real path, length,
    /// mtime, ctime and inode. Equal digests mean nothing a visitor could
    /// notice changed; `reload` compares them to decide when to load
    /// again. The walk is `load`'s own (same symlink and depth rules), with
    /// its warnings silenced: they were given when the site was loaded.
    pub fn fingerprint(root: &Path) -> anyhow::Result<u64> {
        let canonical_root = fs::canonicalize(root)
            .with_context(|| format!("site root {}: cannot open", root.display()))?;
        fs::read_dir(&canonical_root)
            .with_context(|| format!("site root {}: cannot list", root.display()))?;
        let mut loader = Loader::new(canonical_root.clone(), 0.into(), true)
            .with_context(|| format!("site root {}: cannot open", root.display()))?;
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            loader.walk(canonical_root)
        });
        Ok(loader.fingerprint())
    }

    /// The fingerprint of the tree as this load saw it (what
    /// `Site::fingerprint` gives for it): a later fingerprint that differs
    /// means something changed since, during the load included.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Number of files and total bytes cached (for the start-up log line).
    /// Each file counts once, including `.gz`/`.br` siblings (their bytes are
    /// shared with the entry they are attached to, not copied).
    pub fn stats(&self) -> (usize, u64) {
        (self.files.len(), self.total_bytes)
    }

    /// Entries that could not be read when loading (each was warned about).
    pub fn read_errors(&self) -> usize {
        self.read_errors
    }

    /// [`Site::lookup_with`], dot-files served (tests).
    #[cfg(test)]
    pub fn lookup(&self, target: &str) -> Lookup<'_> {
        self.lookup_with(target, true)
    }

    /// What to serve for a request target (origin-form, as on the request
    /// line: path plus optional `?query`, RFC 9112 §3.2.1); dot-files
    /// answer 404 unless `dotfiles` (see [`is_hidden`]).
    pub fn lookup_with(&self, target: &str, dotfiles: bool) -> Lookup<'_> {
        // Origin-form starts with '/'. Controls and spaces never belong in a
        // request-target (RFC 3986 §2, RFC 9112 §3.2); rejecting them here
        // also keeps them out of any Location we build from the query.
        if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Lookup::BadRequest;
        }
        // The fragment is never sent (RFC 9110 §7.1) but is dropped if it is.
        let target = target.split_once('#').map_or(target, |(before, _)| before);
        let (raw_path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        // Most targets are plain ("/", "/a/b.css", "/docs/"): their key is
        // the path itself, found without building a string.
        if let Some((key, wants_dir)) = plain_key(raw_path) {
            if !dotfiles && is_hidden(key) {
                return Lookup::NotFound;
            }
            return self.find(key, wants_dir, query);
        }
        let Some(decoded) = percent_decode(raw_path) else {
            return Lookup::BadRequest;
        };
        let Some(resolved) = resolve(&decoded) else {
            return Lookup::BadRequest;
        };
        if !dotfiles && is_hidden(&resolved.key) {
            return Lookup::NotFound;
        }
        self.find(&resolved.key, resolved.wants_dir, query)
    }

    /// What to serve for a normalized key.
    fn find(&self, key: &str, wants_dir: bool, query: Option<&str>) -> Lookup<'_> {
        if let Some(entry) = self.files.get(key) {
            // "/file.html/" names a directory that does not exist.
            return if wants_dir {
                Lookup::NotFound
            } else {
                Lookup::File(entry)
            };
        }
        if !self.dirs.contains(key) {
            return Lookup::NotFound;
        }
        if wants_dir {
            return self
                .indexes
                .get(key)
                .and_then(|index| self.files.get(index))
                .map_or(Lookup::NotFound, Lookup::File);
        }
        Lookup::Redirect(redirect_location(key, query))
    }

    /// Gives each entry the bytes of its `name.gz` / `name.br` neighbour, so
    /// the server can answer Accept-Encoding (RFC 9110 §12.5.3) without
    /// compressing at request time.
    fn attach_precompressed(&mut self) {
        let keys: Vec<String> = self.files.keys().cloned().collect();
        for key in keys {
            let gzip = self.body_of(&format!("{key}.gz"));
            let brotli = self.body_of(&format!("{key}.br"));
            if let Some(entry) = self.files.get_mut(&key) {
                entry.gzip = gzip;
                entry.brotli = brotli;
            }
        }
    }

    /// A cached sibling's bytes (a streamed one is not used as a sibling).
    fn body_of(&self, key: &str) -> Option<Arc<[u8]>> {
        self.files
            .get(key)
            .filter(|entry| entry.disk.is_none())
            .map(|entry| Arc::clone(&entry.body))
    }
}

/// The state of one `Site::load` (or `Site::fingerprint`) walk.
struct Loader {
    /// Canonical; every admitted path must lie under it.
    root: PathBuf,
    /// The root, opened once: every file and directory is opened beneath
    /// it (openat2 with RESOLVE_BENEATH).
    root_fd: std::os::fd::OwnedFd,
    max_file: u64,
    /// Bytes the cache may still take (`--max-cache-bytes`).
    budget: u64,
    now: SystemTime,
    site: Site,
    /// Only fingerprint the files, read none.
    stat_only: bool,
    /// An order-independent sum of one digest per file seen.
    files_seen: u64,
    /// The site being served, whose unchanged entries a reload takes over.
    previous: Option<Arc<Site>>,
}

/// What a file's entry depends on: length, mtime, ctime and identity. An
/// equal stamp means the bytes read before are still the file's.
fn file_stamp(metadata: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    digest(&(
        metadata.len(),
        (metadata.mtime(), metadata.mtime_nsec()),
        (metadata.ctime(), metadata.ctime_nsec()),
        (metadata.dev(), metadata.ino()),
    ))
}

/// One value's SipHash with fixed keys (stable within a process, which is
/// all a fingerprint is compared across).
fn digest(value: &impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// A directory still to read: its canonical path, its key, and the canonical
/// paths of the directories above it (to refuse symlink cycles).
struct PendingDir {
    path: PathBuf,
    key: String,
    ancestors: Vec<PathBuf>,
}

impl Loader {
    fn new(root: PathBuf, limits: CacheLimits, stat_only: bool) -> std::io::Result<Loader> {
        let root_fd = std::os::fd::OwnedFd::from(fs::File::open(&root)?);
        Ok(Loader {
            root,
            root_fd,
            max_file: limits.max_file,
            budget: limits.max_total,
            // One clock reading for the whole load keeps clamping consistent.
            now: SystemTime::now(),
            site: Site {
                files: HashMap::new(),
                dirs: HashSet::new(),
                indexes: HashMap::new(),
                total_bytes: 0,
                read_errors: 0,
                seen: 0,
            },
            stat_only,
            files_seen: 0,
            previous: None,
        })
    }

    /// The walk's fingerprint: the files seen and every directory's key.
    fn fingerprint(&self) -> u64 {
        self.site.dirs.iter().fold(self.files_seen, |sum, key| {
            sum.wrapping_add(digest(&("dir", key)))
        })
    }

    fn walk(&mut self, root: PathBuf) {
        let mut pending = vec![PendingDir {
            path: root,
            key: String::new(),
            ancestors: Vec::new(),
        }];
        while let Some(dir) = pending.pop() {
            self.site.dirs.insert(dir.key.clone());
            // Listed through a descriptor opened beneath the root: a
            // directory swapped for a link out of it since it was admitted
            // is not followed.
            let names = match self.list_beneath(&dir.path) {
                Ok(names) => names,
                Err(e) => {
                    tracing::warn!(dir = %dir.path.display(), error = %e, "skipping unreadable directory");
                    self.site.read_errors += 1;
                    continue;
                }
            };
            for name in names {
                let path = dir.path.join(&name);
                // A name that is not UTF-8 could never be requested: targets
                // must decode to UTF-8.
                let Ok(name) = name.into_string() else {
                    tracing::warn!(path = %path.display(), "skipping file with a non-UTF-8 name");
                    continue;
                };
                let key = if dir.key.is_empty() {
                    name
                } else {
                    format!("{}/{name}", dir.key)
                };
                let Some((real_path, metadata)) = self.admit(&path) else {
                    continue;
                };
                if metadata.is_dir() {
                    if dir.ancestors.contains(&real_path) || real_path == dir.path {
                        tracing::warn!(path = %path.display(), "skipping symlink that loops back to a parent directory");
                    } else if dir.ancestors.len() >= MAX_DEPTH {
                        tracing::warn!(path = %path.display(), "skipping directory nested deeper than {MAX_DEPTH} levels");
                    } else {
                        let mut ancestors = dir.ancestors.clone();
                        ancestors.push(dir.path.clone());
                        pending.push(PendingDir {
                            path: real_path,
                            key,
                            ancestors,
                        });
                    }
                } else if metadata.is_file() {
                    let seen = digest(&(&key, &real_path, file_stamp(&metadata)));
                    self.files_seen = self.files_seen.wrapping_add(seen);
                    if !self.stat_only && !self.reuse(&key, &metadata) {
                        self.load_file(&real_path, key);
                    }
                }
                // FIFOs, sockets and devices are not content; ignore them.
            }
        }
    }

    /// Opens `path`, a canonical path under the root (the walk resolves
    /// every admitted link to its canonical target first), through the
    /// root's descriptor with openat2's RESOLVE_BENEATH and
    /// RESOLVE_NO_SYMLINKS: a component swapped for a symlink since the walk
    /// looked (a directory turned into a link out of the root) makes the
    /// open fail instead of being followed. The check and the open are one
    /// step in the kernel, so there is no window between them.
    fn open_beneath(&self, path: &Path, directory: bool) -> std::io::Result<std::os::fd::OwnedFd> {
        use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
        let relative = path.strip_prefix(&self.root).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "outside the site root",
            )
        })?;
        let relative = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        let mut flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        if directory {
            flags |= OFlag::O_DIRECTORY;
        }
        let how = OpenHow::new()
            .flags(flags)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        openat2(&self.root_fd, relative, how).map_err(std::io::Error::from)
    }

    /// The names in directory `path`, listed through a descriptor opened
    /// beneath the root.
    fn list_beneath(&self, path: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
        use std::os::unix::ffi::OsStrExt;
        let fd = self.open_beneath(path, true)?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(std::io::Error::from)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(std::io::Error::from)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(std::ffi::OsStr::from_bytes(name).to_owned());
            }
        }
        Ok(names)
    }

    /// The path to read for `path` and its (followed) metadata, or None if
    /// it must not be served. Directories reached without symlinks are
    /// already canonical, so only symlinks need resolving and checking.
    fn admit(&mut self, path: &Path) -> Option<(PathBuf, fs::Metadata)> {
        let own = match fs::symlink_metadata(path) {
            Ok(own) => own,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping unreadable entry");
                self.site.read_errors += 1;
                return None;
            }
        };
        if !own.file_type().is_symlink() {
            return Some((path.to_path_buf(), own));
        }
        let target = match fs::canonicalize(path) {
            Ok(target) => target,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping broken symlink");
                return None;
            }
        };
        // Component-wise, so "/srv/site2" is not inside "/srv/site".
        if !target.starts_with(&self.root) {
            tracing::warn!(path = %path.display(), target = %target.display(), "skipping symlink that leaves the site root");
            return None;
        }
        match fs::metadata(&target) {
            Ok(metadata) => Some((target, metadata)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping unreadable symlink target");
                self.site.read_errors += 1;
                None
            }
        }
    }

    /// Takes the previous site's entry for `key` if the file is unchanged
    /// (and still on the same side of the cache limit).
    fn reuse(&mut self, key: &str, metadata: &fs::Metadata) -> bool {
        let stamp = file_stamp(metadata);
        let streamed = !self.fits(metadata.len());
        let Some(mut entry) = self
            .previous
            .as_ref()
            .and_then(|previous| previous.files.get(key))
            .filter(|entry| entry.stamp == stamp && entry.disk.is_some() == streamed)
            .cloned()
        else {
            return false;
        };
        // Siblings are attached afresh: one may have gone.
        entry.gzip = None;
        entry.brotli = None;
        if entry.disk.is_none() {
            self.site.total_bytes += entry.body.len() as u64;
            self.budget -= entry.body.len() as u64;
        }
        self.site.files.insert(key.to_owned(), entry);
        true
    }

    /// Whether a file of `len` bytes is read into the cache (or streamed).
    fn fits(&self, len: u64) -> bool {
        len <= self.max_file && len <= self.budget
    }

    fn load_file(&mut self, path: &Path, key: String) {
        // Too big to cache: keep it open and stream it.
        let opened = self.open_beneath(path, false).and_then(|fd| {
            let f = fs::File::from(fd);
            let m = f.metadata()?;
            Ok((f, m))
        });
        if let Ok((file, metadata)) = opened {
            if metadata.is_file() && !self.fits(metadata.len()) {
                let entry = self.entry(&key, Vec::new(), &metadata, Some(file));
                self.site.files.insert(key, entry);
                return;
            }
        }
        let read = || -> std::io::Result<Option<(Vec<u8>, fs::Metadata)>> {
            let mut file = fs::File::from(self.open_beneath(path, false)?);
            // Metadata from the open handle describes exactly the bytes read.
            let metadata = file.metadata()?;
            if !metadata.is_file() || metadata.len() > self.max_file {
                return Ok(None);
            }
            let mut body = Vec::with_capacity(metadata.len() as usize);
            // The file may grow while being read; never hold more than the cap.
            file.by_ref()
                .take(self.max_file + 1)
                .read_to_end(&mut body)?;
            if body.len() as u64 > self.max_file {
                return Ok(None);
            }
            Ok(Some((body, metadata)))
        };
        let (body, metadata) = match read() {
            Ok(Some(loaded)) => loaded,
            Ok(None) => {
                tracing::warn!(path = %path.display(), max_file = self.max_file, "skipping file larger than the in-memory limit (or not a regular file)");
                return;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping unreadable file");
                self.site.read_errors += 1;
                return;
            }
        };
        let entry = self.entry(&key, body, &metadata, None);
        self.site.total_bytes += entry.body.len() as u64;
        self.budget = self.budget.saturating_sub(entry.body.len() as u64);
        self.site.files.insert(key, entry);
    }

    /// An entry for `body` (cached) or `file` (streamed), with validators
    /// from the file's length and mtime.
    fn entry(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: &fs::Metadata,
        file: Option<fs::File>,
    ) -> Entry {
        let len = file.as_ref().map_or(body.len() as u64, |_| metadata.len());
        let mtime = metadata.modified().unwrap_or(self.now);
        let last_modified = http_date_clamp(mtime, self.now);
        let mtime_nanos = mtime
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let stamp = file_stamp(metadata);
        Entry {
            // The stamp's low bits stand for inode and ctime in the tag.
            etag: format!("\"{len:x}-{mtime_nanos:x}-{:08x}\"", stamp as u32),
            content_type: content_type(key),
            last_modified,
            last_modified_http: httpdate::fmt_http_date(last_modified),
            body: body.into(),
            disk: file.map(|file| {
                Arc::new(Streamed {
                    file,
                    len,
                    modified: metadata.modified().ok(),
                })
            }),
            gzip: None,
            brotli: None,
            stamp,
        }
    }
}

/// Whole seconds within [epoch, now]: what HTTP-date can express (and
/// httpdate panics before the epoch).
fn http_date_clamp(mtime: SystemTime, now: SystemTime) -> SystemTime {
    let capped = mtime.min(now);
    let secs = capped.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Percent-decodes a path (RFC 3986 §2.1). None for anything that could make
/// one name mean two things: malformed escapes, NUL (raw or encoded), an
/// encoded '/' or '\' (a separator smuggled inside a segment, §7.3), a raw
/// '\' (a separator on some systems), or bytes that are not UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let high = hex_value(*bytes.get(i + 1)?)?;
                let low = hex_value(*bytes.get(i + 2)?)?;
                let byte = (high << 4) | low;
                if matches!(byte, 0 | b'/' | b'\\') {
                    return None;
                }
                out.push(byte);
                i += 3;
            }
            0 | b'\\' => return None,
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// A decoded path with dot segments removed (RFC 3986 §5.2.4).
struct Resolved {
    /// Segments joined by '/', no leading '/'; "" is the root.
    key: String,
    /// The path ended in '/', "." or "..": it names a directory.
    wants_dir: bool,
}

/// The key and wants-dir of a path that needs no decoding or normalizing:
/// no escapes, no backslash, no empty or dot segments (a trailing '/'
/// aside). What `resolve(percent_decode(path))` would give, without
/// allocating; None sends the path the long way.
/// Whether a key (a path below the root, no leading '/') names a hidden
/// file or lies in a hidden directory: a segment starting with '.' (`.env`,
/// `.git/config`, `.htpasswd`), which sites keep beside their pages but
/// never mean to publish. `.well-known/` (RFC 8615) is public by design;
/// dot-segments below it are hidden again.
pub fn is_hidden(key: &str) -> bool {
    let rest = match key.strip_prefix(".well-known") {
        Some(r) if r.is_empty() || r.starts_with('/') => r,
        _ => key,
    };
    rest.split('/').any(|segment| segment.starts_with('.'))
}

fn plain_key(path: &str) -> Option<(&str, bool)> {
    let rest = path.strip_prefix('/')?;
    let (key, wants_dir) = match rest.strip_suffix('/') {
        Some(key) => (key, true),
        None => (rest, rest.is_empty()),
    };
    if key.is_empty() {
        return wants_dir.then_some(("", true));
    }
    let plain = !key.bytes().any(|b| b == b'%' || b == b'\\')
        && key
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."));
    plain.then_some((key, wants_dir))
}

/// Removes empty and dot segments. None when ".." would climb above the root
/// (RFC 3986 would clamp it silently; a client sending it is broken or probing).
fn resolve(decoded: &str) -> Option<Resolved> {
    let mut segments: Vec<&str> = Vec::new();
    let mut wants_dir = true;
    for segment in decoded.split('/') {
        match segment {
            "" | "." => wants_dir = true,
            ".." => {
                segments.pop()?;
                wants_dir = true;
            }
            name => {
                segments.push(name);
                wants_dir = false;
            }
        }
    }
    Some(Resolved {
        key: segments.join("/"),
        wants_dir,
    })
}

/// The Location for a directory named without its trailing slash. Built from
/// the normalized path, re-encoded, rather than echoing the request: echoing
/// "//evil.example" would send browsers to another host (a network-path
/// reference, RFC 3986 §4.2). The query is kept as sent, with non-ASCII bytes
/// percent-encoded so the header stays ASCII.
fn redirect_location(key: &str, query: Option<&str>) -> String {
    let mut location = String::with_capacity(key.len() + 2);
    for segment in key.split('/') {
        location.push('/');
        for &byte in segment.as_bytes() {
            if is_pchar(byte) {
                location.push(char::from(byte));
            } else {
                push_escaped(&mut location, byte);
            }
        }
    }
    location.push('/');
    if let Some(query) = query {
        location.push('?');
        for &byte in query.as_bytes() {
            if byte.is_ascii() {
                location.push(char::from(byte));
            } else {
                push_escaped(&mut location, byte);
            }
        }
    }
    location
}

/// RFC 3986 §3.3 pchar, less '%' (a literal '%' in a decoded name must be
/// re-escaped).
fn is_pchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte)
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xf)]));
}

/// The media type for a file name, by extension (case-insensitive). Names
/// like ".htaccess" have no extension. Text types carry charset=utf-8 so
/// browsers do not sniff (RFC 9110 §8.3).
fn content_type(key: &str) -> &'static str {
    let name = key.rsplit('/').next().unwrap_or(key);
    let extension = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => extension.to_ascii_lowercase(),
        _ => return "application/octet-stream",
    };
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/vnd.microsoft.icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "gz" => "application/gzip",
        other => system_types()
            .get(other)
            .copied()
            .unwrap_or("application/octet-stream"),
    }
}

/// Where Debian (package media-types) and most systems keep the table of
/// media types by extension.
const MIME_TYPES: &str = "/etc/mime.types";

/// The system's table, for extensions the built-in one does not know;
/// read once, on first use (empty when the file is missing).
fn system_types() -> &'static std::collections::HashMap<String, &'static str> {
    static TYPES: std::sync::OnceLock<std::collections::HashMap<String, &'static str>> =
        std::sync::OnceLock::new();
    TYPES.get_or_init(|| {
        fs::read_to_string(MIME_TYPES)
            .map(|text| parse_mime_types(&text))
            .unwrap_or_default()
    })
}

/// `type ext ext...` lines of a mime.types file (`#` comments); the first
/// type named for an extension wins. The types are kept for the process's
/// life (a few hundred short strings, read once).
fn parse_mime_types(text: &str) -> std::collections::HashMap<String, &'static str> {
    let mut map = std::collections::HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(media) = words.next() else { continue };
        // type/subtype, nothing that could break a header.
        let valid = media
            .split_once('/')
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
            && media
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/+-.".contains(&b));
        if !valid {
            continue;
        }
        let mut leaked: Option<&'static str> = None;
        for ext in words {
            let ext = ext.to_ascii_lowercase();
            if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(ext) {
                let media =
                    *leaked.get_or_insert_with(|| &*Box::leak(media.to_owned().into_boxed_str()));
                slot.insert(media);
            }
        }
    }
    map
}

#[cfg(test)]
pub(crate) mod testdir {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new() -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("bypass-site-test-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        pub fn write(&self, relative: &str, contents: &[u8]) -> PathBuf {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, contents).unwrap();
            path
        }

        pub fn site(&self) -> Site {
            Site::load(&self.0, 1 << 20).unwrap()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::testdir::TempDir;

    /// The allocation-free path agrees with decoding and normalizing on
    /// every path it takes, over every short path from a small alphabet.
    #[test]
    fn dotfiles_are_hidden_but_well_known_is_not() {
        for (key, hidden) in [
            (".env", true),
            (".git/config", true),
            ("a/.htpasswd", true),
            ("a/.b/c.html", true),
            (".well-known/acme-challenge/tok", false),
            (".well-known", false),
            (".well-known/.secret", true),
            (".well-knownx/a", true),
            ("a.b/c", false),
            ("index.html", false),
            ("", false),
        ] {
            assert_eq!(is_hidden(key), hidden, "{key}");
        }
        let dir = TempDir::new();
        dir.write(".env", b"SECRET=1");
        dir.write(".git/config", b"[core]");
        dir.write(".well-known/security.txt", b"Contact: x");
        dir.write("page.html", b"ok");
        let site = dir.site();
        for target in [
            "/.env",
            "/.git/config",
            "/%2egit/config",
            "/a/../.env",
            "/.git/",
        ] {
            assert!(
                matches!(site.lookup_with(target, false), Lookup::NotFound),
                "{target}"
            );
        }
        assert!(matches!(site.lookup_with("/.env", true), Lookup::File(_)));
        assert!(matches!(
            site.lookup_with("/.well-known/security.txt", false),
            Lookup::File(_)
        ));
        assert!(matches!(
            site.lookup_with("/page.html", false),
            Lookup::File(_)
        ));
    }

    #[test]
    fn the_plain_fast_path_matches_the_full_one() {
        let alphabet = ["a", "b.c", "/", ".", "..", "%2e", "\\", "%41"];
        let mut paths = vec![String::from("/")];
        let mut taken = 0;
        for _ in 0..5 {
            let longer: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |piece| format!("{p}{piece}")))
                .collect();
            paths.extend(longer);
            paths.dedup();
        }
        for path in &paths {
            let Some((key, wants_dir)) = plain_key(path) else {
                continue;
            };
            taken += 1;
            let full = percent_decode(path).and_then(|d| resolve(&d));
            let full = full.map(|r| (r.key, r.wants_dir));
            assert_eq!(full, Some((key.to_owned(), wants_dir)), "{path}");
        }
        assert!(taken > 100, "the fast path is taken ({taken})");
    }

    #[track_caller]
    fn body<'a>(site: &'a Site, target: &str) -> &'a [u8] {
        match site.lookup(target) {
            Lookup::File(entry) => &entry.body,
            other => panic!("{target}: expected a file, got {other:?}"),
        }
    }

    #[track_caller]
    fn entry<'a>(site: &'a Site, target: &str) -> &'a Entry {
        match site.lookup(target) {
            Lookup::File(entry) => entry,
            other => panic!("{target}: expected a file, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_not_found(site: &Site, target: &str) {
        assert!(
            matches!(site.lookup(target), Lookup::NotFound),
            "{target}: {:?}",
            site.lookup(target)
        );
    }

    #[track_caller]
    fn assert_bad_request(site: &Site, target: &str) {
        assert!(
            matches!(site.lookup(target), Lookup::BadRequest),
            "{target}: {:?}",
            site.lookup(target)
        );
    }

    #[track_caller]
    fn assert_redirect(site: &Site, target: &str, location: &str) {
        match site.lookup(target) {
            Lookup::Redirect(got) => assert_eq!(got, location, "{target}"),
            other => panic!("{target}: expected a redirect, got {other:?}"),
        }
    }

    #[test]
    fn opens_never_leave_the_root_even_after_a_swap() {
        let dir = TempDir::new();
        dir.write("sub/page.html", b"inside");
        dir.write("other/x.txt", b"also inside");
        let outside = TempDir::new();
        outside.write("secret.txt", b"outside");
        let root = fs::canonicalize(&dir.0).unwrap();
        let loader = Loader::new(root.clone(), 1024.into(), false).unwrap();
        assert!(loader.list_beneath(&root.join("sub")).is_ok());
        // The walk admitted sub/ as a directory; now it becomes a link out.
        fs::remove_dir_all(root.join("sub")).unwrap();
        std::os::unix::fs::symlink(&outside.0, root.join("sub")).unwrap();
        assert!(loader.list_beneath(&root.join("sub")).is_err());
        assert!(loader
            .open_beneath(&root.join("sub/secret.txt"), false)
            .is_err());
        // Canonical paths open; a path through a link does not (the walk
        // opens a link's canonical target, checked to lie inside).
        std::os::unix::fs::symlink(root.join("other"), root.join("alias")).unwrap();
        assert!(loader
            .open_beneath(&root.join("other/x.txt"), false)
            .is_ok());
        assert!(loader
            .open_beneath(&root.join("alias/x.txt"), false)
            .is_err());
        // And a path that is not under the root at all is refused.
        assert!(loader
            .open_beneath(&outside.0.join("secret.txt"), false)
            .is_err());
    }

    #[test]
    fn the_cache_budget_streams_what_does_not_fit() {
        let dir = TempDir::new();
        for name in ["a.txt", "b.txt", "c.txt", "d.txt"] {
            dir.write(name, &[b'x'; 100]);
        }
        let limits = CacheLimits {
            max_file: 1000,
            max_total: 250,
        };
        let site = Site::load(&dir.0, limits).unwrap();
        let (cached, streamed): (Vec<_>, Vec<_>) =
            site.files.values().partition(|e| e.disk.is_none());
        assert_eq!(
            (cached.len(), streamed.len()),
            (2, 2),
            "two fit in 250 bytes"
        );
        assert_eq!(site.stats().1, 200, "cached bytes within the budget");
        // Every file is still served, cached or not.
        for name in ["/a.txt", "/b.txt", "/c.txt", "/d.txt"] {
            assert!(matches!(site.lookup(name), Lookup::File(_)), "{name}");
        }
        // A reload keeps to the budget too (unchanged entries reused).
        let again = Site::reload(&dir.0, limits, &Arc::new(site)).unwrap();
        assert_eq!(again.stats().1, 200);
    }

    #[test]
    fn mime_types_file_fills_in_unknown_extensions() {
        let map = parse_mime_types(
            "# comment\napplication/epub+zip\t\tepub\ntext/x-first  dup\ntext/x-second dup\n\
             bad type\nno-slash ext\ninvalid/ty\"pe q\nmodel/gltf-binary glb GLB2\n",
        );
        assert_eq!(map.get("epub"), Some(&"application/epub+zip"));
        assert_eq!(map.get("dup"), Some(&"text/x-first"), "the first wins");
        assert_eq!(
            map.get("glb2"),
            Some(&"model/gltf-binary"),
            "extensions fold case"
        );
        assert!(!map.contains_key("ext") && !map.contains_key("q") && !map.contains_key("type"));
    }

    #[test]
    fn serves_files_with_bytes_and_content_type() {
        let dir = TempDir::new();
        dir.write("style.css", b"body{}");
        dir.write("a/b/deep.JSON", b"{}");
        dir.write(".hidden", b"secret-ish");
        let site = dir.site();
        let css = entry(&site, "/style.css");
        assert_eq!(&*css.body, b"body{}");
        assert_eq!(css.content_type, "text/css; charset=utf-8");
        let json = entry(&site, "/a/b/deep.JSON");
        assert_eq!(&*json.body, b"{}");
        assert_eq!(json.content_type, "application/json");
        assert_eq!(
            entry(&site, "/.hidden").content_type,
            "application/octet-stream"
        );
        assert_eq!(site.stats(), (3, 6 + 2 + 10));
    }

    #[test]
    fn directories_serve_index_or_redirect() {
        let dir = TempDir::new();
        dir.write("index.html", b"root index");
        dir.write("docs/index.html", b"docs index");
        fs::create_dir_all(dir.0.join("empty")).unwrap();
        let site = dir.site();
        assert_eq!(body(&site, "/"), b"root index");
        assert_eq!(body(&site, "/docs/"), b"docs index");
        assert_eq!(body(&site, "/docs/?q=1"), b"docs index");
        assert_eq!(body(&site, "/docs/."), b"docs index");
        assert_redirect(&site, "/docs", "/docs/");
        assert_redirect(&site, "/docs?x=1", "/docs/?x=1");
        assert_redirect(&site, "/empty", "/empty/");
        assert_not_found(&site, "/empty/");
        assert_not_found(&site, "/missing.html");
        assert_not_found(&site, "/docs/missing");
        assert_not_found(&site, "/docs/index.html/");
        assert_not_found(&site, "/DOCS/index.html");
    }

    #[test]
    fn redirect_never_points_off_site() {
        let dir = TempDir::new();
        dir.write("evil.example/index.html", b"x");
        dir.write("a b/index.html", b"y");
        let site = dir.site();
        assert_redirect(&site, "//evil.example", "/evil.example/");
        assert_redirect(&site, "/a%20b?q=%C3%A9", "/a%20b/?q=%C3%A9");
        assert_redirect(&site, "/a%20b?q=é", "/a%20b/?q=%C3%A9");
    }

    #[test]
    fn rejects_bad_and_escaping_targets() {
        let dir = TempDir::new();
        dir.write("a/b", b"ab");
        dir.write("x", b"x");
        let site = dir.site();
        for target in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2e/x",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a%00b",
            "/a\0b",
            "/a\\b",
            "/%zz",
            "/%",
            "/%4",
            "/%ff",
            "/a b",
            "/a\r\nb",
            "relative",
            "",
            "*",
            "http://host/x",
        ] {
            assert_bad_request(&site, target);
        }
    }

    #[test]
    fn normalizes_dot_segments_and_escapes() {
        let dir = TempDir::new();
        dir.write("a/b/c", b"abc");
        dir.write("a/c", b"ac");
        dir.write("hello world.txt", b"hi");
        dir.write("caf\u{e9}.txt", b"coffee");
        dir.write("100%.txt", b"all");
        let site = dir.site();
        assert_eq!(body(&site, "/a/./b//c"), b"abc");
        assert_eq!(body(&site, "/a/b/../c"), b"ac");
        assert_eq!(body(&site, "/a/%2e%2E/a/c"), b"ac");
        assert_eq!(body(&site, "/hello%20world.txt"), b"hi");
        assert_eq!(body(&site, "/caf%C3%A9.txt"), b"coffee");
        assert_eq!(body(&site, "/100%25.txt?x#frag"), b"all");
        assert_not_found(&site, "/hello+world.txt");
    }

    #[test]
    fn symlinks_are_followed_only_inside_the_root() {
        let outside = TempDir::new();
        let secret = outside.write("secret.txt", b"secret");
        let dir = TempDir::new();
        dir.write("real/page.html", b"page");
        std::os::unix::fs::symlink(dir.0.join("real/page.html"), dir.0.join("alias.html")).unwrap();
        std::os::unix::fs::symlink(dir.0.join("real"), dir.0.join("linked")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.0.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(&outside.0, dir.0.join("leakdir")).unwrap();
        std::os::unix::fs::symlink(&dir.0, dir.0.join("real/loop")).unwrap();
        std::os::unix::fs::symlink(dir.0.join("nowhere"), dir.0.join("dangling")).unwrap();
        let site = dir.site();
        assert_eq!(body(&site, "/alias.html"), b"page");
        assert_eq!(body(&site, "/linked/page.html"), b"page");
        assert_not_found(&site, "/leak.txt");
        assert_not_found(&site, "/leakdir/secret.txt");
        assert_not_found(&site, "/leakdir/");
        assert_not_found(&site, "/real/loop/alias.html");
        assert_not_found(&site, "/dangling");
    }

    #[test]
    fn etag_tracks_length_and_mtime() {
        let dir = TempDir::new();
        let path = dir.write("f.txt", b"hello");
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(time)
            .unwrap();
        let first = dir.site();
        let first = entry(&first, "/f.txt");
        assert!(
            first
                .etag
                .starts_with(&format!("\"5-{:x}-", 1_700_000_000u128 * 1_000_000_000)),
            "{}",
            first.etag
        );
        assert_eq!(first.last_modified, time);
        assert_eq!(first.last_modified_http, "Tue, 14 Nov 2023 22:13:20 GMT");

        fs::write(&path, b"hello!").unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(time)
            .unwrap();
        let longer = dir.site();
        assert_ne!(entry(&longer, "/f.txt").etag, first.etag);

        fs::write(&path, b"hello").unwrap();
        let later = time + Duration::from_millis(1);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let touched = dir.site();
        assert_ne!(entry(&touched, "/f.txt").etag, first.etag);
        // Sub-second changes do not show in Last-Modified.
        assert_eq!(entry(&touched, "/f.txt").last_modified, time);

        // Replaced by another file with the same length and mtime (cp -p):
        // a new inode, so a new tag.
        let other = dir.write("other.txt", b"HELLO");
        fs::File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(later)
            .unwrap();
        fs::rename(&other, &path).unwrap();
        let replaced = dir.site();
        assert_ne!(
            entry(&replaced, "/f.txt").etag,
            entry(&touched, "/f.txt").etag
        );
    }

    #[test]
    fn future_mtime_is_clamped_to_now() {
        let dir = TempDir::new();
        let path = dir.write("f.txt", b"x");
        let future = SystemTime::now() + Duration::from_secs(365 * 86_400);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(future)
            .unwrap();
        let site = dir.site();
        assert!(entry(&site, "/f.txt").last_modified <= SystemTime::now());
    }

    #[test]
    fn precompressed_siblings_are_attached_and_servable() {
        let dir = TempDir::new();
        dir.write("app.js", b"plain");
        dir.write("app.js.gz", b"gzipped");
        dir.write("app.js.br", b"brotli");
        dir.write("only.css", b"css");
        let site = dir.site();
        let js = entry(&site, "/app.js");
        assert_eq!(js.gzip.as_deref(), Some(&b"gzipped"[..]));
        assert_eq!(js.brotli.as_deref(), Some(&b"brotli"[..]));
        assert!(entry(&site, "/only.css").gzip.is_none());
        assert!(entry(&site, "/only.css").brotli.is_none());
        assert_eq!(entry(&site, "/app.js.gz").content_type, "application/gzip");
        assert_eq!(
            entry(&site, "/app.js.br").content_type,
            "application/octet-stream"
        );
    }

    #[test]
    fn files_over_the_limit_are_streamed_not_cached() {
        let dir = TempDir::new();
        dir.write("small.bin", &[7; 10]);
        dir.write("big.bin", &[7; 11]);
        let site = Site::load(&dir.0, 10).unwrap();
        assert_eq!(body(&site, "/small.bin").len(), 10);
        let Lookup::File(big) = site.lookup("/big.bin") else {
            panic!("the big file is served");
        };
        assert!(big.body.is_empty(), "not in memory");
        let disk = big.disk.as_ref().expect("streamed from disk");
        assert_eq!(disk.len, 11);
        let mut buf = [0u8; 11];
        use std::os::unix::fs::FileExt;
        assert_eq!(disk.file.read_at(&mut buf, 0).unwrap(), 11);
        assert!(disk.unchanged());
        // Overwritten in place with the same length: no longer what was
        // loaded (mtime), nor once grown.
        let path = dir.0.join("big.bin");
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_secs(1))
            .unwrap();
        assert!(!disk.unchanged(), "rewritten in place");
        fs::write(&path, b"0123456789abc").unwrap();
        assert!(!disk.unchanged(), "grown");
        assert_eq!(big.len(), 11);
        assert!(big.etag.starts_with("\"b-"), "{}", big.etag);
        assert_eq!(site.stats(), (2, 10), "only cached bytes count");
    }

    #[test]
    fn load_errors_name_the_root() {
        let dir = TempDir::new();
        let missing = dir.0.join("no-such-root");
        let error = format!("{:#}", Site::load(&missing, 1024).err().unwrap());
        assert!(error.contains(&missing.display().to_string()), "{error}");
        let file = dir.write("plain-file", b"x");
        let error = format!("{:#}", Site::load(&file, 1024).err().unwrap());
        assert!(
            error.contains("not a directory") && error.contains("plain-file"),
            "{error}"
        );
    }

    #[test]
    fn content_types_by_extension() {
        for (name, expected) in [
            ("a.HTML", "text/html; charset=utf-8"),
            ("a.htm", "text/html; charset=utf-8"),
            ("a.mjs", "text/javascript; charset=utf-8"),
            ("a.js.map", "application/json"),
            ("a.woff2", "font/woff2"),
            ("a.ico", "image/vnd.microsoft.icon"),
            ("a.wasm", "application/wasm"),
            ("dir.d/noext", "application/octet-stream"),
            (".gitignore", "application/octet-stream"),
            ("a.unknown", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name), expected, "{name}");
        }
    }
}
