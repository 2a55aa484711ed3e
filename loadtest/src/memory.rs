//! Memory of a process tree from `/proc`: the edge is one process, sshd forks one or two per
//! connection, so both are measured as "this pid and all its descendants". PSS (proportional
//! set size) is used where the kernel offers it, so pages shared between sshd's children are
//! not counted once per child; RSS otherwise.

use std::path::Path;

/// PSS (or RSS) of `pid` and all its descendants except the `excluded` subtrees, in bytes;
/// 0 if it does not exist. (`ssh-edge demo` runs the lab's sshd as its child: exclude it to
/// measure the edge alone.)
pub fn tree_bytes(pid: u32, excluded: &[u32]) -> u64 {
    let mut total = 0;
    let mut stack = vec![pid];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > 100_000 {
            break;
        }
        if excluded.contains(&p) {
            continue;
        }
        total += process_bytes(p);
        stack.extend(children(p));
    }
    total
}

fn process_bytes(pid: u32) -> u64 {
    let proc = Path::new("/proc").join(pid.to_string());
    if let Ok(text) = std::fs::read_to_string(proc.join("smaps_rollup"))
        && let Some(kib) = field_kib(&text, "Pss:")
    {
        return kib * 1024;
    }
    std::fs::read_to_string(proc.join("status"))
        .ok()
        .and_then(|t| field_kib(&t, "VmRSS:"))
        .map_or(0, |kib| kib * 1024)
}

/// The value of a `Name:   123 kB` line.
fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn children(pid: u32) -> Vec<u32> {
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_fields() {
        let text = "Rss:     1000 kB\nPss:      600 kB\n";
        assert_eq!(field_kib(text, "Pss:"), Some(600));
        assert_eq!(field_kib(text, "Swap:"), None);
    }

    #[test]
    fn this_process_has_memory_and_a_missing_one_has_none() {
        let me = std::process::id();
        assert!(tree_bytes(me, &[]) > 0);
        assert_eq!(tree_bytes(me, &[me]), 0);
        assert_eq!(tree_bytes(u32::MAX, &[]), 0);
    }
}
