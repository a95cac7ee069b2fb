//! Contract of [`Sealer`]: AES-256-GCM round trip, key version, tamper and user-binding refusal (R-PWD-1).

use secrecy::{ExposeSecret, SecretString};

use super::fresh_user_id;
use crate::error::{Error, SealError};
use crate::model::SealedPassword;
use crate::ports::Sealer;

const PASSWORD: &str = "xWwvJ]6NMw+bWH-d";

fn secret() -> SecretString {
    SecretString::from(PASSWORD.to_owned())
}

/// R-PWD-1: a sealed password opens to the same password and names its key version.
pub async fn a_sealed_password_opens_to_the_same_password(sealer: &impl Sealer) {
    let user = fresh_user_id();
    let sealed = sealer.seal(&user, &secret()).await.expect("seal succeeds");
    assert!(!sealed.key_version.is_empty(), "the key version is kept");
    assert_eq!(sealed.nonce.len(), 12, "a 96-bit nonce");
    let opened = sealer.open(&user, &sealed).await.expect("open succeeds");
    assert_eq!(opened.expose_secret(), PASSWORD);
}

/// R-PWD-1 / R-SAFE-2: the sealed form never holds the password, and sealing twice differs (fresh nonce).
pub async fn the_sealed_form_hides_the_password(sealer: &impl Sealer) {
    let user = fresh_user_id();
    let a = sealer.seal(&user, &secret()).await.expect("seal succeeds");
    let b = sealer.seal(&user, &secret()).await.expect("seal succeeds");
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
    let needle = PASSWORD.as_bytes();
    assert!(!a.ciphertext.windows(needle.len()).any(|w| w == needle));
    let json = serde_json::to_string(&a).expect("serializes");
    assert!(!json.contains(PASSWORD) && !format!("{a:?}").contains(PASSWORD));
}

/// R-PWD-1: an altered ciphertext or nonce is refused as tampered.
pub async fn a_tampered_sealed_password_is_refused(sealer: &impl Sealer) {
    let user = fresh_user_id();
    let sealed = sealer.seal(&user, &secret()).await.expect("seal succeeds");
    let mut ciphertext = sealed.clone();
    if let Some(byte) = ciphertext.ciphertext.first_mut() {
        *byte ^= 0x01;
    }
    let mut nonce = sealed.clone();
    if let Some(byte) = nonce.nonce.last_mut() {
        *byte ^= 0x80;
    }
    let mut truncated = sealed;
    truncated.ciphertext.pop();
    for bad in [ciphertext, nonce, truncated] {
        let result = sealer.open(&user, &bad).await;
        assert!(
            matches!(result, Err(Error::Seal(SealError::Tampered))),
            "got {:?}",
            result.map(|_| ())
        );
    }
}

/// R-PWD-1: a password sealed for one user does not open for another.
pub async fn a_password_sealed_for_one_user_does_not_open_for_another(sealer: &impl Sealer) {
    let sealed = sealer
        .seal(&fresh_user_id(), &secret())
        .await
        .expect("seal succeeds");
    let result = sealer.open(&fresh_user_id(), &sealed).await;
    assert!(
        matches!(result, Err(Error::Seal(SealError::Tampered))),
        "got {:?}",
        result.map(|_| ())
    );
}

/// R-PWD-1: a sealed password naming an unknown key version is refused.
pub async fn an_unknown_key_version_is_refused(sealer: &impl Sealer) {
    let user = fresh_user_id();
    let sealed = sealer.seal(&user, &secret()).await.expect("seal succeeds");
    let unknown = SealedPassword {
        key_version: "no-such-version".into(),
        ..sealed
    };
    let result = sealer.open(&user, &unknown).await;
    assert!(
        matches!(
            result,
            Err(Error::Seal(SealError::UnknownKeyVersion { .. }))
        ),
        "got {:?}",
        result.map(|_| ())
    );
}
