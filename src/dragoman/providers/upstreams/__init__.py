"""Several upstreams behind one provider: pools, failover before the first piece, circuit
breakers, health checks and a retry budget (`router.RoutedProvider`).

- `config.py`: the `DRAGOMAN_UPSTREAMS` TOML file, read and checked (errors name the line);
- `breaker.py`: one upstream's circuit breaker (healthy, open, half-open);
- `budget.py`: the retry budget, a share of the traffic;
- `router.py`: the provider that picks an upstream per request and moves on before the first
  piece when it fails.
"""
