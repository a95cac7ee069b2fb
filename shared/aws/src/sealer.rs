//! Password sealing (R-PWD-1): AES-256-GCM with a 256-bit key kept in Secrets Manager as 64
//! hexadecimal characters. Each seal records the key's Secrets Manager version id, uses a fresh
//! random 96-bit nonce, and authenticates the user id as associated data, so a sealed password
//! opens only for the user it was sealed for. Rotating the secret (a new `AWSCURRENT` version)
//! keeps older seals readable: they name their version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use aws_sdk_secretsmanager::Client;
use m365_engine::error::{Error, SealError};
use m365_engine::model::{SealedPassword, UserId};
use m365_engine::ports::Sealer;
use secrecy::{ExposeSecret, SecretString};

use crate::dynamo::send_unless;

const COMPONENT: &str = "secretsmanager";
/// AES-GCM's standard nonce: 96 bits.
const NONCE_LEN: usize = 12;
/// How long the current key is used before asking Secrets Manager again (picks up rotation).
const CURRENT_KEY_TTL: Duration = Duration::from_secs(300);
/// Associated data prefix: binds the ciphertext to this purpose and format, then the user id.
const AAD_PREFIX: &[u8] = b"m365-sync/sealed-password/v1\0";

/// One version of the seal key.
struct SealKey {
    version: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl SealKey {
    /// Parses the secret's value: exactly 64 hexadecimal characters (surrounding whitespace
    /// ignored).
    fn parse(version: String, value: &str) -> Result<Self, SealError> {
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(value.trim(), &mut bytes).map_err(|_| SealError::Malformed)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes));
        bytes.fill(0);
        Ok(Self { version, cipher })
    }
}

fn aad(user: &UserId) -> Vec<u8> {
    [AAD_PREFIX, user.as_str().as_bytes()].concat()
}

fn seal_with(
    key: &SealKey,
    user: &UserId,
    password: &SecretString,
) -> Result<SealedPassword, Error> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = aad(user);
    let ciphertext = key
        .cipher
        .encrypt(
            &nonce,
            Payload {
                msg: password.expose_secret().as_bytes(),
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Malformed)?;
    Ok(SealedPassword {
        key_version: key.version.clone(),
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

fn open_with(key: &SealKey, user: &UserId, sealed: &SealedPassword) -> Result<SecretString, Error> {
    if sealed.nonce.len() != NONCE_LEN {
        return Err(SealError::Malformed.into());
    }
    let aad = aad(user);
    let plaintext = key
        .cipher
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Tampered)?;
    let text = String::from_utf8(plaintext).map_err(|_| SealError::Tampered)?;
    Ok(SecretString::from(text))
}

#[derive(Debug, Default)]
struct Cache {
    current: Option<(Arc<SealKey>, Instant)>,
    versions: HashMap<String, Arc<SealKey>>,
}

/// [`Sealer`] whose key lives in a Secrets Manager secret.
#[derive(Debug, Clone)]
pub struct SecretsManagerSealer {
    client: Client,
    secret_id: String,
    cache: Arc<Mutex<Cache>>,
}

impl SecretsManagerSealer {
    /// A sealer using the secret `secret_id` (name or ARN).
    #[must_use]
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
            cache: Arc::default(),
        }
    }

    fn cached_current(&self) -> Option<Arc<SealKey>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .current
            .as_ref()
            .filter(|(_, at)| at.elapsed() < CURRENT_KEY_TTL)
            .map(|(key, _)| Arc::clone(key))
    }

    fn cached_version(&self, version: &str) -> Option<Arc<SealKey>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.versions.get(version).cloned()
    }

    /// Fetches a key version (`None` = the current one).
    async fn fetch(&self, version: Option<&str>) -> Result<Arc<SealKey>, Error> {
        let request = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .set_version_id(version.map(str::to_owned))
            .send();
        // Only a named version can be unknown; the current one missing is a real failure.
        let unknown_version: &[&str] = if version.is_some() {
            &[
                "ResourceNotFoundException",
                "InvalidParameterException",
                "ValidationException",
            ]
        } else {
            &[]
        };
        let Some(output) = send_unless(COMPONENT, request, unknown_version).await? else {
            return Err(SealError::UnknownKeyVersion {
                version: version.unwrap_or_default().to_owned(),
            }
            .into());
        };
        let fetched_version = output.version_id().ok_or(SealError::Malformed)?.to_owned();
        let value = output.secret_string().ok_or(SealError::Malformed)?;
        let key = Arc::new(SealKey::parse(fetched_version.clone(), value)?);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if version.is_none() {
            cache.current = Some((Arc::clone(&key), Instant::now()));
        }
        cache.versions.insert(fetched_version, Arc::clone(&key));
        Ok(key)
    }
}

impl Sealer for SecretsManagerSealer {
    async fn seal(&self, user: &UserId, password: &SecretString) -> Result<SealedPassword, Error> {
        let key = match self.cached_current() {
            Some(key) => key,
            None => self.fetch(None).await?,
        };
        seal_with(&key, user, password)
    }

    async fn open(&self, user: &UserId, sealed: &SealedPassword) -> Result<SecretString, Error> {
        let key = match self.cached_version(&sealed.key_version) {
            Some(key) => key,
            None => self.fetch(Some(&sealed.key_version)).await?,
        };
        open_with(&key, user, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> SealKey {
        SealKey::parse("v1".to_owned(), KEY).expect("valid key")
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).expect("valid user id")
    }

    #[test]
    fn a_sealed_password_opens_for_its_user_and_names_its_key_version() {
        // R-PWD-1
        let sealed = seal_with(
            &key(),
            &user("alice"),
            &SecretString::from("Correct-Horse-9"),
        )
        .expect("sealed");
        assert_eq!(sealed.key_version, "v1");
        assert_eq!(sealed.nonce.len(), 12);
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"Correct"));
        let opened = open_with(&key(), &user("alice"), &sealed).expect("opened");
        assert_eq!(opened.expose_secret(), "Correct-Horse-9");
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        // R-PWD-1
        let password = SecretString::from("Correct-Horse-9");
        let a = seal_with(&key(), &user("alice"), &password).expect("sealed");
        let b = seal_with(&key(), &user("alice"), &password).expect("sealed");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn a_sealed_password_does_not_open_for_another_user() {
        // R-PWD-1, R-SAFE-2
        let sealed = seal_with(&key(), &user("alice"), &SecretString::from("pw")).expect("sealed");
        let error = open_with(&key(), &user("mallory"), &sealed).expect_err("bound to alice");
        assert!(matches!(error, Error::Seal(SealError::Tampered)));
    }

    #[test]
    fn an_altered_ciphertext_or_nonce_is_refused() {
        // R-PWD-1
        let sealed = seal_with(&key(), &user("alice"), &SecretString::from("pw")).expect("sealed");
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(matches!(
            open_with(&key(), &user("alice"), &flipped),
            Err(Error::Seal(SealError::Tampered))
        ));
        let mut renonced = sealed.clone();
        renonced.nonce[0] ^= 1;
        assert!(matches!(
            open_with(&key(), &user("alice"), &renonced),
            Err(Error::Seal(SealError::Tampered))
        ));
        let mut short = sealed;
        short.nonce.pop();
        assert!(matches!(
            open_with(&key(), &user("alice"), &short),
            Err(Error::Seal(SealError::Malformed))
        ));
    }

    #[test]
    fn a_key_secret_that_is_not_64_hex_characters_is_refused() {
        // R-PWD-1: a wrong secret must not silently become a weak key.
        for bad in [
            "",
            "00",
            &KEY[..62],
            &format!("{KEY}00"),
            &KEY.replace('0', "g"),
        ] {
            assert!(SealKey::parse("v".to_owned(), bad).is_err(), "{bad:?}");
        }
        assert!(SealKey::parse("v".to_owned(), &format!(" {KEY}\n")).is_ok());
    }

    #[test]
    fn a_seal_key_never_prints_its_material() {
        // R-SAFE-2
        let printed = format!("{:?}", key());
        assert!(printed.contains("v1"));
        assert!(!printed.contains("0a0b"));
    }
}
