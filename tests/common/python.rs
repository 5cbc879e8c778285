//! Python programs the interop tests run: a virtual environment under
//! `target/` per requirement (made once, then reused), and a run of a
//! program bounded in time that must succeed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Runs `program` with `args`, `stdin` on its input, for at most `limit`;
/// asserts it succeeded and returns what it wrote.
pub async fn run(program: &Path, args: &[&str], stdin: &[u8], limit: Duration) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} could not be started: {e}", program.display()));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    // Closed, so that the program reads to the end of its input.
    drop(input);
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not end within {limit:?}", program.display()))
        .unwrap();
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\n{}\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The Python of the virtual environment `target/<name>`, made with
/// `python3 -m venv` (`PYTHON` names another interpreter) if it is not
/// there, with `requirement` installed by pip unless `import` already
/// succeeds. Without Python, venv or pip (or PyPI), the test fails: it is
/// not skipped.
pub async fn venv(name: &str, import: &str, requirement: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join(name);
    let python = dir.join("bin").join("python");
    if !python.exists() {
        let system = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        let dir = dir.to_string_lossy().into_owned();
        run(Path::new(&system), &["-m", "venv", &dir], b"", Duration::from_secs(120)).await;
    }
    let check = Command::new(&python)
        .args(["-c", &format!("import {import}")])
        .output()
        .await
        .unwrap_or_else(|e| panic!("{} could not be started: {e}", python.display()));
    if !check.status.success() {
        let args = [
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ];
        run(&python, &args, b"", Duration::from_secs(300)).await;
    }
    python
}
