"""Security signals and defences: security events, rate limits and IP blocking."""
