"""Accounts: creating users, with a normalised e-mail and a password that meets the policy."""
