//! zigral-browser: see Cargo.toml description; filled in by its issue.
