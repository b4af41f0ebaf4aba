"""Domain-free helpers: request context, logging, networking, time."""
