"""Networks: netns, IPAM, the native and netavark backends, DNS by name."""
