"""Moving slots: the executor of the migration state machine (`migrator`), the key movers it
drives (`mover`: SCAN + batched MIGRATE; `bigkeys`: chunked copies under a fence) and the
rebalancer that plans moves and hands them to the migrator."""
