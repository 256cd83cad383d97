"""A seeded fault-injection harness for the brokers, in the spirit of Jepsen.

Three real hubs run against a real Redis (one node, or a sharded Redis Cluster) behind
loopback proxies of our own; a seeded plan strikes them with faults (Redis paused,
killed and started again empty or from its AOF, failovers, hubs killed, links cut,
stalled and delayed) while publishers and browser-like subscribers use them over HTTP;
then a checker reads the whole history. Nothing here imports ``sse_hub``: the hubs are
processes, driven over HTTP only.

- ``plan``: the seeded schedule (faults, lineages, the actors' random streams);
- ``proxy``: the TCP proxy that cuts, stalls and delays;
- ``processes``: redis-server and ``sse-hub serve`` processes;
- ``cluster``: the deployment (hubs, Redis, proxies) and one method per fault;
- ``workload``: publishers and subscriber lineages;
- ``history``: the records of a run; ``checker``: the rules they must satisfy;
- ``run``: one seeded run; ``__main__``: long runs from the command line;
- ``test_faults``: the short schedule CI runs on both broker modes.

See docs/faults.md.
"""
