"""The fault matrix: the chain run by real Celery workers while a fault strikes, each
test ending with every stage table equal to a clean run over the same data
(``harness.assert_equal_to_a_clean_run``). docs/reliability.md lists the faults and
what Metriflow promises for each."""
