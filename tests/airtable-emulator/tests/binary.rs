use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_binary_prints_its_base_url_first_and_serves_it() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airtable-emulator"))
        .args(["--addr", "127.0.0.1:0", "--token", "patBINARY"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("line");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .expect("url on the first line")
        .to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let status = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{url}/v0/meta/whoami"))
            .bearer_auth("patBINARY")
            .send()
            .await
            .expect("send")
            .status()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
}
