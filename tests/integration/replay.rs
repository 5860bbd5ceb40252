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

/// A table as BI tools find it: key, text, float, vector.
async fn bi_table(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE bi_metrics (id bigint PRIMARY KEY, host text, value double precision, \
             embedding vector(2))",
        )
        .await
        .expect("create");
}

async fn public_oid(client: &tokio_postgres::Client) -> i64 {
    let ns: u32 = client
        .query_one(
            "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .expect("namespace")
        .get(0);
    i64::from(ns)
}

/// DBeaver's navigator, opening a schema and a table: its own catalog queries (DBeaver's
/// PostgreSQL plugin, `PostgreSchema.java`: the table, column, constraint and index
/// caches), sent as pgjdbc sends them (`?` as `$1`, bound with `setLong`: int8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbeaver_navigator_queries() {
    let server = Server::start();
    let client = server.client().await;
    bi_table(&client).await;
    let ns = public_oid(&client).await;
    let int8 = [tokio_postgres::types::Type::INT8];

    // Tables of the schema: `c.oid, c.*` names both columns `oid`, as Postgres does.
    let tables = client
        .prepare_typed(
            "SELECT c.oid,c.*,d.description,(select array_agg(i.inhparent) from pg_catalog.pg_inherits i where i.inhrelid = c.oid) parents\n\
             FROM pg_catalog.pg_class c\n\
             LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0\n\
             WHERE c.relnamespace=$1 AND c.relkind not in ('i','c')",
            &int8,
        )
        .await
        .expect("tables prepare");
    let names: Vec<&str> = tables.columns().iter().map(|c| c.name()).collect();
    assert_eq!(&names[..2], ["oid", "oid"]);
    let rows = client.query(&tables, &[&ns]).await.expect("tables");
    let found: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get("relname"), r.get("relkind")))
        .collect();
    assert!(
        found.contains(&("bi_metrics".into(), "r".into())),
        "{found:?}"
    );
    let table_oid: u32 = rows
        .iter()
        .find(|r| r.get::<_, String>("relname") == "bi_metrics")
        .expect("the table")
        .get(0);

    // Its columns, in order, with their types.
    let columns = client
        .prepare_typed(
            "SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description\n\
             FROM pg_catalog.pg_attribute a\n\
             INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)\n\
             LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)\n\
             LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)\n\
             WHERE NOT a.attisdropped AND c.relnamespace=$1 AND c.relkind not in ('i','c')  ORDER BY a.attnum",
            &int8,
        )
        .await
        .expect("columns prepare");
    let rows = client.query(&columns, &[&ns]).await.expect("columns");
    let cols: Vec<(String, u32, i32, bool)> = rows
        .iter()
        .filter(|r| r.get::<_, String>("relname") == "bi_metrics")
        .map(|r| {
            (
                r.get("attname"),
                r.get("atttypid"),
                r.get("atttypmod"),
                r.get("attnotnull"),
            )
        })
        .collect();
    assert_eq!(
        cols,
        [
            ("id".into(), 20, -1, true),
            ("host".into(), 25, -1, false),
            ("value".into(), 701, -1, false),
            ("embedding".into(), 16385, 2, false),
        ]
    );

    // The primary key, its columns read as the int2[] DBeaver takes with getArray.
    let constraints = client
        .prepare_typed(
            "SELECT c.oid,c.*,t.relname as tabrelname,rt.relnamespace as refnamespace\n\
             FROM pg_catalog.pg_constraint c\n\
             INNER JOIN pg_catalog.pg_class t ON t.oid=c.conrelid\n\
             LEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid=c.confrelid\n\
             WHERE c.conrelid=$1\n\
             ORDER BY c.oid",
            &int8,
        )
        .await
        .expect("constraints prepare");
    let rows = client
        .query(&constraints, &[&i64::from(table_oid)])
        .await
        .expect("constraints");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>("conname"), "bi_metrics_pkey");
    assert_eq!(rows[0].get::<_, String>("contype"), "p");
    assert_eq!(rows[0].get::<_, Vec<i16>>("conkey"), [1]);
    assert_eq!(rows[0].get::<_, String>("tabrelname"), "bi_metrics");

    // Its index, with no expression.
    let indexes = client
        .prepare_typed(
            "SELECT i.*,i.indkey as keys,c.relname,c.relnamespace,c.relam,tc.relname as tabrelname,dsc.description,pg_catalog.pg_get_expr(i.indexprs, i.indrelid, true) as expr\n\
             FROM pg_catalog.pg_index i\n\
             INNER JOIN pg_catalog.pg_class c ON c.oid=i.indexrelid\n\
             INNER JOIN pg_catalog.pg_class tc ON tc.oid=i.indrelid\n\
             LEFT OUTER JOIN pg_catalog.pg_description dsc ON i.indexrelid=dsc.objoid\n\
             WHERE  i.indrelid=$1 ORDER BY c.relname",
            &int8,
        )
        .await
        .expect("indexes prepare");
    let rows = client
        .query(&indexes, &[&i64::from(table_oid)])
        .await
        .expect("indexes");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>("relname"), "bi_metrics_pkey");
    assert!(rows[0].get::<_, bool>("indisprimary"));
    assert_eq!(rows[0].get::<_, String>("keys"), "1");
    assert_eq!(rows[0].get::<_, Option<String>>("expr"), None);
}

/// Metabase's sync of a PostgreSQL database: its connection set-up, then the table,
/// field, foreign-key and index queries of its PostgreSQL driver (Metabase's
/// `driver/postgres.clj`, as its SQL builder renders them), each checked as the sync
/// reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metabase_sync_queries() {
    let server = Server::start();
    let client = server.client().await;
    bi_table(&client).await;
    client
        .batch_execute(
            "SET extra_float_digits = 2; \
             SET application_name = 'Metabase'; \
             SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
        )
        .await
        .expect("connection set-up");
    let isolation: String = client
        .query_one("SHOW TRANSACTION ISOLATION LEVEL", &[])
        .await
        .expect("isolation")
        .get(0);
    assert_eq!(isolation, "read committed");

    let tables = client
        .query(
            r#"SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", CASE "c"."relkind" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "type", "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count" FROM "pg_catalog"."pg_class" AS "c" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = 0) AND ("d"."classoid" = 'pg_class'::regclass) LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname") WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ '^pg_') AND ("n"."nspname" <> 'information_schema') AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND ("n"."nspname" IN ('public')) ORDER BY "type" ASC, "schema" ASC, "name" ASC"#,
            &[],
        )
        .await
        .expect("tables");
    let found: Vec<(String, String, String)> = tables
        .iter()
        .map(|r| (r.get("schema"), r.get("name"), r.get("type")))
        .collect();
    assert_eq!(
        found,
        [("public".into(), "bi_metrics".into(), "TABLE".into())]
    );

    let fields = client
        .query(
            r#"SELECT "c"."column_name" AS "name", CASE WHEN "c"."udt_schema" IN ('public', 'pg_catalog') THEN FORMAT('%s', "c"."udt_name") ELSE FORMAT('"%s"."%s"', "c"."udt_schema", "c"."udt_name") END AS "database-type", "c"."ordinal_position" - 1 AS "database-position", "c"."table_schema" AS "table-schema", "c"."table_name" AS "table-name", "pk"."column_name" IS NOT NULL AS "pk?", COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST("c"."table_schema" AS TEXT), CAST("c"."table_name" AS TEXT)) AS REGCLASS) AS OID), "c"."ordinal_position") AS "field-comment", (("column_default" IS NULL) OR (LOWER("column_default") = 'null')) AND ("is_nullable" = 'NO') AND NOT ((("column_default" IS NOT NULL) AND ("column_default" LIKE '%nextval(%')) OR ("is_identity" <> 'NO')) AS "database-required", (("column_default" IS NOT NULL) AND ("column_default" LIKE '%nextval(%')) OR ("is_identity" <> 'NO') AS "database-is-auto-increment" FROM "information_schema"."columns" AS "c" LEFT JOIN (SELECT "tc"."table_schema", "tc"."table_name", "kc"."column_name" FROM "information_schema"."table_constraints" AS "tc" INNER JOIN "information_schema"."key_column_usage" AS "kc" ON ("tc"."constraint_name" = "kc"."constraint_name") AND ("tc"."table_schema" = "kc"."table_schema") AND ("tc"."table_name" = "kc"."table_name") WHERE "tc"."constraint_type" = 'PRIMARY KEY') AS "pk" ON ("c"."table_schema" = "pk"."table_schema") AND ("c"."table_name" = "pk"."table_name") AND ("c"."column_name" = "pk"."column_name") WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' AND ("c"."table_schema" IN ('public')) AND ("c"."table_name" IN ('bi_metrics')) UNION ALL SELECT "pa"."attname" AS "name", CASE WHEN "ptn"."nspname" IN ('public', 'pg_catalog') THEN FORMAT('%s', "pt"."typname") ELSE FORMAT('"%s"."%s"', "ptn"."nspname", "pt"."typname") END AS "database-type", "pa"."attnum" - 1 AS "database-position", "pn"."nspname" AS "table-schema", "pc"."relname" AS "table-name", FALSE AS "pk?", NULL AS "field-comment", FALSE AS "database-required", FALSE AS "database-is-auto-increment" FROM "pg_catalog"."pg_class" AS "pc" INNER JOIN "pg_catalog"."pg_namespace" AS "pn" ON "pn"."oid" = "pc"."relnamespace" INNER JOIN "pg_catalog"."pg_attribute" AS "pa" ON "pa"."attrelid" = "pc"."oid" INNER JOIN "pg_catalog"."pg_type" AS "pt" ON "pt"."oid" = "pa"."atttypid" INNER JOIN "pg_catalog"."pg_namespace" AS "ptn" ON "ptn"."oid" = "pt"."typnamespace" WHERE ("pc"."relkind" = 'm') AND ("pa"."attnum" >= 1) AND ("pn"."nspname" IN ('public')) AND ("pc"."relname" IN ('bi_metrics')) ORDER BY "table-schema" ASC, "table-name" ASC, "database-position" ASC"#,
            &[],
        )
        .await
        .expect("fields");
    let got: Vec<(String, String, i64, bool, bool, bool)> = fields
        .iter()
        .map(|r| {
            (
                r.get("name"),
                r.get("database-type"),
                r.get::<_, i64>("database-position"),
                r.get("pk?"),
                r.get("database-required"),
                r.get("database-is-auto-increment"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("id".into(), "int8".into(), 0, true, true, false),
            ("host".into(), "text".into(), 1, false, false, false),
            ("value".into(), "float8".into(), 2, false, false, false),
            ("embedding".into(), "vector".into(), 3, false, false, false),
        ]
    );

    let fks = client
        .query(
            r#"SELECT "fk_ns"."nspname" AS "fk-table-schema", "fk_table"."relname" AS "fk-table-name", "fk_column"."attname" AS "fk-column-name", "pk_ns"."nspname" AS "pk-table-schema", "pk_table"."relname" AS "pk-table-name", "pk_column"."attname" AS "pk-column-name" FROM "pg_constraint" AS "c" INNER JOIN "pg_class" AS "fk_table" ON "c"."conrelid" = "fk_table"."oid" INNER JOIN "pg_namespace" AS "fk_ns" ON "c"."connamespace" = "fk_ns"."oid" INNER JOIN "pg_attribute" AS "fk_column" ON "c"."conrelid" = "fk_column"."attrelid" INNER JOIN "pg_class" AS "pk_table" ON "c"."confrelid" = "pk_table"."oid" INNER JOIN "pg_namespace" AS "pk_ns" ON "pk_table"."relnamespace" = "pk_ns"."oid" INNER JOIN "pg_attribute" AS "pk_column" ON "c"."confrelid" = "pk_column"."attrelid" WHERE (fk_ns.nspname !~ '^information_schema|catalog_history|pg_') AND ("c"."contype" = 'f'::char) AND ("fk_column"."attnum" = ANY(c.conkey)) AND ("pk_column"."attnum" = ANY(c.confkey)) AND ("fk_table"."relname" IN ('bi_metrics')) AND ("fk_ns"."nspname" IN ('public')) ORDER BY "fk-table-schema" ASC, "fk-table-name" ASC"#,
            &[],
        )
        .await
        .expect("foreign keys");
    assert!(fks.is_empty(), "vectorgate has no foreign keys");

    let indexes = client
        .query(
            r#"SELECT "tmp"."table-schema", "tmp"."table-name", TRIM(BOTH '"' FROM PG_CATALOG.PG_GET_INDEXDEF("tmp"."ci_oid", "tmp"."pos", FALSE)) AS "field-name" FROM (SELECT "n"."nspname" AS "table-schema", "ct"."relname" AS "table-name", "ci"."oid" AS "ci_oid", (INFORMATION_SCHEMA._PG_EXPANDARRAY("i"."indkey")).n AS "pos" FROM "pg_catalog"."pg_class" AS "ct" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "ct"."relnamespace" = "n"."oid" INNER JOIN "pg_catalog"."pg_index" AS "i" ON "ct"."oid" = "i"."indrelid" INNER JOIN "pg_catalog"."pg_class" AS "ci" ON "ci"."oid" = "i"."indexrelid" WHERE (PG_CATALOG.PG_GET_EXPR("i"."indpred", "i"."indrelid") IS NULL) AND (n.nspname !~ '^information_schema|catalog_history|pg_') AND ("n"."nspname" IN ('public')) AND ("ct"."relname" IN ('bi_metrics'))) AS "tmp" WHERE "tmp"."pos" = 1"#,
            &[],
        )
        .await
        .expect("indexes");
    let got: Vec<(String, String, String)> = indexes
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, [("public".into(), "bi_metrics".into(), "id".into())]);

    let enums = client
        .query(
            "SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
             WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)",
            &[],
        )
        .await
        .expect("enum types");
    assert!(enums.is_empty());
}

/// Catalog columns are announced with their Postgres types (`pg_constraint.conkey` is
/// `int2[]`, asyncpg's `attrtypoids` is `oid[]`) because they come from the catalog, not
/// because of their names: a user's own columns of those names are what they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_column_types_follow_the_catalog_not_the_name() {
    use tokio_postgres::types::Type;
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE named (id bigint PRIMARY KEY, conkey text, embedding vector(2));
             INSERT INTO named VALUES (1, '{1,2}', '[1,0]');",
        )
        .await
        .expect("create");
    let types = |sql: &'static str| {
        let client = &client;
        async move {
            let stmt = client.prepare(sql).await.expect("prepare");
            let rows = client.query(&stmt, &[]).await.expect("query");
            (
                stmt.columns()
                    .iter()
                    .map(|c| c.type_().clone())
                    .collect::<Vec<Type>>(),
                rows.len(),
            )
        }
    };
    let (user, n) = types("SELECT conkey, conkey AS confkey FROM named").await;
    assert_eq!((user, n), (vec![Type::TEXT, Type::TEXT], 1));
    let (agg, _) = types("SELECT array_agg(id::int) AS attrtypoids FROM named").await;
    assert_eq!(agg, vec![Type::INT4_ARRAY]);
    let (cat, n) =
        types("SELECT conkey FROM pg_catalog.pg_constraint WHERE conrelid = 'named'::regclass")
            .await;
    assert_eq!((cat, n), (vec![Type::INT2_ARRAY], 1));
    // Read as pgjdbc and DBeaver read it: an int2[] of the key's column numbers.
    let keys: Vec<i16> = client
        .query_one(
            "SELECT conkey FROM pg_catalog.pg_constraint WHERE conrelid = 'named'::regclass",
            &[],
        )
        .await
        .expect("conkey")
        .get(0);
    assert_eq!(keys, vec![1]);
}
