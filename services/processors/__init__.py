"""faust-streaming processors: unify (identity), project (timeline)."""
