"""Workspaces (tenants): their settings, members and roles, invitations, and open sign-up."""
