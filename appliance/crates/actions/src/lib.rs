//! zigral-actions: see Cargo.toml description; filled in by the action-API issue.
