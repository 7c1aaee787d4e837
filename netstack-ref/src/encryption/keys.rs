//! A node's WireGuard key pair: X25519, made on the node's first start and kept in its state
//! directory (`wireguard/private.key`, base64 as `wg` writes it, mode 0600), so a restarted
//! agent keeps its identity to its peers; the public key is what the node publishes in its
//! kvstore entry.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use boringtun::x25519::{PublicKey, StaticSecret};

/// Why a key could not be read, made or kept.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file.
    #[error("{operation} {path}: {source}")]
    File {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its text is not a base64 32-byte key.
    #[error("{path}: not a WireGuard key (base64 of 32 bytes)")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// Others may read it.
    #[error("{path}: mode {mode:o}, readable by others; a private key must be 0600")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

/// A node's key pair.
#[derive(Clone)]
pub struct NodeKey {
    private: StaticSecret,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private half.
        f.debug_struct("NodeKey").field("public", &self.public_base64()).finish()
    }
}

/// A public key from its base64 text (as node entries carry it).
pub fn parse_public(text: &str) -> Option<PublicKey> {
    let bytes: [u8; 32] = STANDARD.decode(text.trim()).ok()?.try_into().ok()?;
    Some(PublicKey::from(bytes))
}

/// A public key as base64 text.
pub fn public_base64(key: &PublicKey) -> String {
    STANDARD.encode(key.as_bytes())
}

impl NodeKey {
    /// A fresh key pair, from the kernel's random source.
    pub fn generate() -> Result<NodeKey, KeyError> {
        use std::io::Read;
        let source = Path::new("/dev/urandom");
        let mut bytes = [0u8; 32];
        std::fs::File::open(source).and_then(|mut f| f.read_exact(&mut bytes)).map_err(|e| KeyError::File {
            operation: "read",
            path: source.to_path_buf(),
            source: e,
        })?;
        Ok(NodeKey { private: StaticSecret::from(bytes) })
    }

    /// Where a state directory keeps the key.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("wireguard").join("private.key")
    }

    /// The key kept in `state_dir`, made (and kept) when there is none yet.
    pub fn load_or_create(state_dir: &Path) -> Result<NodeKey, KeyError> {
        let path = NodeKey::path(state_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mode = std::fs::metadata(&path)
                    .map_err(|source| KeyError::File { operation: "stat", path: path.clone(), source })?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(KeyError::Exposed { path, mode: mode & 0o777 });
                }
                let bytes: [u8; 32] = STANDARD
                    .decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| KeyError::Malformed { path: path.clone() })?;
                Ok(NodeKey { private: StaticSecret::from(bytes) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = NodeKey::generate()?;
                key.store(state_dir)?;
                Ok(key)
            }
            Err(source) => Err(KeyError::File { operation: "read", path, source }),
        }
    }

    /// Keeps the key in `state_dir`, replacing what was there at once (written beside, then
    /// renamed: a crash leaves the old key or the new, never half of one).
    pub fn store(&self, state_dir: &Path) -> Result<(), KeyError> {
        let path = NodeKey::path(state_dir);
        let dir = path.parent().expect("a key file has a directory").to_path_buf();
        let failed = |operation, path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::File { operation, path, source }
        };
        std::fs::create_dir_all(&dir).map_err(failed("create", &dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(failed("chmod", &dir))?;
        let incoming = dir.join(".private.key.new");
        let _ = std::fs::remove_file(&incoming);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&incoming)
            .map_err(failed("create", &incoming))?;
        writeln!(file, "{}", STANDARD.encode(self.private.to_bytes())).map_err(failed("write", &incoming))?;
        file.sync_all().map_err(failed("sync", &incoming))?;
        std::fs::rename(&incoming, &path).map_err(failed("rename", &incoming))
    }

    /// The private half (for the WireGuard device).
    pub fn private(&self) -> &StaticSecret {
        &self.private
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey::from(&self.private)
    }

    /// The public half as base64, as the node entry carries it.
    pub fn public_base64(&self) -> String {
        public_base64(&self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netstack-keys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_key_is_made_once_kept_private_and_read_back() {
        let dir = temp_dir("made");
        let first = NodeKey::load_or_create(&dir).unwrap();
        let mode = std::fs::metadata(NodeKey::path(&dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = NodeKey::load_or_create(&dir).unwrap();
        assert_eq!(first.public_base64(), again.public_base64(), "a restart keeps the key");
        assert_eq!(parse_public(&first.public_base64()).unwrap(), first.public());
        assert!(!format!("{first:?}").contains(&STANDARD.encode(first.private().to_bytes())));
        let rotated = NodeKey::generate().unwrap();
        assert_ne!(rotated.public_base64(), first.public_base64());
        rotated.store(&dir).unwrap();
        assert_eq!(NodeKey::load_or_create(&dir).unwrap().public_base64(), rotated.public_base64());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_or_exposed_key_files_are_refused_with_their_path() {
        let dir = temp_dir("bad");
        NodeKey::load_or_create(&dir).unwrap();
        let path = NodeKey::path(&dir);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(NodeKey::load_or_create(&dir), Err(KeyError::Exposed { mode: 0o644, .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not base64!").unwrap();
        let e = NodeKey::load_or_create(&dir).unwrap_err();
        assert!(e.to_string().contains("private.key") && e.to_string().contains("not a WireGuard key"), "{e}");
        assert!(parse_public("AAAA").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
