//! scp and sftp through every front, checked by sha256.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::world::*;

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// A file of pseudo-random bytes (incompressible, so no transport trick hides a bug).
fn make_file(path: &Path, mib: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        f.write_all(&block).unwrap();
    }
}

fn remote_target(w: &World, via: Via) -> (Vec<String>, String) {
    let mut args = w.ssh_args(via, HOST);
    let dest = args.pop().unwrap();
    (args, dest)
}

#[test]
fn scp_up_and_down_50_mib_on_every_front() {
    let w = World::start();
    let src = w.lab.path("upload.bin");
    make_file(&src, 50);
    let want = sha256_file(&src);
    for via in ALL_FRONTS {
        let remote_file = w.lab.path(&format!("remote-{via:?}.bin"));
        let (args, dest) = remote_target(&w, via);
        let out = run_with_timeout(
            Command::new("scp")
                .args(&args)
                .arg(&src)
                .arg(format!("{dest}:{}", remote_file.display())),
            Duration::from_secs(300),
        );
        assert!(out.status.success(), "{via:?} scp up: {}", stderr(&out));
        assert_eq!(
            sha256_file(&remote_file),
            want,
            "{via:?}: uploaded file differs"
        );

        let back = w.lab.path(&format!("back-{via:?}.bin"));
        let out = run_with_timeout(
            Command::new("scp")
                .args(&args)
                .arg(format!("{dest}:{}", remote_file.display()))
                .arg(&back),
            Duration::from_secs(300),
        );
        assert!(out.status.success(), "{via:?} scp down: {}", stderr(&out));
        assert_eq!(sha256_file(&back), want, "{via:?}: downloaded file differs");
        std::fs::remove_file(&remote_file).unwrap();
        std::fs::remove_file(&back).unwrap();
    }
    assert!(w.metric("ssh_edge_bridge_bytes_total{direction=\"up\"}") >= 150 << 20);
    assert!(w.metric("ssh_edge_bridge_bytes_total{direction=\"down\"}") >= 150 << 20);
}

#[test]
fn sftp_put_and_get_on_every_front() {
    let w = World::start();
    let src = w.lab.path("sftp-src.bin");
    make_file(&src, 8);
    let want = sha256_file(&src);
    for via in ALL_FRONTS {
        let remote_file = w.lab.path(&format!("sftp-remote-{via:?}.bin"));
        let back = w.lab.path(&format!("sftp-back-{via:?}.bin"));
        let batch = w.lab.path("sftp-batch");
        std::fs::write(
            &batch,
            format!(
                "put {} {r}\nls -l {r}\nget {r} {}\n",
                src.display(),
                back.display(),
                r = remote_file.display()
            ),
        )
        .unwrap();
        let (args, dest) = remote_target(&w, via);
        let out = run_with_timeout(
            Command::new("sftp")
                .args(&args)
                .arg("-b")
                .arg(&batch)
                .arg(&dest),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "{via:?} sftp: {}", stderr(&out));
        assert_eq!(sha256_file(&remote_file), want, "{via:?}: put differs");
        assert_eq!(sha256_file(&back), want, "{via:?}: get differs");
    }
}
