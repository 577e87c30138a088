//! Client numbers at the ends of their types, sent to a real node: every
//! option that takes a number gets i64::MAX, u64::MAX, negative numbers and
//! 0 over RESP (and the typed values over QUIC through the SDK). Each is
//! either accepted (where the value means something) or refused with a
//! clear error; the node answers on after every one, and an accepted job's
//! times did not wrap.

use wasque_sdk::proto::AddJob;
use wasque_tests::node::TestNode;
use wasque_tests::resp::{self, Value};

const I64_MAX: &str = "9223372036854775807";
const U64_MAX: &str = "18446744073709551615";
const I64_MIN: &str = "-9223372036854775808";
const VALUES: [&str; 5] = [I64_MAX, U64_MAX, "-1", I64_MIN, "0"];

#[test]
fn every_numeric_option_at_its_extremes_over_resp() {
    let node = TestNode::start(&[]);
    let mut c = resp::connect(node.addr).expect("RESP");
    let id = match resp::cmd(&mut c, &["ADDJOB", "w", "x", "0"]) {
        Ok(Value::BulkString(b)) => String::from_utf8(b).unwrap(),
        Ok(Value::SimpleString(s)) => s,
        other => panic!("{other:?}"),
    };
    // (words with V for the value, the values accepted)
    let table: &[(&[&str], &[&str])] = &[
        (&["ADDJOB", "q", "x", "V"], &["0"]),
        (&["ADDJOB", "q", "x", "0", "TTL", "V"], &[]),
        (&["ADDJOB", "q", "x", "0", "RETRY", "V"], &["0"]),
        (&["ADDJOB", "q", "x", "0", "DELAY", "V"], &["0"]),
        (&["ADDJOB", "q", "x", "0", "MAXLEN", "V"], &[I64_MAX]),
        (&["ADDJOB", "q", "x", "0", "REPLICATE", "V"], &[]),
        (&["ADDJOB", "q", "x", "0", "PRIORITY", "V"], &["0"]),
        (&["ADDJOB", "q", "x", "0", "FUEL", "V"], &[]),
        (&["ADDJOB", "q", "x", "0", "MEMORY", "V"], &[]),
        (&["ADDJOB", "q", "x", "0", "DEADLINE", "V"], &[]),
        (
            &["GETJOB", "NOHANG", "TIMEOUT", "V", "FROM", "none"],
            &["0"],
        ),
        (
            &["GETJOB", "NOHANG", "COUNT", "V", "FROM", "none"],
            &[I64_MAX],
        ),
        (&["WAITJOB", &id, "V"], &["0"]),
        (&["QPEEK", "q", "V"], &[I64_MAX, "-1", I64_MIN, "0"]),
        (&["QSCAN", "COUNT", "V"], &[I64_MAX, "0"]),
        (&["JSCAN", "COUNT", "V"], &[I64_MAX, "0"]),
    ];
    for (words, accepted) in table {
        for v in VALUES {
            let sent: Vec<&str> = words
                .iter()
                .map(|w| if *w == "V" { v } else { w })
                .collect();
            let r = resp::cmd(&mut c, &sent);
            let what = sent.join(" ");
            if accepted.contains(&v) {
                assert!(r.is_ok(), "{what}: accepted, got {r:?}");
            } else {
                let e = r.expect_err(&format!("{what}: refused"));
                let text = format!("{e}");
                assert!(
                    !text.contains("Protocol error") && text.len() > 10,
                    "{what}: a clear error, got {text}"
                );
            }
            assert_eq!(
                resp::cmd(&mut c, &["PING"]),
                Ok(Value::SimpleString("PONG".into())),
                "alive after {what}"
            );
        }
    }
    // The largest TTL in range is kept, and its TTL did not wrap.
    let r = resp::cmd(&mut c, &["ADDJOB", "big", "x", "0", "TTL", "315360000"]);
    let big = match r {
        Ok(Value::BulkString(b)) => String::from_utf8(b).unwrap(),
        Ok(Value::SimpleString(s)) => s,
        other => panic!("{other:?}"),
    };
    let shown = format!("{:?}", resp::cmd(&mut c, &["SHOW", &big]));
    assert!(
        shown.contains("int(31536000") || shown.contains("int(31535999"),
        "ttl shown about ten years: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_values_at_their_extremes_over_quic() {
    let node = TestNode::start(&[]);
    let client = node.client().await;
    type Set = fn(&mut AddJob);
    let refused: &[(&str, Set)] = &[
        ("ttl u64::MAX", |a| a.ttl_secs = Some(u64::MAX)),
        ("ttl i64::MAX", |a| a.ttl_secs = Some(i64::MAX as u64)),
        ("ttl 0", |a| a.ttl_secs = Some(0)),
        ("retry u64::MAX", |a| a.retry_secs = Some(u64::MAX)),
        ("delay u64::MAX", |a| a.delay_secs = Some(u64::MAX)),
        ("timeout u64::MAX", |a| a.timeout_ms = u64::MAX),
        ("replicate u32::MAX", |a| a.replicate = Some(u32::MAX)),
        ("replicate 0", |a| a.replicate = Some(0)),
        ("priority u8::MAX", |a| a.priority = u8::MAX),
        ("fuel u64::MAX", |a| a.limits.fuel = Some(u64::MAX)),
        ("memory u64::MAX", |a| {
            a.limits.memory_bytes = Some(u64::MAX)
        }),
        ("deadline u64::MAX", |a| {
            a.limits.deadline_ms = Some(u64::MAX)
        }),
        ("fuel 0", |a| a.limits.fuel = Some(0)),
    ];
    for (what, set) in refused {
        let mut a = AddJob::new("q", b"x".to_vec());
        set(&mut a);
        let r = client.add_job(a).await;
        let e = r.expect_err(what);
        assert!(format!("{e}").len() > 10, "{what}: a clear error: {e}");
    }
    // The add-and-wait form with the longest wait there is.
    let r = client.run(AddJob::new("q", b"x".to_vec()), u64::MAX).await;
    assert!(r.is_err(), "run with wait u64::MAX: {r:?}");
    let mut a = AddJob::new("q", b"x".to_vec());
    a.maxlen = Some(u64::MAX);
    a.retry_secs = Some(0);
    let id = client.add_job(a).await.expect("MAXLEN u64::MAX, RETRY 0");
    let r = client.wait(id, u64::MAX).await;
    assert!(r.is_err(), "wait u64::MAX: {r:?}");
    assert!(client.wait(id, 0).await.expect("wait 0").is_none());
    let s = client.show(id).await.expect("alive");
    assert!(s.ttl > 0);
}
