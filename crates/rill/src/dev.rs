//! `rill dev`: a local cluster of real, separate `rill start` processes on loopback, formed and
//! settled, with Riak's devrel conventions — nodes `dev1@127.0.0.1` … `devN@127.0.0.1`, node i
//! serving HTTP on 100i8, PB on 100i7 and internode traffic on 100i9 (shifted by
//! `--base-port`). Each node keeps its data in `DIR/devI`, so running the command again on the
//! same directory restarts the same cluster with its data; the nodes share a secret kept in
//! `DIR/cluster.secret`. Ctrl-C (or SIGTERM) stops every node cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

/// Flags of `rill dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Number of nodes, 1 to 9.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// Directory holding one data directory per node (and the cluster secret).
    #[arg(long, default_value = "./dev")]
    data_dir: PathBuf,
    /// Ports are BASE + 10*i + 8 (HTTP), + 7 (PB) and + 9 (internode) for node i.
    #[arg(long, default_value_t = 10000)]
    base_port: u16,
    /// Partitions of the ring (only used when the cluster is first created).
    #[arg(long, default_value_t = 64)]
    ring_size: u32,
    /// Storage backend of every node: fjall or memory.
    #[arg(long, default_value = "fjall")]
    backend: String,
}

/// One node of the dev cluster.
struct DevNode {
    name: String,
    http: SocketAddr,
    pb: SocketAddr,
    internode: SocketAddr,
    dir: PathBuf,
    child: Child,
}

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let secret = ensure_secret(&args.data_dir)?;
    let exe = std::env::current_exe().context("locating the rill binary")?;
    let mut nodes = Vec::new();
    for i in 1..=args.nodes {
        let port = |last: u16| -> anyhow::Result<SocketAddr> {
            let p = args
                .base_port
                .checked_add(10 * i + last)
                .context("--base-port is too high")?;
            Ok(SocketAddr::from(([127, 0, 0, 1], p)))
        };
        let name = format!("dev{i}@127.0.0.1");
        let (http, pb, internode) = (port(8)?, port(7)?, port(9)?);
        let dir = args.data_dir.join(format!("dev{i}"));
        match start_node(&exe, &name, [http, pb, internode], &dir, &secret, &args) {
            Ok(child) => nodes.push(DevNode {
                name,
                http,
                pb,
                internode,
                dir,
                child,
            }),
            Err(e) => {
                stop_all(&mut nodes);
                return Err(e);
            }
        }
    }
    let agent = agent();
    let formed = (|| -> anyhow::Result<()> {
        for n in &mut nodes {
            wait_up(&agent, n)?;
        }
        form(&agent, &nodes)?;
        settle(&agent, &nodes[0])
    })();
    if let Err(e) = formed {
        stop_all(&mut nodes);
        return Err(e);
    }
    println!(
        "rill dev: {} node{} formed and settled in {:.1} s (data in {})\n",
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64(),
        args.data_dir.display()
    );
    println!(
        "{:<18} {:<17} {:<17} {:<17} log",
        "node", "http", "pb", "internode"
    );
    for n in &nodes {
        println!(
            "{:<18} {:<17} {:<17} {:<17} {}",
            n.name,
            n.http.to_string(),
            n.pb.to_string(),
            n.internode.to_string(),
            n.dir.join("node.log").display()
        );
    }
    println!(
        "\nrill admin --node {} member-status    # and the other admin commands\nCtrl-C stops the cluster.",
        nodes[0].http
    );
    let died = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(watch(&mut nodes));
    stop_all(&mut nodes);
    if let Some(name) = died {
        bail!("{name} exited; the cluster was stopped (see its node.log)");
    }
    Ok(())
}

/// The shared secret, created on first use.
fn ensure_secret(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("cluster.secret");
    if !path.exists() {
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        std::fs::write(&path, format!("{secret}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// Starts one node: `addrs` are its HTTP, PB and internode addresses.
fn start_node(
    exe: &Path,
    name: &str,
    addrs: [SocketAddr; 3],
    dir: &Path,
    secret: &Path,
    args: &DevArgs,
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("start")
        .args(["--name", name])
        .args(["--http", &addrs[0].to_string()])
        .args(["--pb", &addrs[1].to_string()])
        .args(["--internode", &addrs[2].to_string()])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--cluster-secret-file")
        .arg(secret)
        .args(["--ring-size", &args.ring_size.to_string()])
        .args(["--backend", &args.backend])
        .env_remove("RILL_CONFIG")
        .stdout(Stdio::null())
        .stderr(log);
    // The nodes stop with `rill dev` even if it is killed outright.
    #[cfg(target_os = "linux")]
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("starting {name}"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn get(agent: &ureq::Agent, node: &DevNode, path: &str) -> anyhow::Result<Value> {
    let mut resp = agent.get(&format!("http://{}{path}", node.http)).call()?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string()?;
    if !status.is_success() {
        bail!("{}: {} ({status})", node.name, text.trim());
    }
    Ok(serde_json::from_str(&text)?)
}

fn post(agent: &ureq::Agent, node: &DevNode, path: &str, body: Value) -> anyhow::Result<Value> {
    let mut resp = agent
        .post(&format!("http://{}{path}", node.http))
        .content_type("application/json")
        .send(body.to_string())?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string()?;
    if !status.is_success() {
        bail!("{}: {} ({status})", node.name, text.trim());
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Waits until a node answers `/ping`, or reports that it died.
fn wait_up(agent: &ureq::Agent, n: &mut DevNode) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(status) = n.child.try_wait()? {
            bail!(
                "{} exited at start ({status}); see {}",
                n.name,
                n.dir.join("node.log").display()
            );
        }
        if agent
            .get(&format!("http://{}/ping", n.http))
            .call()
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{} did not start within 120 s", n.name)
}

/// Joins every node that is not yet a member to dev1, then plans and commits.
fn form(agent: &ureq::Agent, nodes: &[DevNode]) -> anyhow::Result<()> {
    let first = &nodes[0];
    let members = |a: &ureq::Agent| -> anyhow::Result<Vec<(String, String)>> {
        Ok(get(a, first, "/admin/member-status")?
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["node"].as_str().unwrap_or("").to_string(),
                    m["status"].as_str().unwrap_or("").to_lowercase(),
                )
            })
            .collect())
    };
    let known = members(agent)?;
    for n in &nodes[1..] {
        if !known.iter().any(|(name, _)| *name == n.name) {
            post(
                agent,
                n,
                "/admin/cluster/join",
                json!({ "target": first.internode.to_string() }),
            )?;
        }
    }
    // Wait for dev1 to hear of every join, then commit them together.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = members(agent)?;
        let joining = now.iter().filter(|(_, s)| s == "joining").count();
        let missing = nodes
            .iter()
            .filter(|n| !now.iter().any(|(name, _)| *name == n.name))
            .count();
        if missing == 0 {
            if joining == 0 {
                return Ok(());
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("dev1 did not hear of every join within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    get(agent, first, "/admin/cluster/plan")?;
    post(agent, first, "/admin/cluster/commit", json!({}))?;
    Ok(())
}

/// Waits until every transfer is done and every member agrees on the ring.
fn settle(agent: &ureq::Agent, first: &DevNode) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ring = get(agent, first, "/admin/ring-status")?;
        let pending = ring["pending"].as_array().map_or(0, Vec::len);
        if pending == 0 && ring["ring_ready"] == true {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the cluster did not settle within 600 s ({pending} transfers pending)");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for Ctrl-C or SIGTERM, or for a node to die; returns the name of a node that died.
async fn watch(nodes: &mut [DevNode]) -> Option<String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return None,
            _ = term.recv() => return None,
            _ = tick.tick() => {
                for n in nodes.iter_mut() {
                    if let Ok(Some(_)) = n.child.try_wait() {
                        return Some(n.name.clone());
                    }
                }
            }
        }
    }
}

/// Stops every node with SIGTERM (a clean shutdown), waiting for each.
fn stop_all(nodes: &mut [DevNode]) {
    for n in nodes.iter() {
        if let Ok(pid) = i32::try_from(n.child.id()) {
            // SAFETY: signalling a child process we started; no memory is involved.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    for n in nodes.iter_mut() {
        let _ = n.child.wait();
    }
    println!("rill dev: stopped");
}
