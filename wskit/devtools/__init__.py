"""Development tooling, not the library: throwaway redis-servers and clusters, ports, nginx."""
