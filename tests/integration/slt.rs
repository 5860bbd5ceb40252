//! SQL behaviour as golden files: every `sql/*.slt` file runs over the real wire, once
//! through the simple and once through the extended protocol, each on a fresh server.

use std::path::PathBuf;

use sqllogictest_engines::postgres::{PostgresExtended, PostgresSimple};

use super::Server;

/// The `sql/*.slt` files; `VECTORGATE_TEST_SLT=name,...` runs only the files whose names
/// contain one of these (to work on one file).
fn slt_files() -> Vec<PathBuf> {
    let dir = super::checkout().join("sql");
    let only = std::env::var("VECTORGATE_TEST_SLT").unwrap_or_default();
    let wanted = |p: &PathBuf| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        only.is_empty()
            || only
                .split(',')
                .any(|w| name.as_deref().is_some_and(|n| n.contains(w)))
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sql/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(wanted)
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in sql/");
    files
}

/// A failed record with the server's whole error (the client's own text of a failed
/// query is only "db error").
fn explain(e: &sqllogictest::TestError) -> String {
    match e.kind() {
        sqllogictest::TestErrorKind::Fail { err, .. } => format!("{e}\n{err:?}"),
        _ => e.to_string(),
    }
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
            .unwrap_or_else(|e| panic!("{} (simple protocol):\n{}", file.display(), explain(&e)));
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
            .unwrap_or_else(|e| panic!("{} (extended protocol):\n{}", file.display(), explain(&e)));
    }
}

/// The files marked `# oracle: postgres` on their first line, run against a real
/// PostgreSQL (`VECTORGATE_TEST_POSTGRES`, a connection URL of a user that may create
/// databases), each in a database of its own made for the run, in both protocols: the
/// expectations in them are Postgres' own behaviour, not only vectorgate's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files_marked_for_it_pass_on_postgres() {
    let Ok(url) = std::env::var("VECTORGATE_TEST_POSTGRES") else {
        eprintln!(
            "skipped: VECTORGATE_TEST_POSTGRES is not set (a PostgreSQL to run the oracle files on)"
        );
        return;
    };
    let base: tokio_postgres::Config = url.parse().expect("VECTORGATE_TEST_POSTGRES");
    let (admin, conn) = base
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    let marked: Vec<PathBuf> = slt_files()
        .into_iter()
        .filter(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| t.lines().next() == Some("# oracle: postgres"))
        })
        .collect();
    assert!(
        !marked.is_empty(),
        "no sql/*.slt file is marked # oracle: postgres"
    );
    for file in marked {
        for extended in [false, true] {
            let db = format!(
                "vg_oracle_{}_{}",
                file.file_stem().and_then(|s| s.to_str()).unwrap_or("f"),
                if extended { "x" } else { "s" }
            );
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
                .await
                .expect("drop database");
            admin
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .await
                .expect("create database");
            let mut config = base.clone();
            config.dbname(&db);
            let result = if extended {
                let mut runner = sqllogictest::Runner::new(move || {
                    let config = config.clone();
                    async move { PostgresExtended::connect(config).await }
                });
                runner.add_label("postgres");
                runner.run_file_async(&file).await
            } else {
                let mut runner = sqllogictest::Runner::new(move || {
                    let config = config.clone();
                    async move { PostgresSimple::connect(config).await }
                });
                runner.add_label("postgres");
                runner.run_file_async(&file).await
            };
            result.unwrap_or_else(|e| {
                panic!(
                    "{} on PostgreSQL (extended: {extended}):\n{e}",
                    file.display()
                )
            });
        }
    }
}
