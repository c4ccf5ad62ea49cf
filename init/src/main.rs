//! zigral-init entry point (filled in by the foundation issue).
fn main() {}
