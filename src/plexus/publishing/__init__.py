"""Publishing: one content version sent through one connection, exactly once.

``service`` creates, lists and changes publications for the API; ``pipeline`` is the
worker's side (claim, send, record, back off, reconcile, recover); ``tasks`` are the queue's
jobs and the periodic dispatcher; ``throttle`` keeps every worker inside the platforms'
rate limits and daily caps.
"""
