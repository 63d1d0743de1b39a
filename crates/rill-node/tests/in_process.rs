//! A cluster inside one test process: two nodes on the in-process network (`MemNet`), talking
//! through the same seam the production network uses. They form a cluster with join, plan and
//! commit, hand partitions over, serve each other's keys, and notice when the network between
//! them is cut — with no sockets at all, which is what a deterministic simulator builds on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use rill_core::bkey::{BKey, Bucket};
use rill_core::object::{Content, Metadata};
use rill_core::props::Quorum;
use rill_core::ring::NodeName;
use rill_core::vclock::VClock;
use rill_net::MemNet;
use rill_node::request::{GetOptions, GetResponse, PutOptions, PutRequest};
use rill_node::{BackendKind, Node, NodeConfig};

fn ip(i: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, i])
}

async fn node(net: &MemNet, i: u8) -> Node {
    node_with_ring(net, i, 16).await
}

async fn node_with_ring(net: &MemNet, i: u8, ring_size: u32) -> Node {
    let host = net.host(ip(i));
    let addr = SocketAddr::new(ip(i), 8099);
    let config = NodeConfig {
        name: format!("n{i}@10.0.0.{i}"),
        backend: BackendKind::Memory,
        ring_size,
        internode_addr: addr,
        cluster_secret: Some(b"in-process".to_vec()),
        ..NodeConfig::default()
    };
    let listener = host.bind(addr).await.unwrap();
    let (node, _) = Node::start_with(config, host).unwrap();
    node.serve_internode(listener);
    node
}

fn bkey(k: usize) -> BKey {
    BKey::new(Bucket::default_type("b").unwrap(), format!("k{k}")).unwrap()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_form_a_cluster_in_one_process() {
    let net = MemNet::new(42);
    let a = node(&net, 1).await;
    let b = node(&net, 2).await;

    // Data written before the cluster forms must move with its partitions.
    for k in 0..50 {
        let req = PutRequest {
            bkey: bkey(k),
            context: VClock::default(),
            content: Content::new(Bytes::from(format!("v{k}")), Metadata::default()),
        };
        a.put(req, &PutOptions::default()).await.unwrap();
    }

    b.join(SocketAddr::new(ip(1), 8099)).await.unwrap();
    eventually("a hears of the join", || {
        a.cluster_state().active_members().count() == 2
    })
    .await;
    let plan = a.plan().await.unwrap();
    assert_eq!(plan.actions.len(), 1);
    assert!(!plan.moves.is_empty());
    a.commit_plan().await.unwrap();
    eventually("every transfer finishes", || {
        a.cluster_state().pending().is_empty() && b.cluster_state().pending().is_empty()
    })
    .await;
    let nb = NodeName::from("n2@10.0.0.2");
    assert_eq!(a.ring().partitions_of(&nb).len(), 8);
    assert_eq!(a.cluster_state(), b.cluster_state());

    // Every key, written through either node, is read whole through the other.
    let all = GetOptions {
        r: Some(Quorum::All),
        ..GetOptions::default()
    };
    for k in 0..50 {
        match b.get(&bkey(k), &all).await.unwrap() {
            GetResponse::Found(obj) => assert_eq!(obj.contents[0].value, format!("v{k}")),
            other => panic!("k{k}: {other:?}"),
        }
    }

    // Cut the network: each side sees the other unreachable within the detector's ceiling.
    net.partition(ip(1), ip(2));
    let na = NodeName::from("n1@10.0.0.1");
    eventually("a sees b unreachable", || !a.is_up(&nb)).await;
    eventually("b sees a unreachable", || !b.is_up(&na)).await;
    net.heal(ip(1), ip(2));
    eventually("a sees b again", || a.is_up(&nb)).await;
}

/// A join is refused, with a message that says why, when the target is this node, cannot be
/// reached, has another ring size, or when the joining node is already in a cluster or holds
/// data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_that_cannot_work_are_refused_clearly() {
    let net = MemNet::new(9);
    let a = node(&net, 1).await;
    let b = node(&net, 2).await;
    let refusal = |r: Result<(), rill_node::NodeError>| r.unwrap_err().to_string();

    let me = refusal(a.join(SocketAddr::new(ip(1), 8099)).await);
    assert!(me.contains("is this node"), "{me}");
    let nobody = refusal(a.join(SocketAddr::new(ip(9), 8099)).await);
    assert!(nobody.contains("cannot reach"), "{nobody}");
    let other_ring = node_with_ring(&net, 3, 32).await;
    let ring = refusal(other_ring.join(SocketAddr::new(ip(1), 8099)).await);
    assert!(ring.contains("ring of 32 partitions"), "{ring}");

    let with_data = node(&net, 4).await;
    let req = PutRequest {
        bkey: bkey(1),
        context: VClock::default(),
        content: Content::new(Bytes::from_static(b"v"), Metadata::default()),
    };
    with_data.put(req, &PutOptions::default()).await.unwrap();
    let full = refusal(with_data.join(SocketAddr::new(ip(1), 8099)).await);
    assert!(full.contains("holds data"), "{full}");

    b.join(SocketAddr::new(ip(1), 8099)).await.unwrap();
    eventually("a hears of the join", || {
        a.cluster_state().active_members().count() == 2
    })
    .await;
    let member = refusal(a.join(SocketAddr::new(ip(3), 8099)).await);
    assert!(
        member.contains("already a member of a cluster of 2 nodes"),
        "{member}"
    );
}

/// A big set (stored split) updated through both nodes: the replicas on the other node apply
/// the updates' deltas, a replica cut off by a partition is sent the whole set by the first
/// update after the heal (which stores it: without that fallback b's replicas would store
/// nothing), and both nodes read every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_set_is_updated_through_both_nodes_and_heals_after_a_partition() {
    use rill_core::crdt::{DtValue, Fetched, Op, SetOp};
    use rill_node::request::{DtFetchOptions, DtUpdateOptions, DtUpdateRequest};

    let net = MemNet::new(7);
    let a = node(&net, 1).await;
    let b = node(&net, 2).await;
    b.join(SocketAddr::new(ip(1), 8099)).await.unwrap();
    eventually("a hears of the join", || {
        a.cluster_state().active_members().count() == 2
    })
    .await;
    a.plan().await.unwrap();
    a.commit_plan().await.unwrap();
    eventually("every transfer finishes", || {
        a.cluster_state().pending().is_empty() && b.cluster_state().pending().is_empty()
    })
    .await;
    a.metadata()
        .create_type("sets", &serde_json::json!({"datatype": "set"}))
        .unwrap();
    a.metadata().activate_type("sets").unwrap();
    eventually("b has the type", || {
        b.metadata().check_type_active("sets").is_ok()
    })
    .await;

    let k = BKey::new(Bucket::new("sets", "b").unwrap(), "big".to_string()).unwrap();
    let update = |node: &Node, adds: Vec<String>, w: Option<Quorum>| {
        let req = DtUpdateRequest {
            bkey: k.clone(),
            op: Op::Set(SetOp {
                adds: adds.into_iter().map(Bytes::from).collect(),
                removes: vec![],
            }),
            context: None,
        };
        let opts = DtUpdateOptions {
            w,
            ..DtUpdateOptions::default()
        };
        let node = node.clone();
        async move { node.dt_update(&req, &opts).await.unwrap() }
    };
    let members = |state: Option<Fetched>| match state.map(|s| s.value()) {
        Some(DtValue::Set(m)) => m.len(),
        other => panic!("{other:?}"),
    };
    let all = DtFetchOptions {
        r: Some(Quorum::All),
        ..DtFetchOptions::default()
    };

    // Big enough to be stored split (past 8 KiB) from its second update on.
    let many = |p: &str| (0..600).map(|i| format!("{p}{i:015}")).collect::<Vec<_>>();
    update(&a, many("a"), None).await;
    update(&b, vec!["through-b".into()], None).await;
    update(&a, many("c"), None).await;
    update(&b, vec!["again-b".into()], None).await;
    for node in [&a, &b] {
        assert_eq!(members(node.dt_fetch(&k, &all).await.unwrap().1), 1202);
    }

    // While the nodes cannot reach each other, a takes two updates on its side alone.
    net.partition(ip(1), ip(2));
    let nb = NodeName::from("n2@10.0.0.2");
    eventually("a sees b unreachable", || !a.is_up(&nb)).await;
    update(&a, vec!["during-1".into()], Some(Quorum::One)).await;
    update(&a, vec!["during-2".into()], Some(Quorum::One)).await;
    net.heal(ip(1), ip(2));
    // Both sides must see the other again, or a read through b would ask fallbacks on b.
    let na = NodeName::from("n1@10.0.0.1");
    eventually("a sees b again", || a.is_up(&nb)).await;
    eventually("b sees a again", || b.is_up(&na)).await;

    // The next update finds b's replicas behind and sends them the whole set.
    let on_b = a.preflist(&k, 3).iter().filter(|e| e.node == nb).count() as u64;
    assert!(on_b > 0, "b holds a replica of the key");
    let stored_on_b = b.stats().vnode_puts.get();
    update(&a, vec!["after".into()], None).await;
    // The writes to b finish in the background once a's own replicas made the quorum: a
    // replica that is behind stores nothing for the delta, then stores the whole set.
    eventually("b's replicas store the whole set", || {
        b.stats().vnode_puts.get() >= stored_on_b + on_b
    })
    .await;
    for node in [&a, &b] {
        assert_eq!(members(node.dt_fetch(&k, &all).await.unwrap().1), 1205);
    }
}
