"""PostgreSQL plumbing: targets (embedded/external), client binaries, psql sessions, lexing."""
