"""Routing of unified interactions to departments: rules, language, classifier, eval, diff."""
