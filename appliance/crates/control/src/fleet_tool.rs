//! `zigral fleet`: what an operator runs to make the fleet's settings (see
//! [`crate::fleet_auth`] and `deploy/README.md`): a fresh signing key (`zigral fleet key KID`
//! prints `KID:SECRET`) and a user entry (`zigral fleet user NAME --role ROLE` reads the
//! password from stdin and prints `NAME:ROLE:PHC`). Secrets go to stdout only, for a file or
//! a Kubernetes Secret; never to the log.

use std::io::{BufRead, Write};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Subcommand, ValueEnum};
use rand::RngCore;
use zeroize::Zeroize;

/// `zigral fleet ...`.
#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// Prints a new fleet signing key `KID:SECRET` (32 random bytes) for `fleet_keys`.
    Key {
        /// Key id: 1-32 of a-z, 0-9, '-' (e.g. the month it was made: 2026-11).
        kid: String,
    },
    /// Reads a password from stdin (one line) and prints `NAME:ROLE:PHC` for `fleet_users`.
    User {
        name: String,
        #[arg(long, value_enum, default_value = "user")]
        role: Role,
    },
}

/// A fleet user's role.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Role {
    Admin,
    User,
    Disabled,
}

/// Runs a `zigral fleet` command, writing its one line to `out`.
pub fn run(cmd: FleetCmd, input: impl BufRead, mut out: impl Write) -> anyhow::Result<()> {
    match cmd {
        FleetCmd::Key { kid } => {
            let mut b = [0u8; 32];
            rand::rng().fill_bytes(&mut b);
            let line = format!("{kid}:{}", URL_SAFE_NO_PAD.encode(b));
            b.zeroize();
            // The same check `zigral control` applies to the setting.
            crate::fleet_auth::parse_keys(&line)?;
            writeln!(out, "{line}")?;
        }
        FleetCmd::User { name, role } => {
            let mut pw = String::new();
            input.take(8192).read_line(&mut pw)?;
            let trimmed = pw.trim_end_matches(['\r', '\n']);
            crate::api::auth::check_password_rules(trimmed)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let hash = crate::auth::hash_password(trimmed)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            pw.zeroize();
            let role = match role {
                Role::Admin => "admin",
                Role::User => "user",
                Role::Disabled => "disabled",
            };
            let line = format!("{name}:{role}:{hash}");
            crate::fleet_auth::parse_users(&line)?;
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_to_string(cmd: FleetCmd, input: &str) -> anyhow::Result<String> {
        let mut out = Vec::new();
        run(cmd, input.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn key_and_user_lines_are_what_the_settings_accept() {
        let k = run_to_string(FleetCmd::Key { kid: "k1".into() }, "").unwrap();
        assert_eq!(crate::fleet_auth::parse_keys(&k).unwrap()[0].id, "k1");
        let u = run_to_string(
            FleetCmd::User {
                name: "alice".into(),
                role: Role::Admin,
            },
            "alice-password\n",
        )
        .unwrap();
        let users = crate::fleet_auth::parse_users(&u).unwrap();
        assert_eq!(users[0].role, crate::fleet_auth::FleetRole::Admin);
        assert!(!u.contains("alice-password"));
        assert!(crate::auth::verify_password(
            "alice-password",
            u.trim().splitn(3, ':').nth(2).unwrap()
        ));
        let e = run_to_string(FleetCmd::Key { kid: "Bad!".into() }, "").unwrap_err();
        assert!(e.to_string().contains("KID:SECRET"), "{e}");
        let e = run_to_string(
            FleetCmd::User {
                name: "bob".into(),
                role: Role::User,
            },
            "short\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("8 to 1024"), "{e}");
    }
}
