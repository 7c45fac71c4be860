"""Example adapters bundled with the runtime.

snakepit_worker.examples.showcase:Showcase is the one the agent's
configuration and tests name.
"""
