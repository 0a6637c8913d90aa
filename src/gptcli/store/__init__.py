"""Sessions on disk (versioned, atomic, locked), KV snapshots and transcripts."""
