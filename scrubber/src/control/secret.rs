//! The SYN-cookie secret: read from a file (`scrubber gen-secret` writes one), or made at random.
//! Also what changes of the secret mean for handshakes in flight (see
//! [`crate::engine::cookie::SynCookies::rotate`]).

use std::path::{Path, PathBuf};

use crate::engine::cookie::{CookieError, CookieKey};

/// Why the cookie secret could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read.
    #[error("cannot read cookie secret file {}: {source} (make one with `scrubber gen-secret > FILE`)", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file's text is not a key.
    #[error("{what}{source}")]
    Parse {
        /// Where the file was named (empty, or e.g. "the rule file's cookie-secret setting: ").
        what: String,
        /// What is wrong.
        source: CookieError,
    },
    /// The operating system's random source failed.
    #[error("cannot generate a cookie secret: random source failed: {0}")]
    Random(getrandom::Error),
}

/// Read a cookie-secret file (written by `scrubber gen-secret`). The file's permissions are
/// not checked.
pub fn load_cookie_secret(path: &Path) -> Result<CookieKey, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io { path: path.to_path_buf(), source })?;
    CookieKey::from_file_text(path, &text).map_err(|source| SecretError::Parse { what: String::new(), source })
}

/// A fresh secret from the operating system's random source.
pub fn random_cookie_secret() -> Result<CookieKey, SecretError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(SecretError::Random)?;
    Ok(CookieKey::from_bytes(b))
}

/// The SYN-cookie secret: the `--cookie-secret` file, else the rule file's `cookie-secret`
/// setting, else random.
pub fn resolve_cookie_key(arg: Option<&Path>, setting: Option<&str>) -> Result<[u8; 16], SecretError> {
    Ok(match (arg, setting) {
        (Some(path), _) => load_cookie_secret(path)?.bytes(),
        (None, Some(path)) => match load_cookie_secret(Path::new(path)) {
            Ok(k) => k.bytes(),
            Err(SecretError::Parse { source, .. }) => {
                return Err(SecretError::Parse { what: "the rule file's cookie-secret setting: ".into(), source })
            }
            Err(e) => return Err(e),
        },
        (None, None) => random_cookie_secret()?.bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cookie::CookieError;

    #[test]
    fn secret_files_and_errors() {
        let dir = std::env::temp_dir().join(format!("scrubber-cookie-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("secret");
        std::fs::write(&good, "# made by scrubber gen-secret\n00112233445566778899aabbccddeeff\n").unwrap();
        assert_eq!(load_cookie_secret(&good).unwrap().to_hex(), "00112233445566778899aabbccddeeff");

        let missing = dir.join("missing");
        let e = load_cookie_secret(&missing).unwrap_err();
        assert!(matches!(e, SecretError::Io { .. }));
        let msg = e.to_string();
        assert!(msg.contains("missing") && msg.contains("scrubber gen-secret > FILE"), "{msg}");

        let bad = dir.join("bad");
        std::fs::write(&bad, "not hex\n").unwrap();
        let e = load_cookie_secret(&bad).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, SecretError::Parse { source: CookieError::BadHex { path: Some(_), .. }, .. }));
        assert!(msg.contains("bad") && msg.contains("scrubber gen-secret"), "{msg}");
        let e = resolve_cookie_key(None, Some(bad.to_str().unwrap())).unwrap_err().to_string();
        assert!(e.starts_with("the rule file's cookie-secret setting: "), "{e}");

        let binary = dir.join("binary");
        std::fs::write(&binary, [0xffu8, 0xfe, 0x00]).unwrap();
        assert!(load_cookie_secret(&binary).is_err());
        // The argument wins over the setting; nothing gives a random key.
        assert_eq!(resolve_cookie_key(Some(&good), Some("/nonexistent")).unwrap()[0], 0x00);
        assert_ne!(resolve_cookie_key(None, None).unwrap(), resolve_cookie_key(None, None).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
