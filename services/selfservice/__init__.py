"""Customers' self-service pages (/me): their own history, contact data, consent, export and
erasure request, reached by a one-time sign-in link sent to an address the hub holds."""
