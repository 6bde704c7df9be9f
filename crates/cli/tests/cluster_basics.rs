//! A 3-node cluster of `tally node` processes serves the client API as documented: forwarded writes,
//! linearizable and stale reads, one agreed cluster view, readiness.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, NODES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_follower_is_forwarded_and_read_everywhere() {
    let start = Instant::now();
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % NODES;

    // A write sent to a follower is forwarded to the leader and answered with its log index.
    let index = cluster.put_retrying(follower, "greeting", "hello", Duration::from_secs(10)).await;
    assert!(index > 0, "a write's index is positive");

    // A linearizable read on every node sees it at once, with the write's index as modify index.
    for i in 0..NODES {
        let answer = cluster.read(i, "greeting", false).await;
        assert_eq!(answer.status, 200, "linearizable read on {}: {}", cluster.nodes[i].id, answer.text());
        assert_eq!(answer.text(), "hello");
        assert_eq!(answer.header("x-tally-modify-index"), Some(index.to_string()));
        let applied: u64 = answer.header("x-tally-index").expect("X-Tally-Index").parse().expect("number");
        assert!(applied >= index, "{} answered from index {applied} < write {index}", cluster.nodes[i].id);
    }

    // A stale read converges on every node (bounded).
    for i in 0..NODES {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = cluster.read(i, "greeting", true).await;
            if answer.status == 200 {
                assert_eq!(answer.text(), "hello");
                break;
            }
            answer.assert_error(404, "not_found");
            assert!(Instant::now() < deadline, "{} never applied the write", cluster.nodes[i].id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Every node shows the same leader and three voters.
    let leader_id = cluster.nodes[leader].id.clone();
    for i in 0..NODES {
        let view = cluster.view_of(i).await;
        assert_eq!(view.id, cluster.nodes[i].id);
        assert_eq!(view.leader.as_deref(), Some(leader_id.as_str()), "{} names another leader: {view:?}", view.id);
        assert_eq!(view.role, if i == leader { "leader" } else { "follower" }, "{view:?}");
        let mut voters: Vec<&str> = view.members.iter().filter(|m| m.role == "voter").map(|m| m.id.as_str()).collect();
        voters.sort_unstable();
        assert_eq!(voters, ["n1", "n2", "n3"], "{view:?}");
        assert!(view.applied_index >= index, "{view:?}");
    }

    // Every node is ready (a follower may need a heartbeat to learn the latest commit index).
    for i in 0..NODES {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = cluster.get(i, "/readyz").await.expect("readyz answers");
            if answer.status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready: {} {}",
                cluster.nodes[i].id,
                answer.status,
                answer.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!("cluster_basics: {}", common::elapsed(start));
}
