//! The storage nozzle's log table: log rows from the Firehose reach hourly Parquet parts,
//! SQL sees parts and memory together, and the rows outlive a restart.

use std::time::Duration;

use hydrant::doppler;
use hydrant_proto::envelope;
use hydrant_proto::ingress::{Config as IngressConfig, IngressClient};
use serde_json::Value;

use super::storage::TestStorage;
use crate::guard::Scratch;
use crate::{TestDoppler, eventually_within};

async fn sql(storage: &TestStorage, statement: &str) -> Value {
    hydrant_runtime::https::plain_client()
        .post(format!("{}/api/v1/sql", storage.url))
        .body(statement.to_owned())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rows_are_written_to_parquet_and_survive_a_restart() {
    let d = TestDoppler::start(doppler::Config::default()).await;
    let dir = Scratch::new("storage-logs");
    let storage = TestStorage::start(&d, dir.to_path_buf()).await;
    let client = IngressClient::start(IngressConfig::new(vec![d.grpc.to_string()])).unwrap();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    for i in 0..300i64 {
        let mut e = envelope::log(format!("app-{}", i % 3), format!("line {i}"), i % 10 == 0);
        e.instance_id = "0".into();
        e.tags.insert("source_type".into(), "APP/PROC/WEB".into());
        // A third of the lines are three hours old: a finished hour, merged on its own.
        e.timestamp = if i % 3 == 0 {
            now - 3 * 3_600_000_000_000
        } else {
            now
        } + i;
        client.send_envelope(&e);
    }
    eventually_within(
        "log rows reach Parquet",
        Duration::from_secs(20),
        || async {
            crate::metric(storage.http, "hydrant_storage_log_rows_written_total", &[]).await
                >= 300.0
        },
    )
    .await;
    assert!(crate::metric(storage.http, "hydrant_storage_log_files", &[]).await >= 2.0);
    let v = sql(&storage, "SELECT count(*) AS n FROM logs").await;
    assert_eq!(v[0]["n"], 300, "{v}");
    let v = sql(
        &storage,
        "SELECT source_id, stream, count(*) AS n FROM logs GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    assert_eq!(v[0]["source_id"], "app-0", "{v}");
    assert_eq!(v[0]["stream"], "ERR", "every 10th line is ERR: {v}");
    assert_eq!(v[0]["n"], 10, "{v}");
    storage.stop().await;
    drop(client);

    let storage = TestStorage::start(&d, dir.to_path_buf()).await;
    let v = sql(
        &storage,
        "SELECT count(*) AS n, count(DISTINCT source_id) AS s FROM logs",
    )
    .await;
    assert_eq!(
        (v[0]["n"].as_u64(), v[0]["s"].as_u64()),
        (Some(300), Some(3)),
        "{v}"
    );
    let v = sql(
        &storage,
        "SELECT payload FROM logs WHERE source_id = 'app-1' ORDER BY ts LIMIT 1",
    )
    .await;
    assert_eq!(v[0]["payload"], "line 1", "{v}");
    assert!(dir.join("logs").is_dir());
    storage.stop().await;
    d.stop().await;
}
