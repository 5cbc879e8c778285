//! The signatures of completion callbacks, verified by an independent
//! implementation: the official Standard Webhooks library for Python
//! (`standardwebhooks` from PyPI), run on the headers and bodies this
//! crate's `WebhookSecret` signs, tampered ones included.
//!
//! The test makes a Python virtual environment in
//! `target/standardwebhooks-venv` (once) and runs `tests/webhooks/verify.py`.
//! Nothing is skipped: without Python, venv or pip (or PyPI), the test fails.
#![cfg(feature = "callbacks")]

use crate::common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tower_accepted::callback::WebhookSecret;

/// The requirement installed in the virtual environment.
const STANDARD_WEBHOOKS: &str = "standardwebhooks==1.1.0";

/// One webhook as a receiver gets it.
fn case(secret: &str, id: &str, timestamp: u64, signature: &str, payload: &str) -> Value {
    json!({
        "secret": secret,
        "payload": payload,
        "headers": {
            "webhook-id": id,
            "webhook-timestamp": timestamp.to_string(),
            "webhook-signature": signature,
        },
    })
}

/// The library's verdict on each of `cases`.
async fn verify(cases: &[Value]) -> Vec<String> {
    let python = common::python::venv("standardwebhooks-venv", "standardwebhooks.webhooks", STANDARD_WEBHOOKS).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks/verify.py");
    let script = script.to_string_lossy().into_owned();
    let input = serde_json::to_vec(cases).unwrap();
    let output = common::python::run(&python, &[&script], &input, Duration::from_secs(60)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("verify.py printed no JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_library_verifies_our_signatures_and_rejects_tampering() {
    tokio::time::timeout(Duration::from_secs(400), async {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let secret = WebhookSecret::random();
        let text = secret.to_string();
        // Non-ASCII text: the bytes signed are the bytes sent.
        let payload = r#"{"id":"9b2f","status":"succeeded","message":"Größe ✓"}"#;
        let id = "9b2f0c4e-7c1a-4d2b-9f3e-1a2b3c4d5e6f";
        let signature = secret.sign(id, now, payload.as_bytes());

        // A secret given as bare base64, unpadded, signs as its `whsec_` form.
        let bare = WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let bare_signature = bare.sign("msg_1", now, b"{}");

        let other = WebhookSecret::random().to_string();
        let cases = [
            case(&text, id, now, &signature, payload),
            case(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_1",
                now,
                &bare_signature,
                "{}",
            ),
            // A retry: same id, a later timestamp, its own signature.
            case(
                &text,
                id,
                now + 60,
                &secret.sign(id, now + 60, payload.as_bytes()),
                payload,
            ),
            // Tampered: the body, the id, the timestamp; another secret.
            case(&text, id, now, &signature, &payload.replace("succeeded", "failed")),
            case(&text, "another-id", now, &signature, payload),
            case(&text, id, now + 1, &signature, payload),
            case(&other, id, now, &signature, payload),
            // Signed right, but replayed later than the library tolerates.
            case(
                &text,
                id,
                now - 600,
                &secret.sign(id, now - 600, payload.as_bytes()),
                payload,
            ),
        ];
        let verdicts = verify(&cases).await;
        assert_eq!(verdicts.len(), cases.len(), "{verdicts:?}");
        for (i, verdict) in verdicts.iter().enumerate() {
            let valid = i < 3;
            assert_eq!(verdict == "valid", valid, "case {i}: {verdict}");
            if !valid {
                assert!(verdict.starts_with("invalid: "), "case {i}: {verdict}");
            }
        }
        assert!(verdicts[7].contains("too old"), "{verdicts:?}");
    })
    .await
    .expect("the test took too long");
}
