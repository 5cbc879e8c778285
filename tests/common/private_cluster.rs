//! A Redis Cluster of a test's own: three masters (no replicas), each a
//! `redis-server` on a free port with a directory of its own, joined by
//! `redis-cli --cluster create`. A test can look at where keys live
//! ([`PrivateCluster::node_of`]) and which keys have no time to live
//! ([`PrivateCluster::keys_without_ttl`]) without disturbing any other test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use redis::Value;
use tokio::process::{Child, Command};

/// The slots of a Redis Cluster, all of which the three masters must serve.
const SLOTS: i64 = 16384;

/// How long the cluster has to form once the servers are up.
const FORM: Duration = Duration::from_secs(30);

/// How long one command to one node may take before a check gives up.
const COMMAND: Duration = Duration::from_secs(2);

/// Three `redis-server` processes joined in a cluster, killed (and their
/// directories removed) when dropped.
pub struct PrivateCluster {
    ports: [u16; 3],
    dirs: Vec<PathBuf>,
    children: Vec<Child>,
}

/// Three distinct free ports (from binding 127.0.0.1:0) for the clients, and three more for the
/// cluster bus (`--cluster-port`, so that the bus port is not the client
/// port + 10000, which may be taken or out of range).
fn free_ports() -> ([u16; 3], [u16; 3]) {
    // Held together until all six are chosen, so that no two are the same.
    let listeners: Vec<_> = (0..6)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    drop(listeners);
    ([ports[0], ports[1], ports[2]], [ports[3], ports[4], ports[5]])
}

impl PrivateCluster {
    /// Starts the three servers, creates the cluster and waits (at most
    /// 30 s) until every node says `cluster_state:ok` and sees three masters
    /// serving all 16384 slots.
    pub async fn start() -> Self {
        let (ports, bus_ports) = free_ports();
        let mut cluster = Self {
            ports,
            dirs: Vec::new(),
            children: Vec::new(),
        };
        for (port, bus_port) in ports.into_iter().zip(bus_ports) {
            cluster.spawn(port, bus_port);
        }
        for port in ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                assert!(
                    Instant::now() < deadline,
                    "the cluster's redis-server on port {port} did not start"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let began = Instant::now();
        cluster.create().await;
        cluster.wait_until_formed().await;
        if std::env::var_os("PRIVATE_CLUSTER_VERBOSE").is_some() {
            eprintln!("private cluster {ports:?} formed in {:?}", began.elapsed());
        }
        cluster
    }

    /// `redis://127.0.0.1:<port>` for each node.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    pub fn ports(&self) -> [u16; 3] {
        self.ports
    }

    /// The keys matching `pattern` on every node that have no time to live
    /// (`PTTL` says -1), sorted.
    /// Stops the master on `port` (`SIGSTOP`): its connections stay open,
    /// its commands get no answer, as with a node that hangs.
    pub fn freeze(&self, port: u16) {
        self.signal(port, "-STOP");
    }

    /// Lets a frozen master go on (`SIGCONT`).
    pub fn thaw(&self, port: u16) {
        self.signal(port, "-CONT");
    }

    fn signal(&self, port: u16, signal: &str) {
        let Some(child) = self
            .ports
            .iter()
            .position(|p| *p == port)
            .and_then(|i| self.children.get(i))
        else {
            panic!("no node on port {port}");
        };
        let pid = child.id().expect("the node runs");
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill {signal} {pid}: {status}");
    }

    pub async fn keys_without_ttl(&self, pattern: &str) -> Vec<String> {
        let mut found = Vec::new();
        for port in self.ports {
            let mut conn = connection(port)
                .await
                .unwrap_or_else(|e| panic!("connect to node {port}: {e}"));
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("SCAN on node {port}: {e}"));
                for key in keys {
                    let pttl: i64 = redis::cmd("PTTL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("PTTL {key} on node {port}: {e}"));
                    if pttl == -1 {
                        found.push(key);
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        found.sort();
        found
    }

    /// The port of the master that serves `key`'s slot.
    pub async fn node_of(&self, key: &str) -> u16 {
        let port = self.ports[0];
        let mut conn = connection(port)
            .await
            .unwrap_or_else(|e| panic!("connect to node {port}: {e}"));
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"));
        let slots = slots(port)
            .await
            .unwrap_or_else(|e| panic!("CLUSTER SLOTS on node {port}: {e}"));
        slots
            .iter()
            .find(|range| range.start <= slot && slot <= range.end)
            .map(|range| range.master)
            .unwrap_or_else(|| panic!("no master serves slot {slot} ({key}): {slots:?}"))
    }

    fn spawn(&mut self, port: u16, bus_port: u16) {
        let dir = std::env::temp_dir().join(format!("tower-accepted-cluster-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        self.dirs.push(dir.clone());
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-port", &bus_port.to_string()])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--cluster-node-timeout", "5000"])
            .args(["--appendonly", "yes", "--save", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        self.children.push(child);
    }

    /// `redis-cli --cluster create`: the slots split in three, the nodes
    /// told of each other.
    async fn create(&self) {
        let mut cli = Command::new("redis-cli");
        cli.arg("--cluster").arg("create");
        for port in self.ports {
            cli.arg(format!("127.0.0.1:{port}"));
        }
        cli.args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(FORM, cli.output())
            .await
            .unwrap_or_else(|_| panic!("redis-cli --cluster create did not finish in {FORM:?}"))
            .expect("redis-cli is installed (.ci/run installs it)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }

    async fn wait_until_formed(&self) {
        let deadline = Instant::now() + FORM;
        loop {
            let mut last = String::new();
            let mut formed = true;
            for port in self.ports {
                match tokio::time::timeout(COMMAND, self.formed_on(port)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(why)) => {
                        formed = false;
                        last = format!("node {port}: {why}");
                        break;
                    }
                    Err(_) => {
                        formed = false;
                        last = format!("node {port}: no answer in {COMMAND:?}");
                        break;
                    }
                }
            }
            if formed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private cluster {:?} did not form in {FORM:?}; last: {last}",
                self.ports
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether `port` says `cluster_state:ok`, and its `CLUSTER SLOTS`
    /// shows the three masters serving every slot; why not otherwise.
    async fn formed_on(&self, port: u16) -> Result<(), String> {
        let mut conn = connection(port).await.map_err(|e| e.to_string())?;
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
            return Err(format!("CLUSTER INFO:\n{info}"));
        }
        let mut slots = slots(port).await.map_err(|e| e.to_string())?;
        slots.sort_by_key(|range| range.start);
        let mut next = 0;
        for range in &slots {
            if range.start != next {
                return Err(format!("slots from {next} not served: {slots:?}"));
            }
            next = range.end + 1;
        }
        if next != SLOTS {
            return Err(format!("slots from {next} not served: {slots:?}"));
        }
        let mut masters: Vec<u16> = slots.iter().map(|range| range.master).collect();
        masters.sort_unstable();
        masters.dedup();
        let mut expected = self.ports.to_vec();
        expected.sort_unstable();
        if masters != expected {
            return Err(format!("masters {masters:?}, not {expected:?}"));
        }
        Ok(())
    }
}

/// One range of `CLUSTER SLOTS`: the slots `start..=end`, served by the
/// master on port `master`.
#[derive(Debug)]
struct SlotRange {
    start: i64,
    end: i64,
    master: u16,
}

async fn connection(port: u16) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_multiplexed_async_connection()
        .await
}

/// `CLUSTER SLOTS` as node `port` sees it.
async fn slots(port: u16) -> redis::RedisResult<Vec<SlotRange>> {
    let mut conn = connection(port).await?;
    let value: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn).await?;
    let unexpected = |what: &str| -> redis::RedisError {
        (
            redis::ErrorKind::Parse,
            "unexpected CLUSTER SLOTS reply",
            format!("{what}: {value:?}"),
        )
            .into()
    };
    let Value::Array(ranges) = &value else {
        return Err(unexpected("not an array"));
    };
    ranges
        .iter()
        .map(|range| match range.as_sequence() {
            Some([Value::Int(start), Value::Int(end), Value::Array(master), ..]) => match master.as_slice() {
                [_, Value::Int(port), ..] => Ok(SlotRange {
                    start: *start,
                    end: *end,
                    master: u16::try_from(*port).map_err(|_| unexpected("port out of range"))?,
                }),
                _ => Err(unexpected("no master port")),
            },
            _ => Err(unexpected("not [start, end, master, ...]")),
        })
        .collect()
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            // A test that failed while a node was frozen must not leave it
            // stopped: thawed first, then killed.
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-CONT", &pid.to_string()])
                    .status();
            }
            let _ = child.start_kill();
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
