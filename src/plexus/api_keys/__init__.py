"""API keys for service-to-service calls (R7).

Format ``plx_<env>_<random>_<checksum>``; shown once, stored as an HMAC, scoped, optionally
expiring and bound to networks, rotated with a grace period, revoked at once, and watched
for unusual use.
"""
