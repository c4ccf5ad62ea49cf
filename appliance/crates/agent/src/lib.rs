//! zigral-agent: the agent loop (being built).
