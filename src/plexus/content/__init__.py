"""Content a workspace writes once: items and their versions, the approval step, Markdown
rendered safely (and per platform), and preflight checks against each platform's rules.
"""
