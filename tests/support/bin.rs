//! The workspace's own binaries. `cargo test` builds test targets, not other packages'
//! binaries, so the first use builds the binary (a no-op when it is fresh).

use std::{collections::HashMap, path::PathBuf, process::Command, sync::Mutex};

/// Path of binary `name` (of the package of the same name), built if needed.
pub fn cargo_bin(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(name) {
        return path.clone();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).map(PathBuf::from).unwrap_or_default();
    let release = dir.file_name().is_some_and(|p| p == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", name, "--bin", name]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
    assert!(status.success(), "building {name} failed");
    let path = dir.join(name);
    assert!(path.is_file(), "{} is missing after building it", path.display());
    built.get_or_insert_with(HashMap::new).insert(name.to_owned(), path.clone());
    path
}

/// Runs `cdc ARGS` to its end with `env` added (and text logs): (success, stdout, stderr).
pub async fn cdc_output(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = tokio::process::Command::new(cargo_bin("cdc"))
        .args(args)
        .envs(env.iter().copied())
        .env("LOG_FORMAT", "text")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run cdc {args:?}: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}
