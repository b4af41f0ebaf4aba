"""Outbound webhooks: signed deliveries of workspace events to endpoints its admins chose."""
