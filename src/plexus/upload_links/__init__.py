"""Public upload links: anyone holding one uploads media for one content item, for review."""
