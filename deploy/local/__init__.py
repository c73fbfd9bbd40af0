"""``deploy/local``: the real topology on this machine (Redis Cluster, N signers, nginx),
the launcher that loadtest and bench share, and the fault suite."""
