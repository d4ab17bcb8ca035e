//! Who may read the Firehose over the doppler's `/v2/read`: three SSE clients joining the
//! storage nozzle's shard group once took 75 % of its data. Only tokens that read
//! everything may read the whole Firehose or join a shard group; a scoped token reads its
//! own sources.

use std::time::Duration;

use hydrant::doppler;
use hydrant_runtime::access::{Access, Tokens};

use crate::TestDoppler;

const TOKENS: &str =
    "tokens:\n  - token: reader\n    read_all: true\n  - token: team\n    sources: [s1]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_read_their_sources_and_never_a_shard_group() {
    let config = doppler::Config {
        access: Access::tokens(Tokens::parse(TOKENS, std::path::Path::new("t.yml")).unwrap()),
        ..doppler::Config::default()
    };
    let d = TestDoppler::start(config).await;
    let http = hydrant_runtime::https::plain_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for (token, query, status) in [
        (None, "log", 401),
        (Some("nope"), "log", 401),
        (Some("team"), "log", 404),
        (Some("team"), "source_id=s2&log", 404),
        (Some("team"), "source_id=s1&log&shard_id=storage", 404),
        (Some("team"), "source_id=s1&log", 200),
        (Some("reader"), "log&shard_id=storage", 200),
        (Some("reader"), "log", 200),
    ] {
        let mut req = http.get(format!("http://{}/v2/read?{query}", d.http));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        // The status arrives with the headers; an accepted stream is dropped unread.
        let resp = req.send().await.expect("an answer");
        assert_eq!(resp.status().as_u16(), status, "{token:?} {query}");
    }
    for (token, status) in [(None, 401), (Some("team"), 403), (Some("reader"), 200)] {
        let mut req = http.get(format!("http://{}/metrics", d.http));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "/metrics with {token:?}");
    }
    d.stop().await;
}
