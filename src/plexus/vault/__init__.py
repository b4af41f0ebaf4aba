"""The instance's vault: built from the settings, checked at startup, rotated on demand."""
