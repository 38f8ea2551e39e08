"""Several daemons as one chat server, through Redis (issue 19).

Why a package of its own: it is the only code that imports txredisapi and
speaks to Redis, and the daemon imports it only when ``--cluster`` is given,
so a single daemon neither needs txredisapi installed nor pays for it. The
chat core never imports it: the cluster reaches the core through the same
store and mirror interfaces a single daemon uses.

Modules: `url` (the ``--cluster`` URL), `link` (the two Redis connections and
their reconnecting), `lease` (a node's liveness and the reaping of dead
nodes), `nick_claims` (one nickname, one node), then the stores, the wire
format, the relay and the mirror.
"""
