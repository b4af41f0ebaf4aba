"""In-app notifications: what a member must see and act on (a connection to reconnect)."""
