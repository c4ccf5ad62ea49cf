//! zigral-store: see Cargo.toml description; filled in by its issue.
