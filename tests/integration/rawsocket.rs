//! Malformed, truncated, oversized and out-of-order protocol messages on raw sockets:
//! each such connection gets an error or is closed, and everyone else is served.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Server;

fn startup_packet() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes());
    for (k, v) in [("user", "raw"), ("database", "vectorgate")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// The backend messages as (tag, body), read until `until` is seen, the connection
/// closes, or nothing arrives for a while.
async fn read_until(s: &mut TcpStream, until: u8) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut out = Vec::new();
    loop {
        let mut head = [0u8; 5];
        match tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return (out, true),
            Err(_) => return (out, false),
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        if s.read_exact(&mut body).await.is_err() {
            return (out, true);
        }
        let tag = head[0];
        out.push((tag, body));
        if tag == until {
            return (out, false);
        }
    }
}

/// Did the server close the connection (EOF or reset) within a few seconds?
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn sqlstate_of(body: &[u8]) -> Option<String> {
    body.split(|&b| b == 0)
        .find(|f| f.first() == Some(&b'C'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
}

async fn ready(server: &Server) -> TcpStream {
    let mut s = TcpStream::connect(&server.addr).await.expect("connect");
    s.write_all(&startup_packet()).await.expect("startup");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'), "startup completes");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_protocol_messages_end_only_their_own_connection() {
    let server = Server::start();
    let bystander = server.client().await;
    bystander
        .batch_execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, embedding vector(2)); \
             INSERT INTO t VALUES (1, '[1,0]'), (2, '[0,1]')",
        )
        .await
        .expect("setup");

    // An unknown message type after startup: FATAL 08P01, closed.
    let mut s = ready(&server).await;
    s.write_all(&message(b'@', b"hello")).await.expect("write");
    let (msgs, _) = read_until(&mut s, b'E').await;
    let err = msgs.iter().find(|m| m.0 == b'E').expect("an error");
    assert_eq!(sqlstate_of(&err.1).as_deref(), Some("08P01"));
    assert!(closed(&mut s).await, "closed after an invalid message");

    // A message larger than the limit is refused from its header, before its body.
    let mut s = ready(&server).await;
    let mut head = vec![b'Q'];
    head.extend_from_slice(&(0x7fff_fff0u32).to_be_bytes());
    s.write_all(&head).await.expect("write");
    let (msgs, _) = read_until(&mut s, b'E').await;
    let err = msgs.iter().find(|m| m.0 == b'E').expect("an error");
    assert_eq!(sqlstate_of(&err.1).as_deref(), Some("08P01"));
    assert!(String::from_utf8_lossy(&err.1).contains("larger than the limit"));
    assert!(closed(&mut s).await);

    // A truncated message, then the client goes away: nothing to answer.
    let mut s = ready(&server).await;
    let mut q = query("SELECT 1");
    q.truncate(7);
    s.write_all(&q).await.expect("write");
    s.shutdown().await.expect("shutdown");
    assert!(closed(&mut s).await);

    // A Query without its terminating NUL: 08P01, closed.
    let mut s = ready(&server).await;
    s.write_all(&message(b'Q', b"SELECT 1"))
        .await
        .expect("write");
    let (msgs, _) = read_until(&mut s, b'E').await;
    let err = msgs.iter().find(|m| m.0 == b'E').expect("an error");
    assert_eq!(sqlstate_of(&err.1).as_deref(), Some("08P01"));
    assert!(closed(&mut s).await);

    // A length field shorter than the header itself.
    let mut s = ready(&server).await;
    s.write_all(&[b'Q', 0, 0, 0, 2]).await.expect("write");
    assert!(closed(&mut s).await);

    // Garbage instead of a startup packet, and an absurd startup length.
    for junk in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0, 0, 0, 3],
        vec![0xff; 64],
    ] {
        let mut s = TcpStream::connect(&server.addr).await.expect("connect");
        s.write_all(&junk).await.expect("write");
        assert!(closed(&mut s).await, "junk {junk:?}");
    }

    // Out of order: Bind and Execute of things never parsed, Describe of a missing
    // portal: errors, then Sync recovers the session.
    let mut s = ready(&server).await;
    let mut bind = b"p1\0nosuch\0".to_vec();
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut batch = message(b'B', &bind);
    batch.extend(message(b'E', b"p1\0\0\0\0\0"));
    batch.extend(message(b'S', b""));
    s.write_all(&batch).await.expect("write");
    let (msgs, closed_now) = read_until(&mut s, b'Z').await;
    assert!(!closed_now);
    assert!(
        msgs.iter().any(|m| m.0 == b'E'),
        "an error for the unknown statement"
    );
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'));
    // The session still answers a well-formed query after all that.
    s.write_all(&query("SELECT 40 + 2")).await.expect("write");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    let row = msgs.iter().find(|m| m.0 == b'D').expect("a row");
    assert!(String::from_utf8_lossy(&row.1).contains("42"));

    // Many broken connections at once.
    let mut tasks = Vec::new();
    for i in 0..40u8 {
        let addr = server.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.expect("connect");
            let mut junk = startup_packet();
            junk.truncate(usize::from(i % 9));
            junk.extend(std::iter::repeat_n(i, usize::from(i)));
            let _ = s.write_all(&junk).await;
            let _ = s.shutdown().await;
            closed(&mut s).await
        }));
    }
    for t in tasks {
        assert!(t.await.expect("task"));
    }

    // Everyone else was served throughout.
    let rows = bystander
        .query("SELECT id FROM vector_search('t', '[1,0]', 1)", &[])
        .await
        .expect("bystander");
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    let fresh = server.client().await;
    let n: i64 = fresh
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("fresh")
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_message_size_closes_only_that_connection() {
    let server =
        Server::start_args(&["--max-message-size", "4096", "--max-query-length", "100000"]);
    let bystander = server.client().await;
    let mut s = ready(&server).await;
    let long = format!("SELECT '{}'", "x".repeat(10_000));
    s.write_all(&query(&long)).await.expect("write");
    let (msgs, _) = read_until(&mut s, b'E').await;
    let err = msgs.iter().find(|m| m.0 == b'E').expect("an error");
    assert_eq!(sqlstate_of(&err.1).as_deref(), Some("08P01"));
    assert!(String::from_utf8_lossy(&err.1).contains("limit of 4096 bytes"));
    assert!(closed(&mut s).await);
    // Under the limit is fine, in the same server.
    let short = format!("SELECT length('{}')", "x".repeat(3000));
    let n: i32 = bystander
        .query_one(&short, &[])
        .await
        .expect("short")
        .get(0);
    assert_eq!(n, 3000);
}

/// What drivers do before and around their statements: a GSSENCRequest and an
/// SSLRequest are refused with `N` on the same connection, which then starts up; an error
/// in the extended protocol skips the messages up to Sync (one ErrorResponse, then
/// ReadyForQuery); a parameter sent with type 0 is typed by the statement (Describe says
/// int4) and bound from text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_requests_error_recovery_and_untyped_parameters() {
    let server = Server::start();
    let mut s = TcpStream::connect(&server.addr).await.expect("connect");
    for code in [80877104u32, 80877103] {
        let mut request = 8u32.to_be_bytes().to_vec();
        request.extend_from_slice(&code.to_be_bytes());
        s.write_all(&request).await.expect("request");
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await.expect("answer");
        assert_eq!(&answer, b"N", "request {code} refused, connection open");
    }
    s.write_all(&startup_packet()).await.expect("startup");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    assert_eq!(
        msgs.last().map(|m| m.0),
        Some(b'Z'),
        "startup after refusals"
    );

    // Parse fails: Bind and Execute are skipped until Sync.
    let mut batch = message(b'P', b"\0SELECT nope FROM missing\0\0\0");
    batch.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
    batch.extend(message(b'E', b"\0\0\0\0\0"));
    batch.extend(message(b'S', b""));
    s.write_all(&batch).await.expect("batch");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    let tags: Vec<u8> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(tags, b"EZ", "one error, then ready");
    assert_eq!(sqlstate_of(&msgs[0].1).as_deref(), Some("42P01"));
    assert_eq!(msgs[1].1, b"I", "idle");

    // `$1` with type 0: Describe gives the statement's type, int4 (OID 23).
    let mut parse = b"s1\0SELECT $1::int + 1\0".to_vec();
    parse.extend_from_slice(&1u16.to_be_bytes());
    parse.extend_from_slice(&0u32.to_be_bytes());
    let mut batch = message(b'P', &parse);
    batch.extend(message(b'D', b"Ss1\0"));
    batch.extend(message(b'S', b""));
    s.write_all(&batch).await.expect("describe");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    let params = msgs
        .iter()
        .find(|m| m.0 == b't')
        .expect("ParameterDescription");
    assert_eq!(params.1, [0, 1, 0, 0, 0, 23]);
    let mut bind = b"\0s1\0".to_vec();
    bind.extend_from_slice(&0u16.to_be_bytes()); // parameters in text
    bind.extend_from_slice(&1u16.to_be_bytes());
    bind.extend_from_slice(&2u32.to_be_bytes());
    bind.extend_from_slice(b"41");
    bind.extend_from_slice(&0u16.to_be_bytes()); // results in text
    let mut batch = message(b'B', &bind);
    batch.extend(message(b'E', b"\0\0\0\0\0"));
    batch.extend(message(b'S', b""));
    s.write_all(&batch).await.expect("execute");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    let row = msgs.iter().find(|m| m.0 == b'D').expect("DataRow");
    assert_eq!(row.1, [0, 1, 0, 0, 0, 2, b'4', b'2']);
}

/// The status ReadyForQuery reports after a simple query, and the SQLSTATEs before it.
async fn status_after(s: &mut TcpStream, sql: &str) -> (u8, Vec<String>) {
    s.write_all(&query(sql)).await.expect("query");
    let (msgs, _) = read_until(s, b'Z').await;
    let last = msgs.last().expect("ReadyForQuery");
    assert_eq!(last.0, b'Z', "{sql}: ends with ReadyForQuery");
    let errors = msgs
        .iter()
        .filter(|m| m.0 == b'E')
        .filter_map(|m| sqlstate_of(&m.1))
        .collect();
    (last.1[0], errors)
}

/// ReadyForQuery says where a session stands as Postgres does: `T` inside a block, `E`
/// once a statement of it failed (until ROLLBACK or ROLLBACK TO SAVEPOINT), `I` after
/// it ends, also when COMMIT itself fails; in both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_for_query_reports_the_block_status() {
    let server = Server::start();
    let mut s = ready(&server).await;
    let setup = "CREATE TABLE st (id int PRIMARY KEY, e vector(2))";
    assert_eq!(status_after(&mut s, setup).await, (b'I', vec![]));
    assert_eq!(status_after(&mut s, "BEGIN").await, (b'T', vec![]));
    assert_eq!(
        status_after(&mut s, "SELECT 1/0").await,
        (b'E', vec!["22012".into()])
    );
    assert_eq!(
        status_after(&mut s, "SELECT 1").await,
        (b'E', vec!["25P02".into()])
    );
    assert_eq!(status_after(&mut s, "ROLLBACK").await, (b'I', vec![]));
    assert_eq!(
        status_after(&mut s, "BEGIN; SAVEPOINT a; SELECT * FROM missing").await,
        (b'E', vec!["42P01".into()])
    );
    assert_eq!(
        status_after(&mut s, "ROLLBACK TO SAVEPOINT a").await,
        (b'T', vec![])
    );
    assert_eq!(
        status_after(&mut s, "INSERT INTO st VALUES (7, '[1,1]')").await,
        (b'T', vec![])
    );
    // Another session takes key 7 first: this COMMIT fails, and no block is left.
    let other = server.client().await;
    other
        .batch_execute("INSERT INTO st VALUES (7, '[2,2]')")
        .await
        .expect("other insert");
    assert_eq!(
        status_after(&mut s, "COMMIT").await,
        (b'I', vec!["23505".into()])
    );
    let v: String = other
        .query_one("SELECT e::text FROM st WHERE id = 7", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_default();
    assert!(
        v.is_empty() || v == "[2,2]",
        "the first committed row stays: {v}"
    );

    // Extended protocol: a failed Execute, then ROLLBACK TO SAVEPOINT at Sync.
    assert_eq!(
        status_after(&mut s, "BEGIN; SAVEPOINT b").await,
        (b'T', vec![])
    );
    let extended = |sql: &str| {
        let mut parse = vec![0u8];
        parse.extend_from_slice(sql.as_bytes());
        parse.extend_from_slice(&[0, 0, 0]);
        let mut batch = message(b'P', &parse);
        batch.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
        batch.extend(message(b'E', b"\0\0\0\0\0"));
        batch.extend(message(b'S', b""));
        batch
    };
    s.write_all(&extended("SELECT 1/0")).await.expect("execute");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    assert_eq!(msgs.last().map(|m| m.1.clone()), Some(b"E".to_vec()));
    s.write_all(&extended("ROLLBACK TO SAVEPOINT b"))
        .await
        .expect("execute");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    assert_eq!(msgs.last().map(|m| m.1.clone()), Some(b"T".to_vec()));
    s.write_all(&extended("ROLLBACK")).await.expect("execute");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    assert_eq!(msgs.last().map(|m| m.1.clone()), Some(b"I".to_vec()));
}

/// Replies to the extended protocol's messages are held until the Sync or Flush that
/// ends a request, as Postgres holds them: a Flush sends what is held without ending
/// the request, and an Execute that starts a COPY FROM STDIN sends its CopyInResponse
/// at once (the client sends the data before any Sync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_replies_leave_at_flush_sync_and_copy() {
    let server = Server::start();
    let mut s = ready(&server).await;
    let (_, status) = status_after(&mut s, "CREATE TABLE held (id int PRIMARY KEY, v text)").await;
    assert_eq!(status, Vec::<String>::new(), "table made");

    let mut batch = message(b'P', b"\0SELECT $1::int + 1\0\0\0");
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0u16.to_be_bytes());
    bind.extend_from_slice(&1u16.to_be_bytes());
    bind.extend_from_slice(&1u32.to_be_bytes());
    bind.extend_from_slice(b"6");
    bind.extend_from_slice(&0u16.to_be_bytes());
    batch.extend(message(b'B', &bind));
    batch.extend(message(b'D', b"P\0"));
    batch.extend(message(b'E', b"\0\0\0\0\0"));
    batch.extend(message(b'H', b""));
    s.write_all(&batch).await.expect("flush request");
    let (msgs, closed) = read_until(&mut s, b'C').await;
    let tags: Vec<u8> = msgs.iter().map(|m| m.0).collect();
    assert!(!closed);
    assert_eq!(tags, b"12TDC", "everything up to the Flush, without a Sync");
    assert_eq!(msgs[3].1, [0, 1, 0, 0, 0, 1, b'7']);
    s.write_all(&message(b'S', b"")).await.expect("sync");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    assert_eq!(msgs.iter().map(|m| m.0).collect::<Vec<u8>>(), b"Z");

    // An error leaves at once: a pipeline's client waits for it after its Flush, which
    // is skipped (with everything else) until the Sync.
    let mut batch = message(b'P', b"\0SELECT 1/0\0\0\0");
    batch.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
    batch.extend(message(b'E', b"\0\0\0\0\0"));
    batch.extend(message(b'H', b""));
    s.write_all(&batch).await.expect("failing request");
    let (msgs, closed) = read_until(&mut s, b'E').await;
    assert!(!closed);
    let error = msgs.last().expect("an error");
    assert_eq!(error.0, b'E', "the error arrives without a Sync");
    assert_eq!(sqlstate_of(&error.1).as_deref(), Some("22012"));
    s.write_all(&message(b'S', b"")).await.expect("sync");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    assert_eq!(msgs.iter().map(|m| m.0).collect::<Vec<u8>>(), b"Z");

    // COPY through Parse/Bind/Execute, the data sent only once CopyInResponse came.
    let mut batch = message(b'P', b"\0COPY held FROM STDIN\0\0\0");
    batch.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
    batch.extend(message(b'E', b"\0\0\0\0\0"));
    s.write_all(&batch).await.expect("copy request");
    let (msgs, closed) = read_until(&mut s, b'G').await;
    assert!(!closed);
    assert_eq!(
        msgs.iter().map(|m| m.0).collect::<Vec<u8>>(),
        b"12G",
        "CopyInResponse without a Sync or Flush"
    );
    let mut batch = message(b'd', b"1\tone\n2\ttwo\n");
    batch.extend(message(b'c', b""));
    batch.extend(message(b'S', b""));
    s.write_all(&batch).await.expect("copy data");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    let complete = msgs.iter().find(|m| m.0 == b'C').expect("CommandComplete");
    assert_eq!(complete.1, b"COPY 2\0");
    s.write_all(&query("SELECT v FROM held ORDER BY id"))
        .await
        .expect("query");
    let (msgs, _) = read_until(&mut s, b'Z').await;
    let rows: Vec<&[u8]> = msgs
        .iter()
        .filter(|m| m.0 == b'D')
        .map(|m| &m.1[6..])
        .collect();
    assert_eq!(rows, [b"one".as_slice(), b"two".as_slice()]);
}
