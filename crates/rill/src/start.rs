//! `rill start`: open the node, serve HTTP and PB, stop cleanly on SIGINT/SIGTERM.

use std::io::IsTerminal;

use std::sync::Arc;

use anyhow::Context;
use rill_net::{Net, TokioNet};
use rill_node::Node;
use tokio::sync::watch;
use tracing::info;

use crate::config::{Settings, StartArgs};

pub fn run(args: StartArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    // The storage engine reports every flush at info; quiet it unless asked for by name.
    let filter = format!("fjall=warn,lsm_tree=warn,{}", settings.log);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter).context("--log filter")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Fault-injection points named in FAILPOINTS (test builds only).
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(settings))
}

async fn serve(mut s: Settings) -> anyhow::Result<()> {
    // Every socket of the node goes through the network seam.
    let net: Arc<dyn Net> = Arc::new(TokioNet);
    let internode = net
        .bind(s.node.internode_addr)
        .await
        .with_context(|| format!("binding internode traffic to {}", s.node.internode_addr))?;
    // With port 0 the address peers must use is only known now.
    s.node.internode_addr = internode.local_addr()?;
    let (node, report) =
        Node::start_with(s.node.clone(), net.clone()).context("opening the node")?;
    info!(
        name = %node.name(),
        data_dir = %s.node.data_dir.display(),
        backend = node.backend_name(),
        ring_size = node.ring_size(),
        partitions_on_disk = report.partitions_on_disk,
        objects = report.objects_estimate,
        cluster_members = report.cluster_members,
        "node opened"
    );
    node.serve_internode(internode);
    let http = net
        .bind(s.http_addr)
        .await
        .with_context(|| format!("binding HTTP to {}", s.http_addr))?;
    let pb = net
        .bind(s.pb_addr)
        .await
        .with_context(|| format!("binding PB to {}", s.pb_addr))?;
    info!(
        http = %http.local_addr()?,
        pb = %pb.local_addr()?,
        internode = %s.node.internode_addr,
        "listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let http_task = tokio::spawn(rill_api::http::serve(
        http,
        node.clone(),
        s.http,
        stopped(stop_rx.clone()),
    ));
    let pb_task = tokio::spawn(rill_api::pb::server::serve(
        pb,
        node.clone(),
        s.pb,
        stopped(stop_rx),
    ));

    tokio::select! {
        _ = shutdown_signal() => {}
        reason = node.exit_requested() => info!(%reason, "stopping by itself"),
    }
    info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    let _ = pb_task.await;
    node.shutdown().await.context("flushing storage")?;
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
