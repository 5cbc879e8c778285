//! The crate's examples as child processes of the tests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// The path of example `name`, built (again, when its sources changed)
/// once per test run: `cargo test --test it` alone does not build
/// examples, and a binary left from an earlier build would speak an older
/// protocol to the store. Built with the features of this test build, so
/// that it links the library this build compiled rather than compiling
/// another one, and has the stores the tests use.
pub fn example(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(name) {
        return path.clone();
    }
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf();
    let features: Vec<&str> = [
        (cfg!(feature = "axum"), "axum"),
        (cfg!(feature = "redis"), "redis"),
        (cfg!(feature = "postgres"), "postgres"),
        (cfg!(feature = "client"), "client"),
    ]
    .into_iter()
    .filter_map(|(enabled, feature)| enabled.then_some(feature))
    .collect();
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--example", name, "--features", &features.join(",")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "building the {name} example failed");
    let path = target.join("examples").join(name);
    built
        .get_or_insert_with(HashMap::new)
        .insert(name.to_owned(), path.clone());
    path
}
