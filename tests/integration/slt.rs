//! SQL behaviour as golden files: every `sql/*.slt` file runs over the real wire, once
//! through the simple and once through the extended protocol, each on a fresh server.

use std::path::PathBuf;

use sqllogictest_engines::postgres::{PostgresExtended, PostgresSimple};

use super::Server;

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sql/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in sql/");
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_simple_protocol() {
    for file in slt_files() {
        let server = Server::start();
        let config = server.config();
        let mut runner = sqllogictest::Runner::new(move || {
            let config = config.clone();
            async move { PostgresSimple::connect(config).await }
        });
        runner.add_label("simple");
        runner
            .run_file_async(&file)
            .await
            .unwrap_or_else(|e| panic!("{} (simple protocol):\n{e}", file.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_extended_protocol() {
    for file in slt_files() {
        let server = Server::start();
        let config = server.config();
        let mut runner = sqllogictest::Runner::new(move || {
            let config = config.clone();
            async move { PostgresExtended::connect(config).await }
        });
        runner.add_label("extended");
        runner
            .run_file_async(&file)
            .await
            .unwrap_or_else(|e| panic!("{} (extended protocol):\n{e}", file.display()));
    }
}
