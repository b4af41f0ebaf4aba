"""Media uploads: images and videos checked, cleaned and stored content-addressed (R12)."""
