"""The local platform and its tooling (``deploy.sh local|status|stop|restore``): Temporal's programs built from
their Go modules, the processes, the Stripe fake. Developer tooling, not part of the runtime the image runs."""
