//! Against a real Qdrant server (VECTORGATE_TEST_QDRANT_URL, its gRPC URL): the proxy
//! reaches Qdrant through a local forwarder that the test switches off and on, and
//! shows searches falling back to exact scans while Qdrant is away and returning to
//! the index, with every write made meanwhile indexed, once it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::{TcpListener, TcpStream};

use super::search::{K, dataset, gaussian, insert, load, oracle};
use super::{Server, qdrant};

/// A TCP forwarder to `upstream`; while `up` is false it refuses (closes) connections
/// and cuts the ones it carries.
async fn forwarder(upstream: String, up: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let live: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let watcher = {
            let (up, live) = (up.clone(), live.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if !up.load(Ordering::SeqCst) {
                        for h in live.lock().drain(..) {
                            h.abort();
                        }
                    }
                }
            })
        };
        while let Ok((mut inbound, _)) = listener.accept().await {
            if !up.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            let upstream = upstream.clone();
            live.lock().push(tokio::spawn(async move {
                if let Ok(mut out) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            }));
        }
        watcher.abort();
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_return_to_qdrant_when_it_is_back() {
    let Some(url) = qdrant() else {
        eprintln!(
            "skipped: VECTORGATE_TEST_QDRANT_URL is not set (no Qdrant server to test against)"
        );
        return;
    };
    let host = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let up = Arc::new(AtomicBool::new(true));
    let port = forwarder(host, up.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let proxied = format!("http://127.0.0.1:{port}");
    let prefix = format!("{}_", super::keyspace_for(&data));
    let server = Server::start_on(
        &data,
        &[
            "--qdrant",
            &proxied,
            "--qdrant-collection-prefix",
            &prefix,
            "--qdrant-timeout-ms",
            "500",
        ],
    );
    let (client, notices) = server.client_with_notices().await;
    let mut rng = StdRng::seed_from_u64(77);
    let (docs, centers) = dataset(&mut rng);
    let docs: Vec<_> = docs.into_iter().take(1000).collect();
    load(&client, "flaky", "cosine", &docs[..800]).await;
    assert!(notices.lock().expect("n").is_empty(), "Qdrant is up");
    // Qdrant goes away: searches answer exactly with a NOTICE, writes are acknowledged.
    up.store(false, Ordering::SeqCst);
    insert(&client, "flaky", &docs[800..]).await;
    let q: Vec<f32> = centers[0]
        .iter()
        .map(|x| x + 0.3 * gaussian(&mut rng))
        .collect();
    let oracle = |docs: &[super::search::Doc], q: &[f32]| oracle(docs, q, |_| true, "cosine");
    let sql = format!("SELECT id FROM vector_search('flaky', $1, {K}) ORDER BY distance");
    let got: Vec<i64> = client
        .query(&sql, &[&q])
        .await
        .expect("search while away")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, oracle(&docs, &q));
    assert!(
        notices
            .lock()
            .expect("n")
            .iter()
            .any(|n| n.contains("exact scan"))
    );
    // Qdrant is back: within a few probes searches use the index again, and it holds
    // the rows written while it was away.
    up.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        notices.lock().expect("n").clear();
        client.query(&sql, &[&q]).await.expect("search");
        if notices.lock().expect("n").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "searches never returned to Qdrant"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client
        .batch_execute("SET vectorgate.exact = on")
        .await
        .expect("set");
    for c in centers.iter().take(5) {
        let q: Vec<f32> = c.iter().map(|x| x + 0.3 * gaussian(&mut rng)).collect();
        let got: Vec<i64> = client
            .query(&sql, &[&q])
            .await
            .expect("search")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            got,
            oracle(&docs, &q),
            "Qdrant holds every row after recovery"
        );
    }
}
