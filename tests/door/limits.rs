//! Pre-auth caps per source: one address cannot hold more than its share of unauthenticated
//! connections, while other addresses still land.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::harness::{Door, text};

const CAP: usize = 50;

/// A TCP connection from `source` (another loopback address standing in for another client)
/// to the edge's SSH port that sends an identification line and then nothing.
fn stalled_from(source: &str, port: u16) -> TcpStream {
    let mut s = connect_from(source, port).unwrap();
    s.write_all(b"SSH-2.0-stall\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A blocking TCP connection bound to `source` (std has no bind-before-connect; tokio does).
pub fn connect_from(source: &str, port: u16) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let from: SocketAddr = format!("{source}:0").parse().expect("an IPv4 address");
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(from)?;
        socket
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
    })?;
    let std = stream.into_std()?;
    std.set_nonblocking(false)?;
    Ok(std)
}

#[test]
fn a_source_over_its_cap_is_refused_while_another_address_lands() {
    let door = Door::start(|raw, _| {
        raw.limits.per_source_max = CAP;
        raw.limits.per_source_rate = 0.0;
    });
    // (The harness's start-up probe, a bare connect from 127.0.0.1, has been counted and holds
    // no slot of this source: `Door::start` waits for that.)
    assert_eq!(door.metric("ssh_edge_unauthenticated_connections"), 0);
    let held: Vec<_> = (0..CAP)
        .map(|_| stalled_from("127.0.0.1", door.ssh))
        .collect();
    door.wait_metric(
        "ssh_edge_unauthenticated_connections",
        Duration::from_secs(20),
        |n| n == CAP as u64,
    );
    // The 51st from the same address hears why and is closed. (It sends nothing first: the
    // edge closes at once, and unread bytes would turn that close into a reset.)
    let mut extra = connect_from("127.0.0.1", door.ssh).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut said = String::new();
    extra.read_to_string(&mut said).unwrap();
    assert!(
        said.contains("too many unauthenticated connections from your address"),
        "the refused connection was told: {said:?}"
    );
    // Counted before the close the client saw: there already, exactly one.
    assert_eq!(
        door.metric("ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"per_source\"}"),
        1
    );
    // A real ssh from that address is refused too...
    let out = door.ssh(&door.user_key, &["-b", "127.0.0.1"], "echo in");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    // ...while another address lands.
    let out = door.ssh(&door.user_key, &["-b", "127.0.0.2"], "echo landed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "landed\n",
        "{}",
        text(&out)
    );
    assert!(door.log().contains("client=127.0.0.2"));
    // The held connections were never cut for it.
    assert_eq!(
        door.metric("ssh_edge_unauthenticated_connections"),
        CAP as u64
    );
    drop(held);
    door.wait_metric(
        "ssh_edge_unauthenticated_connections",
        Duration::from_secs(10),
        |n| n == 0,
    );
    // With the slots free, the first address lands again.
    let out = door.ssh(&door.user_key, &["-b", "127.0.0.1"], "echo back");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "back\n",
        "{}",
        text(&out)
    );
}

#[test]
fn a_source_over_its_rate_is_refused() {
    let door = Door::start(|raw, _| {
        raw.limits.per_source_max = 0;
        raw.limits.per_source_rate = 0.2;
        raw.limits.per_source_burst = 3.0;
    });
    // Three at once are the burst; the fourth is over the rate.
    let held: Vec<_> = (0..3)
        .map(|_| stalled_from("127.0.0.3", door.ssh))
        .collect();
    door.wait_metric(
        "ssh_edge_unauthenticated_connections",
        Duration::from_secs(20),
        |n| n == 3,
    );
    let mut extra = connect_from("127.0.0.3", door.ssh).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut said = String::new();
    extra.read_to_string(&mut said).unwrap();
    assert!(
        said.contains("too many connections from your address"),
        "{said:?}"
    );
    // Counted before the close the client saw: there already, exactly one.
    assert_eq!(
        door.metric("ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"rate\"}"),
        1
    );
    // Another address has its own bucket.
    let out = door.ssh(&door.user_key, &["-b", "127.0.0.2"], "echo landed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "landed\n",
        "{}",
        text(&out)
    );
    drop(held);
}

#[test]
fn random_early_drop_takes_the_flood_and_spares_a_user_logging_in_once() {
    let door = Door::start(|raw, _| {
        raw.limits.preauth_start = 20;
        raw.limits.preauth_drop_percent = 30;
        raw.limits.preauth_full = 1000;
        raw.limits.per_source_max = 100;
        raw.limits.per_source_rate = 0.0;
    });
    // 200 stalled connections from four flood sources: past 20 held, each new one of theirs
    // takes the dice (30 % and up).
    let mut held = Vec::new();
    for i in 0..200 {
        let mut s = connect_from(&format!("127.0.1.{}", 1 + i % 4), door.ssh).unwrap();
        if s.write_all(b"SSH-2.0-flood\r\n").is_ok() {
            held.push(s);
        }
    }
    let dropped = door.wait_metric(
        "ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"preauth_full\"}",
        Duration::from_secs(20),
        |n| n > 0,
    );
    let pending = door.metric("ssh_edge_unauthenticated_connections");
    assert!(pending >= 20, "the flood holds only {pending}");
    // A user with nothing pending is never the one dropped.
    for i in 0..5 {
        let out = door.ssh(&door.user_key, &["-b", "127.0.0.2"], "echo landed");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "landed\n",
            "login {i} during the flood: {}",
            text(&out)
        );
    }
    assert!(door.metric("ssh_edge_unauthenticated_connections") >= 20);
    assert!(dropped > 0);
    drop(held);
}
