//! The signing secret and the Standard Webhooks signature (`v1`,
//! HMAC-SHA256).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a serialized symmetric secret, as the specification writes
/// it.
const PREFIX: &str = "whsec_";

/// The length of [`WebhookSecret::random`]'s keys: 32 bytes, the size of
/// an HMAC-SHA256 block's worth of entropy and above the specification's
/// minimum of 24.
const RANDOM_LEN: usize = 32;

/// The longest key accepted: the specification's maximum (512 bytes).
const MAX_LEN: usize = 512;

/// A Standard Webhooks signing secret: the key of the HMAC-SHA256
/// signatures of completion callbacks.
///
/// Written as `whsec_` followed by the key in base64, the form receivers
/// configure their verifying library with. `Debug` never shows the key;
/// `Display` does, on purpose (to print a generated secret once).
///
/// ```
/// use tower_accepted::callback::WebhookSecret;
///
/// let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
/// assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
/// # Ok::<(), tower_accepted::callback::InvalidSecret>(())
/// ```
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// Reads a secret: `whsec_` and the key in base64, or the base64 alone
    /// (as the specification's own libraries accept it), padded or not.
    ///
    /// # Errors
    ///
    /// [`InvalidSecret`] when the text is not base64, or the key is empty or
    /// longer than 512 bytes.
    ///
    /// ```
    /// use tower_accepted::callback::WebhookSecret;
    ///
    /// assert!(WebhookSecret::parse("whsec_c2VjcmV0LWtleS1vZi10d2VudHktZm91cg==").is_ok());
    /// assert!(WebhookSecret::parse("c2VjcmV0LWtleS1vZi10d2VudHktZm91cg").is_ok());
    /// assert!(WebhookSecret::parse("whsec_not base64!").is_err());
    /// assert!(WebhookSecret::parse("whsec_").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, InvalidSecret> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix(PREFIX).unwrap_or(encoded);
        // Padding is optional, as in the reference libraries: decode without
        // it whatever was given.
        let key = STANDARD_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|_| InvalidSecret(()))?;
        if key.is_empty() || key.len() > MAX_LEN {
            return Err(InvalidSecret(()));
        }
        Ok(Self { key })
    }

    /// A new secret of 32 random bytes from the operating system's
    /// generator (`getrandom`).
    ///
    /// # Panics
    ///
    /// If the operating system gives no random bytes (as `rand`'s own
    /// generators do): a process that cannot draw a key must not sign with
    /// a guessable one. Call it at start-up, not per request.
    ///
    /// ```
    /// use tower_accepted::callback::WebhookSecret;
    ///
    /// let secret = WebhookSecret::random();
    /// println!("WEBHOOK_SECRET={secret}");
    /// assert!(secret.to_string().starts_with("whsec_"));
    /// ```
    pub fn random() -> Self {
        let mut key = vec![0; RANDOM_LEN];
        if let Err(error) = getrandom::fill(&mut key) {
            panic!("the operating system gave no random bytes for a webhook secret: {error}");
        }
        Self { key }
    }

    /// The `webhook-signature` header's value for one attempt:
    /// `v1,` and the base64 HMAC-SHA256 of `{webhook_id}.{timestamp}.{payload}`
    /// under this key.
    ///
    /// ```
    /// use tower_accepted::callback::WebhookSecret;
    ///
    /// let secret = WebhookSecret::random();
    /// let a = secret.sign("job_1", 1_700_000_000, b"{}");
    /// assert!(a.starts_with("v1,"));
    /// // Another timestamp (a retry) is another signature.
    /// assert_ne!(a, secret.sign("job_1", 1_700_000_060, b"{}"));
    /// ```
    pub fn sign(&self, webhook_id: &str, timestamp_secs: u64, payload: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this arm cannot be reached.
            Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
        }
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD.encode(&self.key))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs and panic messages.
        f.write_str("WebhookSecret(..)")
    }
}

/// A text that is not a webhook secret: not base64, or a key that is empty
/// or over 512 bytes. Says no more, so as not to echo the secret.
///
/// ```
/// use tower_accepted::callback::WebhookSecret;
///
/// let error = WebhookSecret::parse("whsec_%%%").unwrap_err();
/// assert!(!error.to_string().contains("%%%"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSecret(());

impl fmt::Display for InvalidSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a webhook secret: expected `whsec_` and 1 to 512 bytes in base64")
    }
}

impl std::error::Error for InvalidSecret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let secret = WebhookSecret::random();
        let key = secret.to_string();
        let debug = format!("{secret:?}");
        assert!(!debug.contains(&key[PREFIX.len()..]), "{debug}");
        assert_eq!(debug, "WebhookSecret(..)");
    }

    #[test]
    fn display_reads_back_as_the_same_key() {
        let secret = WebhookSecret::random();
        let again = WebhookSecret::parse(&secret.to_string()).unwrap();
        assert_eq!(secret.key, again.key);
        assert_eq!(secret.key.len(), RANDOM_LEN);
        assert_ne!(secret.key, WebhookSecret::random().key);
    }

    #[test]
    fn oversized_keys_are_refused() {
        let long = STANDARD.encode(vec![7u8; MAX_LEN + 1]);
        assert!(WebhookSecret::parse(&long).is_err());
        let longest = STANDARD.encode(vec![7u8; MAX_LEN]);
        assert!(WebhookSecret::parse(&longest).is_ok());
    }
}
