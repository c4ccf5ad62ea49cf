//! zigral-desktop: see Cargo.toml description; filled in by its issue.
