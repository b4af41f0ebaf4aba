"""Platform integrations: the provider contract, the registry and one module per platform."""
