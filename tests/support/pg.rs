//! A throwaway PostgreSQL cluster from the machine's own binaries, with wal_level=logical,
//! on a free loopback port in a temp dir.
//!
//! Cleanup never depends on the test process ending well: next to every cluster runs a small
//! watchdog that stops the server and removes its directory once the test process is gone
//! (normal exit, panic or abort). A cluster that is dropped cleans up at once.

use std::{
    fs,
    io::{self, Read},
    net::TcpListener,
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SUPERUSER: &str = "postgres";

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `logical` unless a test needs to see what happens without it.
    pub wal_level: String,
    /// Extra `-c name=value` settings.
    pub settings: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self { wal_level: "logical".into(), settings: Vec::new() }
    }
}

/// A running throwaway cluster. Dropping it stops the server and deletes its files.
pub struct Cluster {
    root: PathBuf,
    port: u16,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    options: ClusterOptions,
    server: Option<Child>,
    watchdog: Option<Child>,
}

impl Cluster {
    /// initdb + postgres; returns once the server accepts connections.
    pub fn start(options: ClusterOptions) -> io::Result<Self> {
        let bin = find_bin_dir()?;
        let root = tempfile::Builder::new().prefix("coach-pg-").tempdir()?.keep();
        let run_as = unprivileged_user_if_root()?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))?;
        }
        let mut cluster =
            Self { root, port: 0, bin, run_as, options, server: None, watchdog: None };
        cluster.initdb()?;
        cluster.launch()?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Superuser URL for `database`.
    pub fn url(&self, database: &str) -> String {
        self.url_as(SUPERUSER, database)
    }

    pub fn url_as(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Fast shutdown (SIGINT): clients are disconnected, as in a real restart.
    pub fn stop(&mut self) -> io::Result<()> {
        if let Some(mut server) = self.server.take() {
            signal(server.id(), "INT");
            wait_with_deadline(&mut server, Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// Starts the same cluster again on the same port (replication slots survive).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.launch()
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.env_remove("PGDATA").env_remove("PGPORT").env_remove("PGHOST");
        cmd
    }

    fn initdb(&self) -> io::Result<()> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// Starts the server, retrying on another port if the chosen one was taken meanwhile.
    fn launch(&mut self) -> io::Result<()> {
        let mut last_error = None;
        for _ in 0..5 {
            let port = if self.port == 0 { free_port()? } else { self.port };
            match self.launch_on(port) {
                Ok(()) => return Ok(()),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("postgres did not start")))
    }

    fn launch_on(&mut self, port: u16) -> io::Result<()> {
        let log_path = self.root.join("postgres.log");
        let log = fs::File::create(&log_path)?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&log_path, Some(uid), Some(gid))?;
        }
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(&self.root);
        let mut settings: Vec<(String, String)> = vec![
            ("listen_addresses".into(), "127.0.0.1".into()),
            ("wal_level".into(), self.options.wal_level.clone()),
            ("max_connections".into(), "300".into()),
            // Slots and replication origins share this limit; the suite runs many of both.
            ("max_replication_slots".into(), "64".into()),
            ("max_wal_senders".into(), "40".into()),
            ("fsync".into(), "off".into()),
            ("synchronous_commit".into(), "off".into()),
            ("full_page_writes".into(), "off".into()),
            ("shared_buffers".into(), "64MB".into()),
        ];
        settings.extend(self.options.settings.iter().cloned());
        for (k, v) in &settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        let mut server = cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.try_wait()? {
                return Err(io::Error::other(format!(
                    "postgres exited with {status}: {}",
                    tail(&log_path)
                )));
            }
            if tail(&log_path).contains("ready to accept connections") {
                break;
            }
            if Instant::now() > deadline {
                let _ = server.kill();
                return Err(io::Error::other(format!(
                    "postgres did not become ready: {}",
                    tail(&log_path)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.port = port;
        if self.watchdog.is_none() {
            self.watchdog = Some(spawn_watchdog(&self.root)?);
        }
        self.server = Some(server);
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // Immediate shutdown: the data is about to be deleted anyway.
            signal(server.id(), "QUIT");
            if wait_with_deadline(&mut server, Duration::from_secs(10)).is_err() {
                let _ = server.kill();
                let _ = server.wait();
            }
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A shell that waits for this process to end, then stops the postmaster (found through
/// its pid file, so it follows restarts) and removes the directory.
fn spawn_watchdog(root: &Path) -> io::Result<Child> {
    let script = r#"
        parent=$1; root=$2
        while kill -0 "$parent" 2>/dev/null; do sleep 1; done
        pid=$(head -n 1 "$root/data/postmaster.pid" 2>/dev/null)
        if [ -n "$pid" ]; then
            kill -QUIT "$pid" 2>/dev/null
            i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
            kill -KILL "$pid" 2>/dev/null
        fi
        rm -rf "$root"
    "#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            return Err(io::Error::other("process did not exit in time"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn tail(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let mut start = s.len().saturating_sub(2000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// PostgreSQL binaries: on PATH, else the newest /usr/lib/postgresql/*/bin.
pub fn find_bin_dir() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                // Follow symlinks so sibling binaries (postgres, pg_ctl) are found together.
                let real = fs::canonicalize(&initdb)?;
                if let Some(parent) = real.parent() {
                    if parent.join("postgres").is_file() {
                        return Ok(parent.to_path_buf());
                    }
                }
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").is_file().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, p)| p).ok_or_else(|| {
        io::Error::other("no PostgreSQL binaries (initdb) on PATH or under /usr/lib/postgresql/*/bin; install postgresql")
    })
}

/// initdb refuses to run as root; then run the server as `postgres` (or `nobody`).
fn unprivileged_user_if_root() -> io::Result<Option<(u32, u32)>> {
    if fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd")?;
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == wanted {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    return Ok(Some((uid, gid)));
                }
            }
        }
    }
    Err(io::Error::other("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as"))
}

#[path = "shared.rs"]
mod shared;
pub use shared::{empty_db, migrated_db_on, shared_cluster, test_db, TestDb, TEST_ROLES};
