# An edge server: relays the origin's mounts so listeners can be spread over several
# machines (behind deploy/haproxy/haproxy.cfg or DNS). Sources connect to the origin only.
#
#   origin:  cycast --config origin.hcl        (the station's normal config)
#   edge N:  cycast --config edge.hcl
#
# Each edge pulls one connection per mount from the origin, whatever its own listener
# count, so the origin's cost grows with the number of edges, not listeners.

server {
  # Sources never connect to an edge; keep its source port private.
  host           = "0.0.0.0"
  listen_port    = 8001
  source_port    = 8000
  admin_password = ""
  trusted_proxies = ["127.0.0.1"]
}

# No playlist of its own: the origin's playlist arrives through the relay. With an empty
# directory the mount sends silence until the relay (re)connects, so players stay on.
playlist {
  directory = "/nonexistent"
}

relay "/stream" {
  url           = "http://origin.example:8001/stream"
  reconnect_min = 1.0
  reconnect_max = 15.0
}

# A second mount relayed only while someone listens to it on this edge.
relay "/low" {
  url       = "http://origin.example:8001/low"
  on_demand = true
}
