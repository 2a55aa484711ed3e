//! Unit tests of the sessions CLI's pure parts and its fan-out against fake endpoints.
use super::*;

#[test]
fn filters_become_percent_encoded_queries() {
    assert_eq!(list_path(&FilterArgs::default()), "/sessions");
    let filter = FilterArgs {
        workload: Some("training-job-abc1234-0".into()),
        key_id: Some("alice@example.com&admin=1".into()),
        serial: Some(42),
        remote: Some("tenant b".into()),
        sub: None,
    };
    assert_eq!(
        list_path(&filter),
        "/sessions?workload=training-job-abc1234-0&key_id=alice%40example.com%26admin%3D1&serial=42&remote=tenant+b"
    );
    assert_eq!(
        kill_path(&filter, Some("key rotated: 100%")).unwrap(),
        "/sessions/kill?workload=training-job-abc1234-0&key_id=alice%40example.com%26admin%3D1&serial=42&remote=tenant+b&reason=key+rotated%3A+100%25"
    );
    // The admin API decodes them back.
    let query = kill_path(&filter, Some("x")).unwrap();
    let decoded: Vec<(String, String)> =
        form_urlencoded::parse(query.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(
        decoded[1],
        ("key_id".into(), "alice@example.com&admin=1".into())
    );
    assert_eq!(delete_path(7, None), "/sessions/7");
    assert_eq!(
        delete_path(7, Some("leaked key")),
        "/sessions/7?reason=leaked+key"
    );
}

#[test]
fn kill_without_a_selector_is_refused() {
    let e = kill_path(&FilterArgs::default(), Some("everyone")).unwrap_err();
    assert!(matches!(e, SessionsError::NoSelector), "{e}");
    assert!(e.to_string().contains("say which sessions to end"));
}

#[test]
fn tokens_are_read_from_the_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret-token\r\nsecond line\n").unwrap();
    assert_eq!(read_token(&file).unwrap(), "s3cret-token");
    std::fs::write(&file, "\n").unwrap();
    assert!(read_token(&file).unwrap_err().to_string().contains("empty"));
    std::fs::write(&file, "two words\n").unwrap();
    assert!(
        read_token(&file)
            .unwrap_err()
            .to_string()
            .contains("printable ASCII")
    );
    let missing = dir.path().join("missing");
    let e = read_token(&missing).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
}

#[derive(clap::Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: SessionsArgs,
}

fn parse(args: &[&str]) -> Result<SessionsArgs, clap::Error> {
    use clap::Parser;
    Cli::try_parse_from(std::iter::once("sessions").chain(args.iter().copied())).map(|c| c.args)
}

#[test]
fn arguments_parse_and_conflict() {
    let args = parse(&[
        "list",
        "--replicas",
        "edges.test:9200",
        "--dns-server",
        "127.0.0.1:5353",
        "--key-id",
        "a",
        "--json",
    ])
    .unwrap();
    let Action::List {
        targets,
        filter,
        json,
    } = args.action
    else {
        panic!("not list")
    };
    assert_eq!(targets.replicas.as_deref(), Some("edges.test:9200"));
    assert_eq!(
        targets.dns_server,
        ["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(targets.timeout_secs, 5);
    assert_eq!(filter.key_id.as_deref(), Some("a"));
    assert!(json);
    for bad in [
        &["list", "--admin", "http://a:1", "--replicas", "b"][..],
        &["kill", "--admin", "http://a:1", "--id", "3"],
        &["kill", "--admin", "http://a:1", "--replica", "a:1"],
        &["kill", "--id", "3", "--replica", "a:1", "--key-id", "k"],
        &["list", "--admin", "a", "--timeout-secs", "0"],
        &["list", "--admin", "a", "--dns-server", "kube-dns"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn usage_errors_name_what_is_missing() {
    let args = parse(&["list"]).unwrap();
    let e = execute(&args).await.unwrap_err();
    assert!(matches!(e, SessionsError::NoTargets), "{e}");
    let args = parse(&["kill", "--admin", "http://127.0.0.1:1", "--reason", "x"]).unwrap();
    assert!(matches!(
        execute(&args).await,
        Err(SessionsError::NoSelector)
    ));
    let args = parse(&["list", "--admin", "ftp://127.0.0.1:1"]).unwrap();
    let e = execute(&args).await.unwrap_err().to_string();
    assert!(
        e.contains("invalid admin address \"ftp://127.0.0.1:1\""),
        "{e}"
    );
    // --id on a replica that is not among those asked for.
    let args = parse(&[
        "kill",
        "--admin",
        "http://127.0.0.1:1",
        "--admin",
        "127.0.0.2:1",
        "--id",
        "3",
        "--replica",
        "127.0.0.3:1",
    ])
    .unwrap();
    let e = execute(&args).await.unwrap_err().to_string();
    assert!(
        e.contains(
            "replica 127.0.0.3:1 is not one of the replicas asked for (127.0.0.1:1, 127.0.0.2:1)"
        ),
        "{e}"
    );
    // --id on a replica that does not answer: named, and the run is incomplete.
    let args = parse(&[
        "kill",
        "--id",
        "3",
        "--replica",
        "127.0.0.1:1",
        "--timeout-secs",
        "2",
    ])
    .unwrap();
    let printed = execute(&args).await.unwrap();
    assert!(!printed.complete);
    assert!(
        printed
            .stderr
            .contains("replica 127.0.0.1:1 unreachable: cannot connect"),
        "{printed:?}"
    );
    assert_eq!(
        printed.stdout,
        "ended 0 sessions on 0 replicas; 1 replica unreachable\n"
    );
}

/// A one-shot admin endpoint on loopback answering `answer` to every request; the
/// requests it saw.
async fn fake_admin(answers: Vec<&'static str>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        for answer in answers {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            seen.push(String::from_utf8_lossy(&head).into_owned());
            s.write_all(answer.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        }
        seen
    });
    (addr, task)
}

#[tokio::test]
async fn a_fanout_merges_answers_and_names_the_silent() {
    let (good, seen) = fake_admin(vec![
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"sessions\":[{\"id\":2,\"key_id\":\"alice\",\"started\":1}]}\n",
    ])
    .await;
    let (denied, _) = fake_admin(vec![
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\nConnection: close\r\n\r\nunauthorized\n",
    ])
    .await;
    // A listener that never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let args = parse(&[
        "list",
        "--admin",
        &good,
        "--admin",
        &format!("http://{denied}/"),
        "--admin",
        &silent_addr,
        "--token-file",
        token.to_str().unwrap(),
        "--timeout-secs",
        "1",
        "--key-id",
        "alice",
        "--json",
    ])
    .unwrap();
    let printed = execute(&args).await.unwrap();
    assert!(!printed.complete);
    let json: serde_json::Value = serde_json::from_str(&printed.stdout).unwrap();
    assert_eq!(json["sessions"][0]["replica"], good.as_str());
    assert_eq!(json["sessions"][0]["id"], 2);
    assert_eq!(json["unreachable"][0]["replica"], denied.as_str());
    assert_eq!(
        json["unreachable"][0]["error"],
        "401 Unauthorized: the bearer token was refused"
    );
    assert_eq!(json["unreachable"][1]["replica"], silent_addr.as_str());
    assert_eq!(json["unreachable"][1]["error"], "no answer within 1 s");
    let seen = seen.await.unwrap();
    assert!(
        seen[0].starts_with("GET /sessions?key_id=alice HTTP/1.1\r\n"),
        "{seen:?}"
    );
    // Header names are case-insensitive (hyper writes them in lower case).
    assert!(
        seen[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer t0ken\r\n"),
        "{seen:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn chunked_answers_are_read_and_non_http_ones_refused() {
    let (chunked, _) = fake_admin(vec![
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         c\r\n{\"sessions\":\r\n18\r\n[{\"id\":5,\"started\":1}]}\n\r\n0\r\n\r\n",
    ])
    .await;
    let (ssh, _) = fake_admin(vec!["SSH-2.0-OpenSSH_9.2\r\n"]).await;
    let args = parse(&[
        "list",
        "--admin",
        &chunked,
        "--admin",
        &ssh,
        "--timeout-secs",
        "20",
        "--json",
    ])
    .unwrap();
    let printed = tokio::time::timeout(std::time::Duration::from_secs(30), execute(&args))
        .await
        .expect("both replicas answer within 30 s")
        .unwrap();
    assert!(!printed.complete);
    let json: serde_json::Value = serde_json::from_str(&printed.stdout).unwrap();
    assert_eq!(json["sessions"][0]["replica"], chunked.as_str());
    assert_eq!(json["sessions"][0]["id"], 5);
    assert_eq!(json["unreachable"][0]["replica"], ssh.as_str());
    let error = json["unreachable"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("no usable HTTP answer"), "{error}");
}
