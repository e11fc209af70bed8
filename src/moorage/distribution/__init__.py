"""Registry client: ping, token and basic auth, manifests, resumable blob transfer, retries."""
