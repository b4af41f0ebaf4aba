"""Identity: passwords, logins, sessions, access and refresh tokens, MFA."""
