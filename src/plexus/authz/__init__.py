"""Authorization: permissions, roles, and the policy every route declares."""
