"""The deployment of signer: container image, Compose, Kubernetes, systemd, and a real
local topology (``deploy/local``)."""
