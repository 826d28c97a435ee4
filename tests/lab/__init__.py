"""The namespace lab: declarative topologies of routers, ISPs, clients and servers."""
