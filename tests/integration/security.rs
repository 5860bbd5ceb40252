//! TLS, authentication and authorisation, through tokio-postgres and psql.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{Server, sqlstate};

/// A config file with users `alice` (read-write, password "wonderland") and `reader`
/// (read-only, password "books"), their verifiers made by `vectorgate password`.
fn users_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let verifier = |pw: &str| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_vectorgate"))
            .arg("password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("vectorgate password");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{pw}\n").as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success());
        let v = String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_string();
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains(pw), "a verifier never contains the password");
        v
    };
    let text = format!(
        "{extra}\n[[users]]\nname = \"alice\"\npassword = \"{}\"\n\n[[users]]\nname = \"reader\"\npassword = \"{}\"\nread_only = true\n",
        verifier("wonderland"),
        verifier("books")
    );
    let path = dir.join("vectorgate.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A server whose config file has the users of [`users_config`] (and `extra` settings).
fn with_users(dir: &Path, extra: &str, flags: &[&str]) -> Server {
    let config = users_config(dir, extra);
    let mut args = vec!["--config", config.to_str().expect("path")];
    args.extend_from_slice(flags);
    Server::start_on(&dir.join("data"), &args)
}

async fn connect(
    server: &Server,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = server.config();
    config.user(user).password(password);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Run psql with a connection string; (succeeded, stdout, stderr).
fn psql(conninfo: &str, password: Option<&str>, command: &str) -> (bool, String, String) {
    let mut cmd = Command::new("psql");
    cmd.arg(conninfo)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .env_remove("PGSSLMODE");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn port(server: &Server) -> &str {
    server.addr.rsplit(':').next().expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_users_log_in_and_bad_credentials_get_28p01() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = with_users(dir.path(), "", &[]);
    let alice = connect(&server, "alice", "wonderland")
        .await
        .expect("alice logs in with SCRAM");
    let one: i32 = alice.query_one("SELECT 1", &[]).await.expect("q").get(0);
    assert_eq!(one, 1);
    for (user, password) in [("alice", "Wonderland"), ("mallory", "wonderland")] {
        let e = match connect(&server, user, password).await {
            Ok(_) => panic!("{user} must not log in with {password}"),
            Err(e) => e,
        };
        assert_eq!(sqlstate(&e), "28P01", "{user}: {e:?}");
        let message = e.as_db_error().map(|d| d.message().to_string());
        // The same answer for a wrong password and an unknown user.
        assert_eq!(
            message.as_deref(),
            Some(format!("password authentication failed for user \"{user}\"").as_str())
        );
        assert!(e.as_db_error().and_then(|d| d.hint()).is_none());
    }
    // Without a password there is nothing to prove.
    let mut no_password = server.config();
    no_password.user("alice");
    assert!(no_password.connect(tokio_postgres::NoTls).await.is_err());
    // psql (libpq) speaks SCRAM too.
    let conninfo = format!(
        "host=127.0.0.1 port={} user=alice dbname=vectorgate",
        port(&server)
    );
    let (ok, out, err) = psql(&conninfo, Some("wonderland"), "SELECT 'in'");
    assert!(ok, "psql: {err}");
    assert_eq!(out.trim(), "in");
    let (ok, _, err) = psql(&conninfo, Some("nope"), "SELECT 1");
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
    // The server survived all of it.
    let one: i32 = alice.query_one("SELECT 1", &[]).await.expect("q").get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_users_and_sessions_cannot_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = with_users(dir.path(), "", &[]);
    let alice = connect(&server, "alice", "wonderland")
        .await
        .expect("alice");
    alice
        .batch_execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, tag text, embedding vector(3)); \
             INSERT INTO docs VALUES (1, 'a', '[1,0,0]'), (2, 'b', '[0,1,0]')",
        )
        .await
        .expect("alice writes");
    let reader = connect(&server, "reader", "books").await.expect("reader");
    let writes = [
        "INSERT INTO docs VALUES (3, 'c', '[0,0,1]')",
        "UPDATE docs SET tag = 'z' WHERE id = 1",
        "DELETE FROM docs WHERE id = 1",
        "CREATE TABLE other (id bigint PRIMARY KEY, embedding vector(3))",
        "DROP TABLE docs",
        "ALTER TABLE docs SET (m = 8)",
        "COPY docs FROM STDIN",
        "SELECT * FROM vectorgate_reindex('docs')",
    ];
    for sql in writes {
        let e = reader.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "25006", "simple {sql}: {e:?}");
        if !sql.starts_with("COPY") {
            let e = reader.execute(sql, &[]).await.expect_err(sql);
            assert_eq!(sqlstate(&e), "25006", "extended {sql}: {e:?}");
        }
    }
    // Reading works, the index can be verified, and nothing changed.
    let rows = reader
        .query(
            "SELECT id FROM vector_search('docs', '[1,0,0]', 2) ORDER BY id",
            &[],
        )
        .await
        .expect("search");
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(),
        vec![1, 2]
    );
    reader
        .simple_query("SELECT * FROM vectorgate_reindex('docs', 'verify')")
        .await
        .expect("verify is a read");
    let ro = reader
        .simple_query("SHOW transaction_read_only")
        .await
        .expect("show");
    assert!(ro.iter().any(
        |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("on"))
    ));
    // A read-only user cannot switch it off; a read-write user can make a session
    // read-only, and back.
    for (client, set) in [(&reader, "off"), (&alice, "on")] {
        client
            .batch_execute(&format!("SET default_transaction_read_only = {set}"))
            .await
            .expect("set");
        let e = client
            .execute("DELETE FROM docs WHERE id = 2", &[])
            .await
            .expect_err("read-only");
        assert_eq!(sqlstate(&e), "25006");
    }
    alice
        .batch_execute("RESET default_transaction_read_only")
        .await
        .expect("reset");
    let n = alice
        .execute("UPDATE docs SET tag = 'y' WHERE id = 2", &[])
        .await
        .expect("writes again");
    assert_eq!(n, 1);
    let count: i64 = reader
        .query_one("SELECT count(*) FROM docs", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 2);
}

/// A CA and a server certificate for localhost / 127.0.0.1 signed by it, as PEM files
/// in `dir`: (ca.pem, server.pem, server.key).
fn make_certificates(
    dir: &Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("vectorgate test CA {name}"));
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let key = KeyPair::generate().expect("server key");
    let cert = server
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server cert");
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).expect("write ca");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_required_verified_and_reloaded_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca1, cert, key) = make_certificates(dir.path(), "one");
    let server = Server::start_on(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert.to_str().expect("path"),
            "--tls-key",
            key.to_str().expect("path"),
            "--tls-required",
        ],
    );
    let base = format!(
        "host=localhost port={} user=tester dbname=vectorgate",
        port(&server)
    );
    let (ok, out, err) = psql(&format!("{base} sslmode=require"), None, "\\conninfo");
    assert!(ok, "sslmode=require: {err}");
    assert!(out.contains("SSL connection"), "{out}");
    let verify = |ca: &Path| {
        psql(
            &format!("{base} sslmode=verify-full sslrootcert={}", ca.display()),
            None,
            "SELECT 41 + 1",
        )
    };
    let (ok, out, err) = verify(&ca1);
    assert!(ok, "verify-full: {err}");
    assert_eq!(out.trim(), "42");
    // Plaintext is refused with 28000 and a hint, in psql and in tokio-postgres.
    let (ok, _, err) = psql(&format!("{base} sslmode=disable"), None, "SELECT 1");
    assert!(!ok);
    assert!(err.contains("only connections that use TLS"), "{err}");
    let e = match server.config().connect(tokio_postgres::NoTls).await {
        Ok(_) => panic!("plaintext must be refused"),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&e), "28000", "{e:?}");
    assert!(
        e.as_db_error()
            .and_then(|d| d.hint())
            .is_some_and(|h| h.contains("sslmode"))
    );
    // New certificate files, then SIGHUP: new connections use them.
    let (ca2, _, _) = make_certificates(dir.path(), "two");
    let (ok, _, _) = verify(&ca2);
    assert!(!ok, "the old certificate is not signed by the new CA");
    server.signal("-HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.logged("cert").is_none() {
        assert!(std::time::Instant::now() < deadline, "no reload logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out, err) = verify(&ca2);
    assert!(ok, "after reload: {err}");
    assert_eq!(out.trim(), "42");
    let (ok, _, err) = verify(&ca1);
    assert!(!ok, "the old CA no longer verifies: {err}");
    // A broken file on reload keeps the working certificate.
    std::fs::write(&cert, "not a certificate").expect("write");
    server.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, _, err) = verify(&ca2);
    assert!(ok, "a failed reload keeps the previous certificate: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_passwords_only_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = make_certificates(dir.path(), "one");
    let server = with_users(
        dir.path(),
        "auth = \"password\"",
        &[
            "--tls-cert",
            cert.to_str().expect("path"),
            "--tls-key",
            key.to_str().expect("path"),
        ],
    );
    let base = format!(
        "host=localhost port={} user=alice dbname=vectorgate",
        port(&server)
    );
    let tls = format!("{base} sslmode=verify-full sslrootcert={}", ca.display());
    let (ok, out, err) = psql(&tls, Some("wonderland"), "SELECT 'in'");
    assert!(ok, "password over TLS: {err}");
    assert_eq!(out.trim(), "in");
    let (ok, _, err) = psql(&tls, Some("wrong"), "SELECT 1");
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
    let (ok, _, err) = psql(
        &format!("{base} sslmode=disable"),
        Some("wonderland"),
        "SELECT 1",
    );
    assert!(
        !ok,
        "a cleartext password never crosses a plaintext connection"
    );
    assert!(err.contains("needs a TLS connection"), "{err}");
}

#[test]
fn listening_beyond_loopback_needs_authentication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_vectorgate"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without authentication"), "{err}");
    let config = users_config(dir.path(), "auth = \"md5\"");
    let out = Command::new(env!("CARGO_BIN_EXE_vectorgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown auth method"));
}
