//! Job events over QUIC (`Client::subscribe`): a subscriber to every queue
//! sees a Wasm job added, started and finished, in that order; one
//! subscribed to another queue sees none of it, then its own queue's add.
//! Real node, bounded waits.

use std::time::Duration;

use wasque_sdk::proto::AddJob;
use wasque_tests::node::TestNode;

async fn next(sub: &mut wasque_sdk::Subscription) -> Option<serde_json::Value> {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .ok()
        .and_then(|r| r.expect("event stream"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_a_jobs_events_in_order_and_only_its_queues() {
    let node = TestNode::start(&[]);
    let client = node.client().await;
    let mut all = client.subscribe(vec![]).await.expect("subscribe");
    let mut other = client
        .subscribe(vec!["other".into()])
        .await
        .expect("subscribe");
    let module = client
        .put_module(wasque_tests::guests::wasm("echo"))
        .await
        .expect("upload");
    let mut job = AddJob::new("ev", b"hi".to_vec());
    job.module = Some(module.hash);
    let id = client.add_job(job).await.expect("add").to_string();
    let mut seen = Vec::new();
    while let Some(ev) = next(&mut all).await {
        assert_eq!(ev["id"], id.as_str(), "{ev}");
        assert_eq!(ev["queue"], "ev");
        let word = ev["event"].as_str().unwrap_or_default().to_string();
        seen.push(word.clone());
        if word == "finished" {
            break;
        }
    }
    assert_eq!(seen, ["added", "started", "finished"]);

    // Nothing of queue "ev" reached the other subscriber.
    let quiet = tokio::time::timeout(Duration::from_millis(300), other.next()).await;
    assert!(
        quiet.is_err(),
        "an event of another queue arrived: {quiet:?}"
    );
    let id2 = client
        .add_job(AddJob::new("other", b"x".to_vec()))
        .await
        .expect("add")
        .to_string();
    let ev = next(&mut other).await.expect("the other queue's event");
    assert_eq!(ev["event"], "added");
    assert_eq!(ev["id"], id2.as_str());
}
