//! Startup and catalog queries of clients that cannot run here, replayed with their own
//! SQL text (`tests/integration/replay/`), and checked the way the client reads the answer.

use std::collections::HashSet;

use tokio_postgres::SimpleQueryMessage;

use super::Server;

/// Npgsql loads every type in one batch before the first query; a failure, an unknown
/// `typtype`, or an array, range, multirange or domain whose element was not loaded
/// before it would break or cripple every .NET client (Tableau, Power BI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npgsql_type_loading_batch() {
    let server = Server::start();
    let client = server.client().await;
    let batch = include_str!("replay/npgsql_load_types.sql");
    let messages = client
        .simple_query(batch)
        .await
        .expect("Npgsql's batch runs");
    // Four statements, four results.
    let completes = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completes, 4);
    let rows: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    let version = rows[0].get(0).expect("version");
    assert!(version.starts_with("PostgreSQL 16"), "{version}");
    // The loader's own reading of the type rows.
    let mut known: HashSet<u32> = HashSet::new();
    let mut vector = None;
    let mut vector_array = None;
    for r in rows.iter().skip(1).filter(|r| r.len() == 6) {
        let oid: u32 = r.get(1).expect("oid").parse().expect("numeric oid");
        let name = r.get(2).expect("typname");
        let typtype = r.get(3).expect("typtype");
        assert!(
            r.get(0).is_some_and(|n| !n.is_empty()),
            "namespace of {name}"
        );
        assert!(matches!(r.get(4), Some("t" | "f")), "typnotnull of {name}");
        assert_ne!(oid, 0, "{name}");
        match typtype {
            "b" | "e" | "c" | "p" => {}
            "a" | "r" | "m" | "d" => {
                let elem: u32 = r
                    .get(5)
                    .unwrap_or_else(|| panic!("{name} ({typtype}) has no element type"))
                    .parse()
                    .expect("numeric element oid");
                assert!(
                    known.contains(&elem),
                    "{name} refers to {elem}, not loaded before it"
                );
            }
            other => panic!("unknown typtype {other} for {name}"),
        }
        known.insert(oid);
        if name == "vector" {
            vector = Some((r.get(0).map(str::to_string), typtype.to_string()));
        }
        if name == "_vector" {
            vector_array = r.get(5).map(str::to_string);
        }
    }
    assert!(known.len() > 100, "{} types", known.len());
    assert_eq!(vector, Some((Some("public".into()), "b".into())));
    assert_eq!(vector_array.as_deref(), Some("16385"));
}
