//! zigral-fake-llm (being built).
fn main() {}
