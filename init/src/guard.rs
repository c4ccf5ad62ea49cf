//! Private ports: an nftables table, owned by zigral-init for its lifetime, that lets only
//! root and the state user open TCP connections to the desktops' VNC and DevTools ports, so a
//! process of one desktop's user cannot reach another desktop (or its own DevTools).
//! The table names its owner's pid in a comment: a zigral-init killed before it could remove
//! its table leaves it behind, and the next one to start removes it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Why the table could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("cannot run nft (install the nftables package): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the private-port rules: {0}")]
    Nft(String),
}

/// The installed table; removed on drop.
#[derive(Debug)]
pub struct PortGuard {
    table: String,
}

/// Table name for a state dir: stacks with different state dirs get different tables.
pub fn table_name(state_dir: &Path) -> String {
    // FNV-1a: stable across builds (unlike DefaultHasher).
    let mut h: u32 = 0x811c_9dc5;
    for b in state_dir.as_os_str().as_encoded_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("zigral_{h:08x}")
}

/// The nft script installing `table`, owned by process `pid` (its comment): TCP to `ranges` is
/// reset unless the socket belongs to one of `allow_uids`.
pub fn ruleset(table: &str, pid: u32, ranges: &[(u16, u16)], allow_uids: &[u32]) -> String {
    let ports = ranges
        .iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(", ");
    let uids = allow_uids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    // `table` + `delete table` first makes the script idempotent (a leftover of a crash).
    format!(
        "table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n  comment \"{OWNER_TAG}{pid}\"\n  chain output {{\n    type filter hook output priority 0; policy accept;\n    tcp dport {{ {ports} }} meta skuid != {{ {uids} }} reject with tcp reset\n  }}\n}}\n"
    )
}

/// The comment prefix naming the zigral-init process that owns a table.
const OWNER_TAG: &str = "zigral-init pid ";

/// The owner pid written in a table listing (`nft list table ...` output), if any.
pub fn owner_pid(listing: &str) -> Option<i32> {
    let rest = &listing[listing.find(OWNER_TAG)? + OWNER_TAG.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn nft_output(args: &[&str]) -> Option<String> {
    let out = Command::new("nft").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes the `zigral_*` tables whose owning zigral-init is gone (one killed with SIGKILL
/// cannot remove its own). A table without an owner comment is left alone.
fn sweep_orphans(keep: &str) {
    let Some(list) = nft_output(&["list", "tables", "inet"]) else {
        return;
    };
    for name in list
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table inet "))
        .filter(|n| n.starts_with("zigral_") && *n != keep)
    {
        let Some(pid) = nft_output(&["list", "table", "inet", name]).and_then(|t| owner_pid(&t))
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
            && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "zigral-init");
        if !alive && nft(&format!("delete table inet {name}\n")).is_ok() {
            tracing::info!(
                table = name,
                pid,
                "removed the private-port table of a gone zigral-init"
            );
        }
    }
}

fn nft(script: &str) -> Result<(), GuardError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(GuardError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(GuardError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(GuardError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(GuardError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

impl PortGuard {
    /// Installs the table for `state_dir`.
    pub fn install(
        state_dir: &Path,
        ranges: &[(u16, u16)],
        allow_uids: &[u32],
    ) -> Result<PortGuard, GuardError> {
        let table = table_name(state_dir);
        sweep_orphans(&table);
        nft(&ruleset(&table, std::process::id(), ranges, allow_uids))?;
        tracing::info!(
            table,
            ?ranges,
            ?allow_uids,
            "private ports: only these users may connect"
        );
        Ok(PortGuard { table })
    }

    /// The nftables table name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        if let Err(e) = nft(&format!("delete table inet {}\n", self.table)) {
            tracing::warn!(
                table = self.table,
                "cannot remove the private-port table: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_names_ports_and_users() {
        let r = ruleset("zigral_x", 4242, &[(5900, 5999), (9222, 9321)], &[0, 998]);
        assert!(r.contains("tcp dport { 5900-5999, 9222-9321 } meta skuid != { 0, 998 } reject"));
        assert!(r.starts_with("table inet zigral_x\ndelete table inet zigral_x\n"));
        assert_eq!(owner_pid(&r), Some(4242));
        assert_eq!(owner_pid("table inet zigral_y {\n\tchain output {"), None);
        assert_ne!(table_name(Path::new("/a")), table_name(Path::new("/b")));
    }
}
