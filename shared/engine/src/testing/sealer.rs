//! Password sealing in memory: real AES-256-GCM with random in-memory keys, so tamper refusal and
//! the user binding behave as in `SecretsManagerSealer`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use secrecy::{ExposeSecret, SecretString};

use super::lock;
use crate::error::{Result, SealError};
use crate::model::{SealedPassword, UserId};
use crate::ports::Sealer;

/// Seals with AES-256-GCM under in-memory keys; [`FakeSealer::rotate`] adds a key version.
pub struct FakeSealer {
    keys: Mutex<(String, BTreeMap<String, Key<Aes256Gcm>>)>,
}

impl std::fmt::Debug for FakeSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSealer").finish_non_exhaustive()
    }
}

impl Default for FakeSealer {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSealer {
    /// A sealer with one random key, version `fake-1`.
    #[must_use]
    pub fn new() -> Self {
        let mut keys = BTreeMap::new();
        keys.insert("fake-1".to_owned(), Aes256Gcm::generate_key(OsRng));
        Self {
            keys: Mutex::new(("fake-1".to_owned(), keys)),
        }
    }

    /// Adds a new current key version (old versions still open); returns its name.
    pub fn rotate(&self) -> String {
        let mut keys = lock(&self.keys);
        let version = format!("fake-{}", keys.1.len() + 1);
        keys.1
            .insert(version.clone(), Aes256Gcm::generate_key(OsRng));
        keys.0.clone_from(&version);
        version
    }
}

impl Sealer for FakeSealer {
    async fn seal(&self, user: &UserId, password: &SecretString) -> Result<SealedPassword> {
        let (version, key) = {
            let keys = lock(&self.keys);
            let key = keys.1.get(&keys.0).copied().ok_or(SealError::Malformed)?;
            (keys.0.clone(), key)
        };
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let payload = Payload {
            msg: password.expose_secret().as_bytes(),
            aad: user.as_str().as_bytes(),
        };
        let ciphertext = Aes256Gcm::new(&key)
            .encrypt(&nonce, payload)
            .map_err(|_| SealError::Malformed)?;
        Ok(SealedPassword {
            key_version: version,
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    async fn open(&self, user: &UserId, sealed: &SealedPassword) -> Result<SecretString> {
        let key = lock(&self.keys)
            .1
            .get(&sealed.key_version)
            .copied()
            .ok_or_else(|| SealError::UnknownKeyVersion {
                version: sealed.key_version.clone(),
            })?;
        if sealed.nonce.len() != 12 {
            return Err(SealError::Malformed.into());
        }
        let payload = Payload {
            msg: sealed.ciphertext.as_slice(),
            aad: user.as_str().as_bytes(),
        };
        let clear = Aes256Gcm::new(&key)
            .decrypt(Nonce::from_slice(&sealed.nonce), payload)
            .map_err(|_| SealError::Tampered)?;
        let text = String::from_utf8(clear).map_err(|_| SealError::Malformed)?;
        Ok(SecretString::from(text))
    }
}
