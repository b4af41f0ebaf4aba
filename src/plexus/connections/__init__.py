"""Platform connections: connecting accounts, keeping their tokens fresh, calling providers."""
