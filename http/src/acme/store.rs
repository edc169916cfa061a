//! What the ACME client keeps in `--state-dir`, per CA directory so that
//! staging, production and a test CA never mix:
//!
//! ```text
//! acme/<directory>/account.json      the account key and URL (0600)
//! acme/<directory>/<name>/cert.pem   the chain, leaf first (0644)
//! acme/<directory>/<name>/key.pem    its private key (0600)
//! ```
//!
//! Every file is written through a temporary file and a rename, so a crash
//! or a reader never sees half of one.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::der::CertFacts;
use crate::tls::{write_atomically, Identity};

/// The ACME part of the state directory for one CA directory URL.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A directory name for a URL: its host and path with anything but
/// letters, digits, `-` and `.` turned into `_`.
fn dir_name(directory_url: &str) -> String {
    let rest = directory_url
        .split_once("://")
        .map_or(directory_url, |(_, r)| r);
    let name: String = rest
        .trim_end_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        format!("_{name}")
    } else {
        name
    }
}

impl Store {
    pub fn new(state_dir: &Path, directory_url: &str) -> Store {
        Store {
            dir: state_dir.join("acme").join(dir_name(directory_url)),
        }
    }

    /// Creates the directories (before privileges are dropped: the
    /// caller hands them to `--user`).
    pub fn create(&self, names: &[String]) -> anyhow::Result<Vec<PathBuf>> {
        let mut made = vec![self.dir.parent().unwrap_or(&self.dir).to_path_buf()];
        made.push(self.dir.clone());
        for name in names {
            made.push(self.name_dir(name));
        }
        for d in &made {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(made)
    }

    fn name_dir(&self, name: &str) -> PathBuf {
        self.dir.join(dir_name(&name.to_ascii_lowercase()))
    }

    pub fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.name_dir(name).join("cert.pem")
    }

    pub fn key_path(&self, name: &str) -> PathBuf {
        self.name_dir(name).join("key.pem")
    }

    pub fn load_account(&self) -> Option<String> {
        std::fs::read_to_string(self.account_path()).ok()
    }

    pub fn save_account(&self, json: &str) -> anyhow::Result<()> {
        write_atomically(&self.account_path(), json.as_bytes(), 0o600)
    }

    pub fn forget_account(&self) {
        let _ = std::fs::remove_file(self.account_path());
    }

    /// Stores a new certificate: the key first, so that a crash between
    /// the two renames leaves the old chain with a key that does not match
    /// it (refused at load, and replaced at the next order) rather than
    /// serving half of a pair.
    pub fn save_certificate(
        &self,
        name: &str,
        chain_pem: &str,
        key_pem: &str,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.name_dir(name))?;
        write_atomically(&self.key_path(name), key_pem.as_bytes(), 0o600)?;
        write_atomically(&self.cert_path(name), chain_pem.as_bytes(), 0o644)
    }

    /// The stored certificate for `name` with its key, and its leaf's
    /// facts: `Ok(None)` when there is none, an error when the pair does
    /// not load (damaged, or a crash between the key's rename and the
    /// chain's).
    pub fn load(&self, name: &str) -> anyhow::Result<Option<(Identity, CertFacts)>> {
        let cert = self.cert_path(name);
        if !cert.exists() {
            return Ok(None);
        }
        let id = Identity::load(&cert, &self.key_path(name))?;
        let facts = super::der::facts(id.key.cert[0].as_ref())
            .ok_or_else(|| anyhow::anyhow!("{}: the certificate does not parse", cert.display()))?;
        Ok(Some((id, facts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_are_safe_and_distinct() {
        assert_eq!(
            dir_name("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org_directory"
        );
        assert_eq!(
            dir_name("https://acme-staging-v02.api.letsencrypt.org/directory"),
            "acme-staging-v02.api.letsencrypt.org_directory"
        );
        assert_eq!(
            dir_name("https://10.99.0.2:14000/dir"),
            "10.99.0.2_14000_dir"
        );
        assert_eq!(dir_name("../../etc"), "_.._.._etc");
        assert_eq!(dir_name(""), "_");
    }

    #[test]
    fn files_land_where_they_should_with_private_keys_private() {
        use std::os::unix::fs::PermissionsExt;
        let state = std::env::temp_dir().join(format!("bypass-acme-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let store = Store::new(&state, "https://ca.test/dir");
        store.create(&["A.test".to_string()]).unwrap();
        assert_eq!(store.load_account(), None);
        store.save_account("{}").unwrap();
        assert_eq!(store.load_account().as_deref(), Some("{}"));
        store.save_certificate("a.test", "chain", "key").unwrap();
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.account_path()), 0o600);
        assert_eq!(mode(store.key_path("a.test")), 0o600);
        assert_eq!(mode(store.cert_path("A.TEST")), 0o644);
        assert!(store
            .cert_path("a.test")
            .starts_with(state.join("acme/ca.test_dir/a.test")));
        assert!(store.load("a.test").is_err(), "not PEM");
        assert!(store.load("b.test").unwrap().is_none(), "none stored");
        store.forget_account();
        assert_eq!(store.load_account(), None);
        std::fs::remove_dir_all(&state).unwrap();
    }
}
