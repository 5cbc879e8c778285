//! A PostgreSQL server of a test's own: a cluster made by `initdb` in a
//! temporary directory, served on a free port of 127.0.0.1 (no Unix
//! socket), so that a test can freeze it, stop it and start it again
//! without disturbing the shared server the other tests use. Run as the
//! `postgres` user when the tests run as root (PostgreSQL refuses root).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tower_accepted::sqlx::{Connection, PgConnection};

/// A private PostgreSQL server, stopped (and its directory removed) when
/// dropped.
pub struct PrivatePostgres {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// The user and group to run as, when the tests run as root.
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

/// The directory of PostgreSQL's programs: `PG_BIN`, else the newest of
/// Debian's `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(bin) = found.pop() {
        return bin;
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL's programs (initdb, postgres) are installed: set PG_BIN");
    String::from_utf8_lossy(&out.stdout).trim().into()
}

/// The output of `id args` as a number.
fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("id(1) runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("id {args:?}: {e}"))
}

/// Sends `signal` (such as `-STOP`) to `pid`; whether it was delivered.
fn signal(signal: &str, pid: u32) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The processes whose parent is `pid` (PostgreSQL's backends and helpers
/// are the postmaster's children, each in a process group of its own).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so read after
        // its closing parenthesis.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

impl PrivatePostgres {
    /// Makes a cluster (`initdb`, about 2 s) and starts its server.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("tower-accepted-pg-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let user = (id(&["-u"]) == 0).then(|| (id(&["-u", "postgres"]), id(&["-g", "postgres"])));
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let mut postgres = Self {
            port,
            dir,
            bin: bin_dir(),
            user,
            child: None,
        };
        let mut initdb = postgres.command("initdb");
        initdb
            .arg("-D")
            .arg(postgres.data())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdout(Stdio::null());
        let output = tokio::task::spawn_blocking(move || initdb.output())
            .await
            .unwrap()
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        postgres.spawn().await;
        postgres
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command running PostgreSQL's program `name` as its user.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command.current_dir(&self.dir);
        command
    }

    /// The URL of its database `postgres`, with `application_name` set to
    /// `application` (which tells a store's backends from others').
    pub fn url(&self, application: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?application_name={application}",
            self.port
        )
    }

    /// Starts the server (again: a cluster stopped by [`stop`](Self::stop)
    /// recovers what was committed) and waits until it accepts connections.
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("log")).unwrap();
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(self.dir.join("log"), Some(uid), Some(gid)).unwrap();
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=60",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // A TCP accept is not enough: the server refuses logins while
            // it starts up or recovers.
            if let Ok(Ok(conn)) =
                tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(&self.url("probe"))).await
            {
                let _ = conn.close().await;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private postgres did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's processes as `ps` shows them (pid, parent, state,
    /// command), for a test's failure message.
    pub fn processes(&self) -> String {
        let Some(pid) = self.pid() else {
            return "not running".into();
        };
        let mut pids = vec![pid];
        pids.extend(children(pid));
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        Command::new("ps")
            .args(["-o", "pid,ppid,stat,args", "-p", &list.join(",")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server at once (`SIGQUIT`, the immediate shutdown: every
    /// connection is cut, as in a crash; what was committed survives in
    /// the WAL) and waits until it exited: new connections are refused.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        signal("-CONT", pid);
        signal("-QUIT", pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                for c in children(pid) {
                    signal("-KILL", c);
                }
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every process of the server (`SIGSTOP`), the postmaster first
    /// so that it starts no other: connections stay open, and nothing
    /// answers, as with a server that hangs.
    pub fn freeze(&self) {
        let Some(pid) = self.pid() else { return };
        assert!(signal("-STOP", pid), "kill -STOP {pid}");
        for child in children(pid) {
            signal("-STOP", child);
        }
    }

    /// Lets a frozen server go on (`SIGCONT`), its children first.
    pub fn thaw(&self) {
        let Some(pid) = self.pid() else { return };
        for child in children(pid) {
            signal("-CONT", child);
        }
        signal("-CONT", pid);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            // A test that failed while the server was frozen must not leave
            // it stopped: thawed first, then stopped at once.
            let kids = children(pid);
            for c in &kids {
                signal("-CONT", *c);
            }
            signal("-CONT", pid);
            signal("-QUIT", pid);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().ok().flatten().is_none() {
                for c in children(pid) {
                    signal("-KILL", c);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
