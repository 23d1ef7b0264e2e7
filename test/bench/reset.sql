-- Run before every pgbench run: empty the event log.
TRUNCATE eventbus.event_log_0, eventbus.event_log_1, eventbus.event_log_2;
