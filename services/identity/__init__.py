"""Who the customer is: identity lookup and linking in PostgreSQL."""
