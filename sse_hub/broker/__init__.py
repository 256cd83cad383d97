"""The brokers: memory, Redis (with its one-slot Redis Cluster mode) and the sharded Redis
Cluster. Their contract is ``sse_hub.messages.contract``."""
