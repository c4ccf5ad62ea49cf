//! zigral-llm: provider wire formats and the streaming client (being built).
