"""faust-streaming processors: unify (identity), project (timeline and routing), delivery."""
